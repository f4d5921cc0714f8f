#pragma once
// Reading and writing one diffusers component folder (config.json + weights) for core/nn models.
// Kept local to core/nn; core/io/model_folder.h covers whole model folders.
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <map>
#include <string>

namespace kto::nn_files {

// Parses `dir`/config.json; errors name the file.
nlohmann::json read_config(const std::string& component_dir);

// The weights file of a component: diffusion_pytorch_model.safetensors, else its .fp16 variant,
// else model.safetensors, else the only *.safetensors in the folder. Errors name the folder.
std::string find_weights(const std::string& component_dir);

// Copies `tensors` into `module`'s parameters and buffers name for name (converting dtype and
// device). Throws kto::Error naming `source` and listing missing, unexpected and wrong-shape tensors.
// Names in `ignored` may be present in the file without being declared.
void copy_state_dict_strict(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors,
                            const std::string& source, const std::vector<std::string>& ignored = {});

// Writes `json` to `path` atomically (temporary file + rename).
void write_json_atomic(const std::string& path, const nlohmann::json& json);

}  // namespace kto::nn_files
