#include "app/cli/sampling_options.h"

#include <stdexcept>

#include "core/common/error.h"
#include "core/common/runtime.h"
#include "core/pipeline/pipeline.h"
#include "core/sampling/scheduler_config.h"

namespace kto::cli {

torch::Device parse_device(const std::string& text) {
    torch::Device device(torch::kCPU);
    try {
        device = torch::Device(text);
    } catch (const std::exception&) {
        throw Error("--device: unknown device '" + text + "' (cpu, cuda or cuda:N)");
    }
    if (device.is_cuda() && !torch::cuda::is_available())
        throw Error("--device cuda: this libtorch build has no CUDA or no GPU is visible");
    return device;
}

torch::ScalarType parse_dtype(const std::string& s, const torch::Device& device, const std::string& model) {
    if (s.empty())
        return model.empty() ? kto::default_inference_dtype(device.is_cuda())
                             : kto::default_model_dtype(model, device.is_cuda());
    if (s == "fp32" || s == "float32") return torch::kFloat32;
    if (s == "fp16" || s == "float16") return torch::kFloat16;
    if (s == "bf16" || s == "bfloat16") return torch::kBFloat16;
    throw Error("--dtype: unknown '" + s + "' (fp32, fp16 or bf16)");
}

std::pair<int, int> parse_size(const std::string& s) {
    const size_t x = s.find('x');
    try {
        if (x == std::string::npos) throw std::invalid_argument("no x");
        size_t a = 0, b = 0;
        const int w = std::stoi(s.substr(0, x), &a), h = std::stoi(s.substr(x + 1), &b);
        if (a != x || b != s.size() - x - 1 || w <= 0 || h <= 0) throw std::invalid_argument("junk");
        return {w, h};
    } catch (const std::exception&) {
        throw Error("--size: expected WIDTHxHEIGHT such as 512x512, got '" + s + "'");
    }
}

std::string sampler_list() {
    std::string out;
    for (const auto& n : sampler_names()) out += (out.empty() ? "" : ", ") + n;
    return out;
}

}  // namespace kto::cli
