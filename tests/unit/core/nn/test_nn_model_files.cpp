// Declared parameter names/shapes vs. the full-size SD 1.5 state dicts, config errors, strict
// loading errors, legacy VAE attention names and the UNet writer.
#include <QtTest/QtTest>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "core/common/error.h"
#include "core/io/safetensors.h"
#include "core/nn/unet.h"
#include "core/nn/vae.h"
#include "tests/support/tensor_check.h"
#include "tests/support/test_paths.h"

namespace fs = std::filesystem;

namespace {

nlohmann::json read_json(const std::string& path) {
    std::ifstream in(path);
    if (!in) qFatal("cannot open %s", path.c_str());
    return nlohmann::json::parse(in);
}

// "name [a,b,c]" lines of a reference state_dict_keys file, sorted.
std::vector<std::string> reference_lines(const nlohmann::json& j) {
    std::vector<std::string> lines;
    for (const auto& t : j.at("tensors")) {
        std::string s = t.at("name").get<std::string>() + " [";
        bool first = true;
        for (const auto& d : t.at("shape")) {
            s += (first ? "" : ",") + std::to_string(d.get<int64_t>());
            first = false;
        }
        lines.push_back(s + "]");
    }
    std::sort(lines.begin(), lines.end());
    return lines;
}

void compare_lines(const std::vector<std::string>& ours, const std::vector<std::string>& ref) {
    std::vector<std::string> only_ours, only_ref;
    std::set_difference(ours.begin(), ours.end(), ref.begin(), ref.end(), std::back_inserter(only_ours));
    std::set_difference(ref.begin(), ref.end(), ours.begin(), ours.end(), std::back_inserter(only_ref));
    for (size_t i = 0; i < std::min<size_t>(only_ours.size(), 10); ++i) qWarning("only ours: %s", only_ours[i].c_str());
    for (size_t i = 0; i < std::min<size_t>(only_ref.size(), 10); ++i) qWarning("only reference: %s", only_ref[i].c_str());
    QVERIFY(only_ours.empty());
    QVERIFY(only_ref.empty());
}

// Expects `f` to throw kto::Error whose message contains every needle.
template <typename F>
void expect_error(F&& f, std::initializer_list<const char*> needles) {
    try {
        f();
    } catch (const kto::Error& e) {
        const std::string msg = e.what();
        for (const char* n : needles)
            QVERIFY2(msg.find(n) != std::string::npos, ("message lacks '" + std::string(n) + "': " + msg).c_str());
        return;
    }
    QFAIL("no kto::Error thrown");
}

}  // namespace

class TestNNModelFiles : public QObject {
    Q_OBJECT
    QTemporaryDir tmp;
    std::string ref;

    // A copy of tiny-sd/<component> whose weights were changed by `edit`.
    std::string edited_component(const std::string& component, const std::string& name,
                                 const std::function<void(kto::TensorMap&)>& edit) {
        const fs::path dir = fs::path(tmp.path().toStdString()) / name;
        fs::create_directories(dir);
        fs::copy_file(fs::path(ref) / "tiny-sd" / component / "config.json", dir / "config.json",
                      fs::copy_options::overwrite_existing);
        auto tensors = kto::load_safetensors(ref + "/tiny-sd/" + component + "/diffusion_pytorch_model.safetensors");
        edit(tensors);
        kto::write_safetensors((dir / "diffusion_pytorch_model.safetensors").string(), tensors, {{"format", "pt"}});
        return dir.string();
    }

private slots:
    void initTestCase() {
        QVERIFY(tmp.isValid());
        ref = kto::test::reference_dir();
    }

    void sd15UNetKeysAndShapes() {
        const auto j = read_json(ref + "/state_dict_keys/sd15_unet.json");
        kto::UNet2DConditionModel unet(kto::UNetConfig::from_json(j.at("config")), kto::ModuleOptions::shapes_only());
        const auto ours = kto::describe_parameters(*unet);
        QCOMPARE(int64_t(ours.size()), j.at("num_tensors").get<int64_t>());
        compare_lines(ours, reference_lines(j));
        QCOMPARE(kto::count_parameters(*unet), j.at("num_elements").get<int64_t>());
    }

    void sd15VAEKeysAndShapes() {
        const auto j = read_json(ref + "/state_dict_keys/sd15_vae.json");
        kto::AutoencoderKL vae(kto::VAEConfig::from_json(j.at("config")), kto::ModuleOptions::shapes_only());
        const auto ours = kto::describe_parameters(*vae);
        QCOMPARE(int64_t(ours.size()), j.at("num_tensors").get<int64_t>());
        compare_lines(ours, reference_lines(j));
        QCOMPARE(kto::count_parameters(*vae), j.at("num_elements").get<int64_t>());
    }

    void sd2StyleConfigBuilds() {
        // SD 2.x: per-block head counts, linear projections, 1024-wide text states.
        auto j = read_json(ref + "/state_dict_keys/sd15_unet.json").at("config");
        j["attention_head_dim"] = {5, 10, 20, 20};
        j["use_linear_projection"] = true;
        j["cross_attention_dim"] = 1024;
        j["upcast_attention"] = true;
        kto::UNet2DConditionModel unet(kto::UNetConfig::from_json(j), kto::ModuleOptions::shapes_only());
        const auto lines = kto::describe_parameters(*unet);
        QVERIFY(std::find(lines.begin(), lines.end(), "down_blocks.0.attentions.0.proj_in.weight [320,320]") != lines.end());
        QVERIFY(std::find(lines.begin(), lines.end(),
                          "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight [320,1024]") != lines.end());
        QCOMPARE(unet->down_blocks[0]->attentions[0]->blocks[0]->attn1->heads, int64_t(5));
    }

    void unsupportedConfigsAreErrors_data() {
        QTest::addColumn<QString>("file");
        QTest::addColumn<QString>("component");
        QTest::addColumn<QString>("needle");
        QTest::newRow("sdxl") << "nn_unet_sdxl_addition_embed.json" << "unet" << "'addition_embed_type' = \"text_time\"";
        QTest::newRow("block type") << "nn_unet_unknown_block_type.json" << "unet" << "\"SimpleCrossAttnDownBlock2D\"";
        QTest::newRow("heads") << "nn_unet_heads_do_not_divide.json" << "unet" << "attention heads";
        QTest::newRow("missing field") << "nn_unet_missing_block_out_channels.json" << "unet" << "missing 'block_out_channels'";
        QTest::newRow("vae list type") << "nn_vae_bad_layers_per_block.json" << "vae" << "'layers_per_block' must be an integer";
        QTest::newRow("vae block") << "nn_vae_unknown_block_type.json" << "vae" << "\"AttnDownEncoderBlock2D\"";
    }

    void unsupportedConfigsAreErrors() {
        QFETCH(QString, file);
        QFETCH(QString, component);
        QFETCH(QString, needle);
        const auto j = read_json(kto::test::test_data_dir() + "/configs/" + file.toStdString());
        if (component == "unet") expect_error([&] { kto::UNetConfig::from_json(j); }, {needle.toStdString().c_str()});
        else expect_error([&] { kto::VAEConfig::from_json(j); }, {needle.toStdString().c_str()});
    }

    void configErrorNamesFile() {
        const fs::path dir = fs::path(tmp.path().toStdString()) / "sdxl_unet";
        fs::create_directories(dir);
        fs::copy_file(kto::test::test_data_dir() + "/configs/nn_unet_sdxl_addition_embed.json", dir / "config.json",
                      fs::copy_options::overwrite_existing);
        expect_error([&] { kto::load_unet(dir.string()); }, {"sdxl_unet/config.json", "addition_embed_type"});
        expect_error([&] { kto::load_unet(tmp.path().toStdString() + "/no_such_folder"); }, {"no_such_folder", "no such folder"});
    }

    void wrongShapeTensorIsError() {
        auto dir = edited_component("unet", "unet_wrong_shape", [](kto::TensorMap& t) {
            t["conv_in.weight"] = torch::zeros({32, 4, 1, 1});
        });
        expect_error([&] { kto::load_unet(dir); }, {"diffusion_pytorch_model.safetensors", "wrong shape", "conv_in.weight",
                                                    "[32,4,1,1]", "[32,4,3,3]"});
    }

    void missingAndUnexpectedTensorsAreErrors() {
        auto dir = edited_component("unet", "unet_missing", [](kto::TensorMap& t) {
            t.erase("mid_block.attentions.0.proj_out.bias");
            t["mid_block.attentions.0.extra.weight"] = torch::zeros({2});
        });
        expect_error([&] { kto::load_unet(dir); }, {"missing from the checkpoint", "mid_block.attentions.0.proj_out.bias",
                                                    "unexpected in the checkpoint", "mid_block.attentions.0.extra.weight"});
        auto vdir = edited_component("vae", "vae_missing", [](kto::TensorMap& t) { t.erase("decoder.conv_out.bias"); });
        expect_error([&] { kto::load_vae(vdir); }, {"missing from the checkpoint", "decoder.conv_out.bias"});
    }

    void legacyVAEAttentionNamesLoad() {
        const auto j = read_json(ref + "/state_dict_keys/sd15_vae.json");
        const auto renames = j.at("deprecated_attention_names");
        auto dir = edited_component("vae", "vae_legacy", [&](kto::TensorMap& t) {
            for (auto it = renames.begin(); it != renames.end(); ++it) {
                auto v = t.at(it.key());
                t.erase(it.key());
                // Old checkpoints sometimes hold the projections as 1x1 convolutions.
                if (v.dim() == 2 && it.key().rfind("decoder.", 0) == 0) v = v.reshape({v.size(0), v.size(1), 1, 1});
                t[it.value().get<std::string>()] = v;
            }
        });
        torch::NoGradGuard ng;
        auto legacy = kto::load_vae(dir);
        auto current = kto::load_vae(ref + "/tiny-sd/vae");
        auto x = torch::rand({1, 3, 32, 32}) * 2 - 1;
        KTO_COMPARE_TENSORS(legacy->encode(x).mean, current->encode(x).mean, 0.0, "legacy-named VAE encode");
        auto z = torch::randn({1, 4, 8, 8});
        KTO_COMPARE_TENSORS(legacy->decode(z), current->decode(z), 0.0, "legacy-named VAE decode");
    }

    void fp16WeightsLoad() {
        const fs::path dir = fs::path(tmp.path().toStdString()) / "unet_fp16";
        fs::create_directories(dir);
        fs::copy_file(fs::path(ref) / "tiny-sd/unet/config.json", dir / "config.json", fs::copy_options::overwrite_existing);
        auto t = kto::load_safetensors(ref + "/tiny-sd/unet/diffusion_pytorch_model.safetensors");
        for (auto& [k, v] : t) v = v.to(torch::kFloat16);
        kto::write_safetensors((dir / "diffusion_pytorch_model.fp16.safetensors").string(), t, {{"format", "pt"}});
        auto unet = kto::load_unet(dir.string());
        QCOMPARE(unet->conv_in->weight.scalar_type(), torch::kFloat32);
        QVERIFY(torch::equal(unet->conv_in->weight, t.at("conv_in.weight").to(torch::kFloat32)));
    }

    void saveUNetRoundTrip() {
        auto unet = kto::load_unet(ref + "/tiny-sd/unet");
        const auto config = read_json(ref + "/tiny-sd/unet/config.json");
        const auto out = tmp.path().toStdString() + "/saved_unet";
        kto::save_unet(unet, config, out);
        const auto written = kto::read_safetensors(out + "/diffusion_pytorch_model.safetensors");
        QCOMPARE(written.metadata.at("format"), std::string("pt"));
        const auto original = kto::load_safetensors(ref + "/tiny-sd/unet/diffusion_pytorch_model.safetensors");
        QCOMPARE(written.tensors.size(), original.size());
        for (const auto& [k, v] : original) QVERIFY2(torch::equal(written.tensors.at(k), v), k.c_str());
        const auto cfg = read_json(out + "/config.json");
        QCOMPARE(cfg.at("_class_name").get<std::string>(), std::string("UNet2DConditionModel"));
        QVERIFY(cfg.contains("_diffusers_version"));
        QCOMPARE(cfg.at("block_out_channels"), config.at("block_out_channels"));
        auto reloaded = kto::load_unet(out);
        QCOMPARE(kto::describe_parameters(*reloaded), kto::describe_parameters(*unet));
    }
};

QTEST_GUILESS_MAIN(TestNNModelFiles)
#include "test_nn_model_files.moc"
