// Single-file LDM checkpoints: every SD 1.5 key maps to LDM and back (shapes intact, architecture
// inferred), and the tiny reference model written in LDM layout loads and reproduces the golden
// UNet output and the folder model's generation.
#include <QtTest/QtTest>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <fstream>

#include "core/common/error.h"
#include "core/io/model_folder.h"
#include "core/io/safetensors.h"
#include "core/pipeline/pipeline.h"
#include "core/pipeline/single_file.h"
#include "tests/support/tensor_check.h"
#include "tests/support/error_check.h"
#include "tests/support/test_paths.h"

using kto::test::expect_error;

class TestSingleFile : public QObject {
    Q_OBJECT

    QTemporaryDir tmp_;

    static kto::TensorMap meta_tensors(const std::string& component) {
        std::ifstream in(kto::test::reference_dir() + "/state_dict_keys/sd15_" + component + ".json");
        auto j = nlohmann::json::parse(in);
        kto::TensorMap m;
        for (const auto& t : j.at("tensors"))
            m[t.at("name").get<std::string>()] =
                torch::empty(t.at("shape").get<std::vector<int64_t>>(), torch::TensorOptions().device(torch::kMeta));
        return m;
    }

private slots:
    void sd15KeysRoundTrip() {
        const auto unet = meta_tensors("unet"), vae = meta_tensors("vae");
        auto text = meta_tensors("text_encoder");
        const auto ldm = kto::to_ldm_checkpoint(unet, vae, text);
        QCOMPARE(ldm.size(), unet.size() + vae.size() + text.size());
        QVERIFY(ldm.count("model.diffusion_model.input_blocks.3.0.op.weight"));
        QVERIFY(ldm.count("model.diffusion_model.output_blocks.2.1.conv.weight"));
        QVERIFY(ldm.count("model.diffusion_model.output_blocks.5.2.conv.weight"));
        QVERIFY(ldm.count("first_stage_model.decoder.up.0.block.0.nin_shortcut.weight"));
        QVERIFY(ldm.count("cond_stage_model.transformer.text_model.final_layer_norm.weight"));
        const auto c = kto::convert_ldm_checkpoint(ldm, "v1-5.safetensors");
        QCOMPARE(c.family, std::string("sd1"));
        auto same = [](const kto::TensorMap& a, const kto::TensorMap& b) {
            if (a.size() != b.size()) return false;
            for (const auto& [k, t] : a) {
                auto it = b.find(k);
                if (it == b.end() || it->second.sizes() != t.sizes()) return false;
            }
            return true;
        };
        QVERIFY(same(c.unet, unet));
        QVERIFY(same(c.vae, vae));
        text.erase("text_model.embeddings.position_ids");
        QVERIFY(same(c.text_encoder, text));
        QCOMPARE(c.unet_config["block_out_channels"].get<std::vector<int64_t>>(), std::vector<int64_t>({320, 640, 1280, 1280}));
        QCOMPARE(c.unet_config["cross_attention_dim"].get<int64_t>(), int64_t(768));
        QCOMPARE(c.unet_config["layers_per_block"].get<int>(), 2);
        QCOMPARE(c.vae_config["block_out_channels"].get<std::vector<int64_t>>(), std::vector<int64_t>({128, 256, 512, 512}));
        QCOMPARE(c.text_config["num_hidden_layers"].get<int>(), 12);
        QCOMPARE(c.text_config["hidden_act"].get<std::string>(), std::string("quick_gelu"));
        // The inferred configs build the full architecture with exactly the converted keys.
        QCOMPARE(kto::UNetConfig::from_json(c.unet_config).block_out_channels.size(), size_t(4));
    }

    void tinyModelFromOneFile() {
        try {
            tinyModelFromOneFileBody();
        } catch (const kto::Error& e) {
            QFAIL(e.what());
        }
    }

private:
    void tinyModelFromOneFileBody() {
        const std::string dir = kto::test::reference_dir() + "/tiny-sd";
        const auto ldm = kto::to_ldm_checkpoint(kto::load_component_weights(dir + "/unet"),
                                                kto::load_component_weights(dir + "/vae"),
                                                kto::load_component_weights(dir + "/text_encoder"));
        const std::string file = tmp_.filePath("tiny-ldm.safetensors").toStdString();
        kto::write_safetensors(file, ldm);
        kto::ModelBundleOptions o;
        o.config_dir = dir;  // tiny configs (group norm 8, ...) cannot be inferred from tensors
        auto b = kto::ModelBundle::load(file, o);
        QCOMPARE(b.name, std::string("tiny-ldm"));
        auto g = kto::load_safetensors(kto::test::reference_dir() + "/golden/tiny-sd/unet.safetensors");
        torch::NoGradGuard ng;
        auto out = b.unet->forward(g.at("sample"), g.at("cases.t500.timestep").reshape({}), g.at("encoder_hidden_states"));
        KTO_COMPARE_TENSORS(out, g.at("cases.t500.out"), 1e-4, "single-file tiny unet t500");
        auto folder = kto::ModelBundle::load(dir);
        kto::GenerateOptions go;
        go.prompts = {"a horse"};
        go.steps = 2;
        go.width = go.height = 32;
        go.seed = 3;
        auto a = kto::generate(b, go), c = kto::generate(folder, go);
        KTO_COMPARE_TENSORS(a.images, c.images, 1e-6, "single-file vs folder generation");
    }

private slots:
    void badFiles() {
        const std::string other = tmp_.filePath("other.safetensors").toStdString();
        kto::write_safetensors(other, {{"weight", torch::zeros({2, 2})}});
        expect_error([&] { kto::ModelBundle::load(other); }, "not an LDM Stable Diffusion checkpoint");
        const std::string text = tmp_.filePath("model.ckpt").toStdString();
        std::ofstream(text) << "not a checkpoint";
        expect_error([&] { kto::ModelBundle::load(text); }, "pickle .ckpt files are not supported");
        // SDXL-like width is refused with a reason.
        kto::TensorMap x = kto::to_ldm_checkpoint(meta_tensors("unet"), meta_tensors("vae"), meta_tensors("text_encoder"));
        x["model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"] =
            torch::empty({640, 2048}, torch::TensorOptions().device(torch::kMeta));
        x["model.diffusion_model.input_blocks.7.1.transformer_blocks.0.attn2.to_k.weight"] =
            torch::empty({1280, 2048}, torch::TensorOptions().device(torch::kMeta));
        expect_error([&] { kto::convert_ldm_checkpoint(x, "xl.safetensors"); }, "SDXL");
    }
};

QTEST_GUILESS_MAIN(TestSingleFile)
#include "test_single_file.moc"
