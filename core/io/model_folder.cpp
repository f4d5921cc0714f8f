#include "core/io/model_folder.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <type_traits>

#include "core/common/error.h"
#include "core/io/json_nesting.h"

namespace fs = std::filesystem;

namespace kto {
namespace {

std::string describe(const nlohmann::json& v) {
    std::string s = v.dump();
    if (s.size() > 60) s = s.substr(0, 57) + "...";
    return s;
}

template <class T>
struct Expect;
template <>
struct Expect<bool> {
    static constexpr const char* name = "a boolean (true/false)";
    static constexpr const char* plural = "booleans";
    static bool ok(const nlohmann::json& v) { return v.is_boolean(); }
};
template <>
struct Expect<int> {
    static constexpr const char* name = "an integer";
    static constexpr const char* plural = "integers";
    static bool ok(const nlohmann::json& v) {
        if (!v.is_number_integer()) return false;
        const auto x = v.get<int64_t>();
        return x >= std::numeric_limits<int>::min() && x <= std::numeric_limits<int>::max();
    }
};
template <>
struct Expect<int64_t> {
    static constexpr const char* name = "an integer";
    static constexpr const char* plural = "integers";
    static bool ok(const nlohmann::json& v) {
        return v.is_number_integer() &&
               !(v.is_number_unsigned() &&
                 v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()));
    }
};
template <>
struct Expect<double> {
    static constexpr const char* name = "a number";
    static constexpr const char* plural = "numbers";
    static bool ok(const nlohmann::json& v) { return v.is_number(); }
};
template <>
struct Expect<float> : Expect<double> {};
template <>
struct Expect<std::string> {
    static constexpr const char* name = "a string";
    static constexpr const char* plural = "strings";
    static bool ok(const nlohmann::json& v) { return v.is_string(); }
};
template <>
struct Expect<nlohmann::json> {
    static constexpr const char* name = "a JSON value";
    static constexpr const char* plural = "JSON values";
    static bool ok(const nlohmann::json&) { return true; }
};
template <class E>
struct Expect<std::vector<E>> {
    static std::string list_name() { return std::string("a list of ") + Expect<E>::plural; }
    static bool ok(const nlohmann::json& v) {
        if (!v.is_array()) return false;
        for (const auto& e : v)
            if (!Expect<E>::ok(e)) return false;
        return true;
    }
};

template <class T>
std::string expect_name() {
    if constexpr (std::is_same_v<T, std::vector<int>> || std::is_same_v<T, std::vector<int64_t>> ||
                  std::is_same_v<T, std::vector<double>> ||
                  std::is_same_v<T, std::vector<std::string>>)
        return Expect<T>::list_name();
    else
        return Expect<T>::name;
}

const char* const kWeightNames[] = {"diffusion_pytorch_model", "model"};

}  // namespace

nlohmann::json read_json_file(const std::string& path) {
    std::error_code ec;
    if (!fs::exists(path, ec)) throw Error(path + ": file not found");
    if (fs::is_directory(path, ec)) throw Error(path + ": is a folder, expected a JSON file");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot open");
    std::stringstream buf;
    buf << in.rdbuf();
    const std::string text = buf.str();
    check_json_nesting(text, path);
    try {
        return nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        // parse_error, and out_of_range for numbers beyond double ("1.5e1900"; found by fuzz_model_config).
        throw Error(path + ": invalid JSON (" + e.what() + ")");
    }
}

JsonConfig::JsonConfig(nlohmann::json json, std::string source)
    : json_(std::move(json)), source_(std::move(source)) {
    if (!json_.is_object()) throw Error(source_ + ": expected a JSON object");
}

JsonConfig JsonConfig::from_file(const std::string& path) {
    return JsonConfig(read_json_file(path), path);
}

bool JsonConfig::has(const std::string& key) const {
    auto it = json_.find(key);
    return it != json_.end() && !it->is_null();
}

void JsonConfig::fail(const std::string& key, const std::string& problem) const {
    throw Error(source_ + ": '" + key + "' " + problem);
}

template <class T>
T JsonConfig::get(const std::string& key) const {
    auto it = json_.find(key);
    if (it == json_.end() || it->is_null()) throw Error(source_ + ": missing '" + key + "'");
    if (!Expect<T>::ok(*it)) fail(key, "must be " + expect_name<T>() + ", got " + describe(*it));
    if constexpr (std::is_same_v<T, nlohmann::json>)
        return *it;
    else
        return it->template get<T>();
}

template <class T>
T JsonConfig::get_or(const std::string& key, T fallback) const {
    return has(key) ? get<T>(key) : fallback;
}

#define KTO_JSON_CONFIG_INSTANTIATE(T)                       \
    template T JsonConfig::get<T>(const std::string&) const; \
    template T JsonConfig::get_or<T>(const std::string&, T) const;
KTO_JSON_CONFIG_INSTANTIATE(bool)
KTO_JSON_CONFIG_INSTANTIATE(int)
KTO_JSON_CONFIG_INSTANTIATE(int64_t)
KTO_JSON_CONFIG_INSTANTIATE(double)
KTO_JSON_CONFIG_INSTANTIATE(float)
KTO_JSON_CONFIG_INSTANTIATE(std::string)
KTO_JSON_CONFIG_INSTANTIATE(std::vector<int>)
KTO_JSON_CONFIG_INSTANTIATE(std::vector<int64_t>)
KTO_JSON_CONFIG_INSTANTIATE(std::vector<double>)
KTO_JSON_CONFIG_INSTANTIATE(std::vector<std::string>)
KTO_JSON_CONFIG_INSTANTIATE(nlohmann::json)
#undef KTO_JSON_CONFIG_INSTANTIATE

ModelIndex read_model_index(const std::string& model_dir) {
    std::error_code ec;
    if (!fs::exists(model_dir, ec)) throw Error(model_dir + ": model folder not found");
    if (!fs::is_directory(model_dir, ec))
        throw Error(model_dir +
                    ": not a folder (expected a diffusers model folder with model_index.json)");
    const std::string path = (fs::path(model_dir) / "model_index.json").string();
    if (!fs::exists(path, ec))
        throw Error(model_dir +
                    ": no model_index.json; expected a diffusers-layout model folder "
                    "(model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/)");
    const JsonConfig cfg = JsonConfig::from_file(path);
    ModelIndex index;
    index.folder = model_dir;
    index.pipeline_class = cfg.get<std::string>("_class_name");
    for (auto it = cfg.json().begin(); it != cfg.json().end(); ++it) {
        if (it.key().empty() || it.key()[0] == '_' || !it.value().is_array()) continue;
        const auto& v = it.value();
        if (v.size() != 2) cfg.fail(it.key(), "must be [library, class], got " + describe(v));
        if (v[0].is_null() && v[1].is_null()) continue;  // an absent optional component
        if (!v[0].is_string() || !v[1].is_string())
            cfg.fail(it.key(), "must be [library, class] strings, got " + describe(v));
        index.components[it.key()] = {v[0].get<std::string>(), v[1].get<std::string>()};
    }
    if (index.components.count("text_encoder_2") ||
        index.pipeline_class.find("XL") != std::string::npos)
        throw Error(
            path + ": '" + index.pipeline_class +
            "' (Stable Diffusion XL) is not supported; use a Stable Diffusion 1.x or 2.x model");
    const std::pair<const char*, std::vector<std::string>> expected[] = {
        {"unet", {"UNet2DConditionModel"}},
        {"vae", {"AutoencoderKL"}},
        {"text_encoder", {"CLIPTextModel"}},
        {"tokenizer", {"CLIPTokenizer", "CLIPTokenizerFast"}},
        {"scheduler", {}},
    };
    for (const auto& [name, classes] : expected) {
        auto c = index.components.find(name);
        if (c == index.components.end())
            throw Error(path + ": missing component '" + std::string(name) + "' (" +
                        index.pipeline_class + " is not a Stable Diffusion text-to-image folder)");
        if (!classes.empty() &&
            std::find(classes.begin(), classes.end(), c->second.second) == classes.end())
            throw Error(path + ": '" + std::string(name) + "' is a " + c->second.second +
                        ", only " + classes.front() + " is supported");
    }
    for (const auto& e : expected) component_dir(model_dir, e.first);
    return index;
}

std::string component_dir(const std::string& model_dir, const std::string& name) {
    const fs::path p = fs::path(model_dir) / name;
    std::error_code ec;
    if (!fs::is_directory(p, ec))
        throw Error(p.string() + ": component folder '" + name + "' not found in " + model_dir);
    return p.string();
}

JsonConfig read_component_config(const std::string& component_dir) {
    return JsonConfig::from_file((fs::path(component_dir) / "config.json").string());
}

std::string find_weights_file(const std::string& component_dir, bool prefer_fp16) {
    std::error_code ec;
    if (!fs::is_directory(component_dir, ec)) throw Error(component_dir + ": folder not found");
    const fs::path dir(component_dir);
    std::vector<std::string> order;
    for (const char* stem : kWeightNames) {
        const std::string fp32 = std::string(stem) + ".safetensors";
        const std::string fp16 = std::string(stem) + ".fp16.safetensors";
        for (const auto& f : prefer_fp16 ? std::vector<std::string>{fp16, fp32}
                                         : std::vector<std::string>{fp32, fp16}) {
            order.push_back(f);
            order.push_back(f + ".index.json");
        }
    }
    for (const auto& name : order)
        if (fs::is_regular_file(dir / name, ec)) return (dir / name).string();

    std::vector<std::string> present, pickles;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        const std::string n = e.path().filename().string();
        present.push_back(n);
        const std::string ext = e.path().extension().string();
        if (ext == ".bin" || ext == ".ckpt" || ext == ".pt" || ext == ".pth") pickles.push_back(n);
    }
    if (!pickles.empty())
        throw Error(component_dir +
                    ": pickle .bin weights are not supported; convert to safetensors (found " +
                    pickles.front() + ")");
    std::string listing;
    for (const auto& n : present) listing += (listing.empty() ? "" : ", ") + n;
    throw Error(
        component_dir +
        ": no weights file (expected diffusion_pytorch_model.safetensors or model.safetensors"
        ", or a .fp16.safetensors variant); the folder holds: " +
        (listing.empty() ? std::string("nothing") : listing));
}

TensorMap load_component_weights(const std::string& component_dir, bool prefer_fp16) {
    const std::string file = find_weights_file(component_dir, prefer_fp16);
    const std::string suffix = ".index.json";
    if (file.size() < suffix.size() ||
        file.compare(file.size() - suffix.size(), suffix.size(), suffix) != 0)
        return load_safetensors(file);

    // Sharded weights: {"weight_map": {tensor: shard file}}.
    const JsonConfig index = JsonConfig::from_file(file);
    const nlohmann::json map = index.get<nlohmann::json>("weight_map");
    if (!map.is_object()) index.fail("weight_map", "must be an object {tensor: file}");
    std::map<std::string, std::vector<std::string>> per_shard;
    for (auto it = map.begin(); it != map.end(); ++it) {
        if (!it.value().is_string())
            index.fail("weight_map", "entry '" + it.key() + "' must name a file");
        const std::string shard = it.value().get<std::string>();
        if (shard.find('/') != std::string::npos || shard.find("..") != std::string::npos)
            index.fail("weight_map",
                       "entry '" + it.key() + "' names a file outside the folder: " + shard);
        per_shard[shard].push_back(it.key());
    }
    TensorMap all;
    for (const auto& [shard, names] : per_shard) {
        const std::string path = (fs::path(component_dir) / shard).string();
        TensorMap t = load_safetensors(path);
        for (const auto& n : names) {
            auto f = t.find(n);
            if (f == t.end())
                throw Error(path + ": tensor '" + n + "' listed in " + file + " is missing");
            all[n] = f->second;
        }
    }
    return all;
}

}  // namespace kto
