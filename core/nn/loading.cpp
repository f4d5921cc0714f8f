// Component loading/saving for the UNet and the VAE (one translation unit for all file handling).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/common/error.h"
#include "core/io/model_folder.h"
#include "core/io/safetensors.h"
#include "core/io/state_dict.h"
#include "core/nn/model_files.h"
#include "core/nn/unet.h"
#include "core/nn/vae.h"

namespace fs = std::filesystem;

namespace kto {
namespace nn_files {

void write_json_atomic(const std::string& path, const nlohmann::json& json) {
    const std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        if (!out) throw Error(path + ": cannot write (check the folder exists and is writable)");
        out << json.dump(2) << "\n";
        out.flush();
        if (!out) throw Error(path + ": write failed (disk full?)");
    }
    std::error_code ec;
    fs::rename(tmp, path, ec);
    if (ec) {
        fs::remove(tmp, ec);
        throw Error(path + ": cannot replace the file (" + ec.message() + ")");
    }
}

}  // namespace nn_files

namespace {

// Prefixes config errors with the file they come from.
template <typename Config>
Config parse_config(const std::string& component_dir) {
    if (!fs::is_directory(component_dir)) throw Error(component_dir + ": no such folder");
    auto json = read_json_file((fs::path(component_dir) / "config.json").string());
    try {
        return Config::from_json(json);
    } catch (const Error& e) {
        throw Error((fs::path(component_dir) / "config.json").string() + ": " + e.what());
    }
}

}  // namespace

UNet2DConditionModel load_unet(const std::string& component_dir, torch::Device device, torch::ScalarType dtype) {
    const auto config = parse_config<UNetConfig>(component_dir);
    const auto weights = find_weights_file(component_dir);
    const auto tensors = load_component_weights(component_dir);
    UNet2DConditionModel model(config, ModuleOptions::for_loading(device, dtype));
    load_state_dict_strict(*model, tensors, weights);
    model->eval();
    return model;
}

AutoencoderKL load_vae(const std::string& component_dir, torch::Device device, torch::ScalarType dtype) {
    const auto config = parse_config<VAEConfig>(component_dir);
    const auto weights = find_weights_file(component_dir);
    auto tensors = load_component_weights(component_dir);
    convert_legacy_vae_attention_names(tensors);
    AutoencoderKL model(config, ModuleOptions::for_loading(device, dtype));
    load_state_dict_strict(*model, tensors, weights);
    model->eval();
    return model;
}

void save_unet(UNet2DConditionModel& model, const nlohmann::json& config_json, const std::string& dir) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (!fs::is_directory(dir)) throw Error(dir + ": cannot create the folder (" + ec.message() + ")");
    TensorMap tensors;
    for (const auto& p : model->named_parameters(true)) tensors[p.key()] = p.value().detach();
    write_safetensors((fs::path(dir) / "diffusion_pytorch_model.safetensors").string(), tensors, {{"format", "pt"}});
    nlohmann::json cfg = config_json.is_object() ? config_json : model->config().raw;
    cfg["_class_name"] = "UNet2DConditionModel";
    if (!cfg.contains("_diffusers_version")) cfg["_diffusers_version"] = "0.25.1";
    nn_files::write_json_atomic((fs::path(dir) / "config.json").string(), cfg);
}

}  // namespace kto
