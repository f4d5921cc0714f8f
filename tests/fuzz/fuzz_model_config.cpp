// Model-folder configs: model_index.json (read_model_index over a folder with the five component
// sub-folders), JsonConfig's typed accessors, and the UNet, VAE, CLIP text encoder and scheduler
// config parsers. A config the parsers cannot use must end in kto::Error naming the field; any
// other exception, a crash or a sanitizer report is a finding.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/common/error.h"
#include "core/io/model_folder.h"
#include "core/nn/unet.h"
#include "core/nn/vae.h"
#include "core/sampling/scheduler_config.h"
#include "core/text/clip_text_model.h"
#include "tests/fuzz/fuzz_support.h"

namespace fs = std::filesystem;

namespace {

fs::path model_folder() {
    static const fs::path dir = [] {
        fs::path d = fs::temp_directory_path() / ("kto-fuzz-model-" + std::to_string(::getpid()));
        for (const char* c : {"unet", "vae", "text_encoder", "tokenizer", "scheduler"})
            fs::create_directories(d / c);
        return d;
    }();
    return dir;
}

template <class F>
void expect_kto_error_only(F&& f) {
    try {
        f();
    } catch (const kto::Error&) {
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    {
        std::ofstream out(model_folder() / "model_index.json", std::ios::binary | std::ios::trunc);
        out << text;
    }
    expect_kto_error_only([] { kto::read_model_index(model_folder().string()); });

    nlohmann::json j;
    try {
        j = kto::read_json_file((model_folder() / "model_index.json").string());
    } catch (const kto::Error&) {
        // Not JSON: the scheduler's reader also takes Infinity/NaN, so give it a try too.
        expect_kto_error_only([&] { kto::parse_json_with_infinity(text, "scheduler_config.json"); });
        return 0;
    }
    expect_kto_error_only([&] { kto::UNetConfig::from_json(j); });
    expect_kto_error_only([&] { kto::VAEConfig::from_json(j); });
    expect_kto_error_only([&] { kto::CLIPTextConfig::from_json(j, "text_encoder/config.json"); });
    expect_kto_error_only([&] {
        kto::SchedulerConfig::from_json(kto::parse_json_with_infinity(text, "scheduler_config.json"),
                                        "scheduler_config.json");
    });
    if (!j.is_object()) {  // JsonConfig refuses anything but an object, with a kto::Error
        expect_kto_error_only([&] { kto::JsonConfig(j, "config.json"); });
        return 0;
    }
    const kto::JsonConfig cfg(j, "config.json");
    for (const char* key : {"in_channels", "block_out_channels", "_class_name", "sample_size",
                            "scaling_factor", "down_block_types", "center_input_sample"}) {
        expect_kto_error_only([&] { cfg.get<int>(key); });
        expect_kto_error_only([&] { cfg.get<int64_t>(key); });
        expect_kto_error_only([&] { cfg.get<double>(key); });
        expect_kto_error_only([&] { cfg.get<float>(key); });
        expect_kto_error_only([&] { cfg.get<bool>(key); });
        expect_kto_error_only([&] { cfg.get<std::string>(key); });
        expect_kto_error_only([&] { cfg.get<std::vector<int>>(key); });
        expect_kto_error_only([&] { cfg.get<std::vector<int64_t>>(key); });
        expect_kto_error_only([&] { cfg.get<std::vector<double>>(key); });
        expect_kto_error_only([&] { cfg.get<std::vector<std::string>>(key); });
        expect_kto_error_only([&] { cfg.get_or<int>(key, 7); });
    }
    return 0;
}
