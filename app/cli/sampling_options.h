#pragma once
// Parsing shared by the commands that render images (generate, compare): --device, --dtype,
// --size and the sampler list for --help. Errors are kto::Error naming the option.
#include <torch/torch.h>

#include <string>
#include <utility>

namespace kto::cli {

// "cpu", "cuda", "cuda:N"; a CUDA device when this libtorch has none is an error.
torch::Device parse_device(const std::string& text);
// fp32 | fp16 | bf16 (or float32 / float16 / bfloat16); empty: kto::default_inference_dtype (fp16 on
// CUDA; on the CPU bf16 where it has bf16 matrix units, else fp32; KTO_CPU_DTYPE overrides).
// With a model: empty is kto::default_model_dtype (a small UNet such as the demo model's in fp32 where
// the automatic CPU choice would be bf16).
torch::ScalarType parse_dtype(const std::string& text, const torch::Device& device, const std::string& model = "");
// "WIDTHxHEIGHT", both positive.
std::pair<int, int> parse_size(const std::string& text);
// "ddim, pndm, ..." for an option's help text.
std::string sampler_list();

}  // namespace kto::cli
