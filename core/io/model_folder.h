#pragma once
// The diffusers folder layout of a Stable Diffusion 1.x/2.x model:
//   model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/
// each component with a config.json (read here with errors naming file and field) and, for the
// networks, a safetensors weights file. All functions are stateless and thread-safe.
#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/io/safetensors.h"
#include "core/io/state_dict.h"

namespace kto {

// Reads and parses a JSON file; kto::Error names the file for a missing file or a syntax error.
nlohmann::json read_json_file(const std::string& path);

// A parsed config.json with typed, field-naming accessors:
//   JsonConfig cfg = JsonConfig::from_file(dir + "/config.json");
//   int c = cfg.get<int>("latent_channels");  // "vae/config.json: missing 'latent_channels'"
// Supported T: bool, int, int64_t, double, float, std::string, std::vector<int>,
// std::vector<int64_t>, std::vector<double>, std::vector<std::string>, nlohmann::json.
// Integers are not accepted where a bool is expected and floats not where an integer is.
class JsonConfig {
public:
    JsonConfig(nlohmann::json json, std::string source);
    static JsonConfig from_file(const std::string& path);

    const nlohmann::json& json() const { return json_; }
    // The file name used in errors ("…/vae/config.json").
    const std::string& source() const { return source_; }
    // Present and not null.
    bool has(const std::string& key) const;

    // The value of a required field; throws when absent, null or of the wrong type.
    template <class T>
    T get(const std::string& key) const;
    // The value, or `fallback` when the field is absent or null; throws on a wrong type.
    template <class T>
    T get_or(const std::string& key, T fallback) const;

    // Throws kto::Error("<source>: '<key>' <problem>").
    [[noreturn]] void fail(const std::string& key, const std::string& problem) const;

private:
    nlohmann::json json_;
    std::string source_;
};

// model_index.json of a diffusers pipeline folder.
struct ModelIndex {
    std::string folder;          // the model folder
    std::string pipeline_class;  // "_class_name", e.g. "StableDiffusionPipeline"
    // Non-null components: name -> {library, class}, e.g. "unet" -> {"diffusers",
    // "UNet2DConditionModel"}.
    std::map<std::string, std::pair<std::string, std::string>> components;
};

// Reads `model_dir`/model_index.json and checks it describes a Stable-Diffusion-1.x/2.x-like
// text-to-image pipeline: unet (UNet2DConditionModel), vae (AutoencoderKL), text_encoder
// (CLIPTextModel), tokenizer (CLIPTokenizer), scheduler, each with its sub-folder present.
// Errors say what is missing or unsupported (e.g. an SDXL folder with text_encoder_2).
ModelIndex read_model_index(const std::string& model_dir);

// `model_dir`/`name`, checked to be a folder.
std::string component_dir(const std::string& model_dir, const std::string& name);

// `component_dir`/config.json as a JsonConfig.
JsonConfig read_component_config(const std::string& component_dir);

// The weights file of a component folder: diffusion_pytorch_model.safetensors or
// model.safetensors, or their .fp16.safetensors variants (fp32 preferred unless prefer_fp16),
// or the *.safetensors.index.json of sharded weights. Errors: no weights (listing what is
// there), or pickle-only weights ("pickle .bin weights are not supported; convert to safetensors").
std::string find_weights_file(const std::string& component_dir, bool prefer_fp16 = false);

// All tensors of a component (find_weights_file + read; sharded indexes are merged).
TensorMap load_component_weights(const std::string& component_dir, bool prefer_fp16 = false);

}  // namespace kto
