// `kto-studio-cli inspect`: what a model folder holds, or the parameter names/shapes our modules
// declare for a config (`--config FILE --component NAME --keys`), to compare with a checkpoint.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>

#include "app/cli/command.h"
#include "core/common/error.h"
#include "core/io/safetensors.h"
#include "core/io/model_folder.h"
#include "core/nn/unet.h"
#include "core/nn/vae.h"
#include "core/text/clip_text_model.h"

namespace fs = std::filesystem;

namespace kto::cli {
namespace {

struct InspectRequest {
    std::string folder;
    std::string config_path;
    std::string component;
    bool keys = false;
};

nlohmann::json read_json(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot open");
    try {
        return nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
        throw Error(path + ": not valid JSON (" + e.what() + ")");
    }
}

// Parameter lines ("name [a,b,c]") of the module a config describes, built without weights.
std::vector<std::string> declared_keys(const std::string& component, const nlohmann::json& config,
                                       const std::string& source) {
    try {
        if (component == "unet") {
            UNet2DConditionModel m(UNetConfig::from_json(config), ModuleOptions::shapes_only());
            return describe_parameters(*m);
        }
        if (component == "vae") {
            AutoencoderKL m(VAEConfig::from_json(config), ModuleOptions::shapes_only());
            return describe_parameters(*m);
        }
        if (component == "text_encoder") {
            // CLIPTextConfig::from_json names the source itself.
            CLIPTextModel m(CLIPTextConfig::from_json(config, source));
            return describe_parameters(*m);
        }
    } catch (const Error& e) {
        const std::string msg = e.what();
        throw Error(msg.rfind(source, 0) == 0 ? msg : source + ": " + msg);
    }
    throw Error("--component: '" + component + "' has no key listing (one of: unet, vae, text_encoder)");
}

std::string human_count(int64_t n) {
    char buf[32];
    if (n >= 1'000'000'000) std::snprintf(buf, sizeof buf, "%.2fB", n / 1e9);
    else if (n >= 1'000'000) std::snprintf(buf, sizeof buf, "%.1fM", n / 1e6);
    else if (n >= 1'000) std::snprintf(buf, sizeof buf, "%.1fK", n / 1e3);
    else std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(n));
    return buf;
}

std::string config_summary(const std::string& cls, const nlohmann::json& c) {
    std::ostringstream os;
    auto field = [&](const char* key) {
        if (c.contains(key)) os << " " << key << "=" << c.at(key).dump();
    };
    if (cls == "UNet2DConditionModel") {
        for (const char* k : {"block_out_channels", "layers_per_block", "attention_head_dim", "cross_attention_dim",
                              "use_linear_projection", "upcast_attention", "sample_size"})
            field(k);
    } else if (cls == "AutoencoderKL") {
        for (const char* k : {"block_out_channels", "layers_per_block", "latent_channels", "scaling_factor"}) field(k);
    } else if (cls == "CLIPTextModel") {
        for (const char* k : {"hidden_size", "num_hidden_layers", "num_attention_heads", "hidden_act", "vocab_size"}) field(k);
    } else {
        for (const char* k : {"num_train_timesteps", "beta_schedule", "prediction_type", "timestep_spacing"}) field(k);
    }
    return os.str();
}

void inspect_component(const fs::path& dir, const std::string& name) {
    std::cout << name << "/";
    nlohmann::json cfg;
    for (const char* f : {"config.json", "scheduler_config.json", "tokenizer_config.json"}) {
        if (fs::is_regular_file(dir / f)) {
            cfg = read_json((dir / f).string());
            break;
        }
    }
    const std::string cls = cfg.is_object() && cfg.contains("_class_name") ? cfg.at("_class_name").get<std::string>()
                            : cfg.is_object() && cfg.contains("architectures") && cfg.at("architectures").is_array() &&
                                      !cfg.at("architectures").empty()
                                ? cfg.at("architectures").at(0).get<std::string>()
                                : std::string();
    if (!cls.empty()) std::cout << "  class " << cls;
    std::cout << "\n";
    if (cfg.is_object() && !cls.empty()) std::cout << "  config:" << config_summary(cls, cfg) << "\n";
    bool has_weights = false;
    for (const auto& e : fs::directory_iterator(dir))
        has_weights = has_weights || e.path().extension() == ".safetensors";
    if (!has_weights) return;
    const auto weights = find_weights_file(dir.string());
    // Sharded weights: the index names the shard files; their headers together are the weights.
    std::vector<std::string> files{weights};
    const std::string index_suffix = ".index.json";
    if (weights.size() > index_suffix.size() &&
        weights.compare(weights.size() - index_suffix.size(), index_suffix.size(), index_suffix) == 0) {
        const nlohmann::json index = read_json_file(weights);
        if (!index.contains("weight_map") || !index.at("weight_map").is_object())
            throw Error(weights + ": no \"weight_map\" object (expected a sharded safetensors index)");
        std::set<std::string> shards;
        for (const auto& [name, file] : index.at("weight_map").items())
            if (file.is_string()) shards.insert(file.get<std::string>());
        files.clear();
        for (const auto& shard : shards) files.push_back((dir / shard).string());
    }
    std::map<std::string, int64_t> dtypes;
    int64_t elements = 0;
    size_t tensors = 0;
    for (const auto& file : files) {
        const auto header = read_safetensors_header(file);
        tensors += header.entries.size();
        for (const auto& t : header.entries) {
            int64_t n = 1;
            for (auto d : t.shape) n *= d;
            elements += n;
            dtypes[t.dtype] += 1;
        }
    }
    std::cout << "  weights: " << fs::path(weights).filename().string()
              << (files.size() > 1 || files.front() != weights ? " (" + std::to_string(files.size()) + " shards)" : "")
              << ", " << tensors << " tensors, " << human_count(elements) << " parameters (" << elements
              << "), dtypes";
    for (const auto& [d, n] : dtypes) std::cout << " " << d << "x" << n;
    std::cout << "\n";
}

int run_inspect(const InspectRequest& r) {
    if (!r.config_path.empty()) {
        if (r.component.empty()) throw Error("--config needs --component (unet, vae or text_encoder)");
        if (!r.keys) throw Error("--config is used with --keys (print the declared parameter names and shapes)");
        for (const auto& line : declared_keys(r.component, read_json(r.config_path), r.config_path))
            std::cout << line << "\n";
        return 0;
    }
    if (r.folder.empty()) throw Error("give a model folder, or --config FILE --component NAME --keys");
    const fs::path dir(r.folder);
    if (!fs::is_directory(dir)) throw Error(r.folder + ": no such folder");
    const auto index_path = dir / "model_index.json";
    if (fs::is_regular_file(index_path)) {
        const auto index = read_json(index_path.string());
        std::cout << "model " << fs::absolute(dir).lexically_normal().string() << "\n";
        if (index.contains("_class_name")) std::cout << "pipeline " << index.at("_class_name").get<std::string>() << "\n";
        for (auto it = index.begin(); it != index.end(); ++it) {
            if (it.key().empty() || it.key()[0] == '_' || !it.value().is_array()) continue;
            if (it.value().size() == 2 && it.value()[1].is_null()) continue;
            if (!fs::is_directory(dir / it.key())) {
                std::cout << it.key() << "/  MISSING (listed in model_index.json)\n";
                continue;
            }
            inspect_component(dir / it.key(), it.key());
        }
    } else if (fs::is_regular_file(dir / "config.json")) {
        inspect_component(dir, dir.filename().string());
    } else {
        throw Error(r.folder + ": neither a diffusers model folder (model_index.json) nor a component (config.json)");
    }
    return 0;
}

CommandRegistrar reg{{"inspect", "Show what a model folder holds, or the parameter keys a config declares",
                      [](CLI::App& sub) -> std::function<int()> {
                          auto r = std::make_shared<InspectRequest>();
                          sub.add_option("folder", r->folder, "Diffusers model folder or component folder");
                          sub.add_option("--config", r->config_path, "A component config.json (with --keys)");
                          sub.add_option("--component", r->component, "unet, vae or text_encoder (with --config)");
                          sub.add_flag("--keys", r->keys, "Print 'name [shape]' per declared parameter, sorted");
                          return [r] { return run_inspect(*r); };
                      }}};

}  // namespace
}  // namespace kto::cli
