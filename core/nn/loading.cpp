// Component loading/saving for the UNet and the VAE (one translation unit for all file handling).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/common/error.h"
#include "core/io/safetensors.h"
#include "core/nn/model_files.h"
#include "core/nn/unet.h"
#include "core/nn/vae.h"

namespace fs = std::filesystem;

namespace kto {
namespace nn_files {

nlohmann::json read_config(const std::string& component_dir) {
    const fs::path dir(component_dir);
    if (!fs::is_directory(dir)) throw Error(component_dir + ": no such folder");
    const auto path = (dir / "config.json").string();
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": missing (every model component folder needs a config.json)");
    try {
        return nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
        throw Error(path + ": not valid JSON (" + e.what() + ")");
    }
}

std::string find_weights(const std::string& component_dir) {
    const fs::path dir(component_dir);
    for (const char* name : {"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
                             "model.safetensors", "model.fp16.safetensors"}) {
        if (fs::is_regular_file(dir / name)) return (dir / name).string();
    }
    std::vector<std::string> found;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec))
        if (e.is_regular_file() && e.path().extension() == ".safetensors") found.push_back(e.path().string());
    if (found.size() == 1) return found[0];
    if (found.empty())
        throw Error(component_dir + ": no weights file (expected diffusion_pytorch_model.safetensors; "
                                    ".bin/.ckpt pickles are not read, convert them to safetensors)");
    throw Error(component_dir + ": several *.safetensors files and none named diffusion_pytorch_model.safetensors");
}

namespace {
std::string shape_str(torch::IntArrayRef s) {
    std::ostringstream os;
    os << "[";
    for (size_t i = 0; i < s.size(); ++i) os << (i ? "," : "") << s[i];
    os << "]";
    return os.str();
}

void append_list(std::ostringstream& os, const char* title, const std::vector<std::string>& names) {
    if (names.empty()) return;
    os << "\n  " << title << " (" << names.size() << "):";
    const size_t shown = std::min<size_t>(names.size(), 20);
    for (size_t i = 0; i < shown; ++i) os << "\n    " << names[i];
    if (shown < names.size()) os << "\n    ... and " << (names.size() - shown) << " more";
}
}  // namespace

void copy_state_dict_strict(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors,
                            const std::string& source, const std::vector<std::string>& ignored) {
    std::map<std::string, torch::Tensor> declared;
    for (const auto& p : module.named_parameters(true)) declared[p.key()] = p.value();
    for (const auto& p : module.named_buffers(true)) declared[p.key()] = p.value();

    std::vector<std::string> missing, unexpected, wrong;
    for (const auto& [name, t] : declared) {
        auto it = tensors.find(name);
        if (it == tensors.end()) missing.push_back(name);
        else if (it->second.sizes() != t.sizes())
            wrong.push_back(name + ": file has " + shape_str(it->second.sizes()) + ", model expects " + shape_str(t.sizes()));
        else if (!it->second.is_floating_point() && t.is_floating_point())
            wrong.push_back(name + ": file holds a non-floating-point tensor");
    }
    for (const auto& [name, t] : tensors)
        if (!declared.count(name) && std::find(ignored.begin(), ignored.end(), name) == ignored.end())
            unexpected.push_back(name);
    if (!missing.empty() || !unexpected.empty() || !wrong.empty()) {
        std::ostringstream os;
        os << source << ": weights do not match the architecture in config.json";
        append_list(os, "missing tensors", missing);
        append_list(os, "unexpected tensors", unexpected);
        append_list(os, "wrong shape", wrong);
        throw Error(os.str());
    }
    torch::NoGradGuard ng;
    for (auto& [name, t] : declared) t.copy_(tensors.at(name));
}

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
    auto json = nn_files::read_config(component_dir);
    try {
        return Config::from_json(json);
    } catch (const Error& e) {
        throw Error((fs::path(component_dir) / "config.json").string() + ": " + e.what());
    }
}

}  // namespace

UNet2DConditionModel load_unet(const std::string& component_dir, torch::Device device, torch::ScalarType dtype) {
    const auto config = parse_config<UNetConfig>(component_dir);
    const auto weights = nn_files::find_weights(component_dir);
    const auto tensors = load_safetensors(weights);
    UNet2DConditionModel model(config, ModuleOptions::for_loading(device, dtype));
    nn_files::copy_state_dict_strict(*model, tensors, weights);
    model->eval();
    return model;
}

AutoencoderKL load_vae(const std::string& component_dir, torch::Device device, torch::ScalarType dtype) {
    const auto config = parse_config<VAEConfig>(component_dir);
    const auto weights = nn_files::find_weights(component_dir);
    auto tensors = load_safetensors(weights);
    convert_legacy_vae_attention_names(tensors);
    AutoencoderKL model(config, ModuleOptions::for_loading(device, dtype));
    nn_files::copy_state_dict_strict(*model, tensors, weights);
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
