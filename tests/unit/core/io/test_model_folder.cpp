#include <torch/torch.h>
#include <QtTest/QtTest>

#include <filesystem>
#include <fstream>

#include "core/common/error.h"
#include "core/io/model_folder.h"
#include "tests/support/test_paths.h"

namespace fs = std::filesystem;

namespace {

// Runs `f`, which must throw kto::Error containing every needle.
template <class F>
void expect_error(F&& f, std::initializer_list<std::string> needles) {
    try {
        f();
    } catch (const kto::Error& e) {
        const std::string msg = e.what();
        for (const auto& n : needles)
            QVERIFY2(msg.find(n) != std::string::npos, ("expected '" + n + "' in: " + msg).c_str());
        return;
    }
    QFAIL("no kto::Error thrown");
}

struct TinyImpl : torch::nn::Module {
    TinyImpl() {
        proj = register_module("proj", torch::nn::Linear(3, 2));
        norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({2})));
        register_buffer("scale", torch::ones({1}));
    }
    torch::nn::Linear proj{nullptr};
    torch::nn::LayerNorm norm{nullptr};
};
TORCH_MODULE(Tiny);

kto::TensorMap tiny_weights() {
    return {{"proj.weight", torch::arange(6, torch::kFloat32).reshape({2, 3})},
            {"proj.bias", torch::tensor({0.5f, -0.5f})},
            {"norm.weight", torch::tensor({2.f, 3.f})},
            {"norm.bias", torch::tensor({0.f, 1.f})},
            {"scale", torch::tensor({4.f})}};
}

void touch(const fs::path& p) { std::ofstream(p) << "x"; }

}  // namespace

class TestModelFolder : public QObject {
    Q_OBJECT

    QTemporaryDir tmp_;
    std::string tiny_sd() const { return kto::test::reference_dir() + "/tiny-sd"; }
    std::string configs() const { return kto::test::test_data_dir() + "/configs"; }
    fs::path fresh(const std::string& name) const {
        fs::path p = fs::path(tmp_.path().toStdString()) / name;
        fs::create_directories(p);
        return p;
    }

private slots:
    void readsTinySdIndex() {
        const auto index = kto::read_model_index(tiny_sd());
        QCOMPARE(index.pipeline_class, std::string("StableDiffusionPipeline"));
        QCOMPARE(index.components.at("unet").second, std::string("UNet2DConditionModel"));
        QCOMPARE(index.components.at("tokenizer").first, std::string("transformers"));
        QVERIFY(!index.components.count("safety_checker"));  // [null, null]
        QVERIFY(kto::component_dir(tiny_sd(), "vae").find("/vae") != std::string::npos);
    }

    void rejectsBadFolders() {
        expect_error([&] { kto::read_model_index(tmp_.path().toStdString() + "/absent"); },
                     {"absent", "model folder not found"});
        expect_error([&] { kto::read_model_index(fresh("empty").string()); },
                     {"no model_index.json"});
        expect_error([&] { kto::read_model_index(configs() + "/sdxl"); },
                     {"model_index.json", "StableDiffusionXLPipeline", "not supported"});
        expect_error([&] { kto::read_model_index(configs() + "/broken_json"); },
                     {"broken_json/model_index.json", "invalid JSON"});
        expect_error([&] { kto::read_model_index(configs() + "/missing_vae"); },
                     {"missing_vae/model_index.json", "missing component 'vae'"});
        // Index fine but a component folder absent.
        const fs::path p = fresh("nofolders");
        fs::copy_file(tiny_sd() + "/model_index.json", p / "model_index.json");
        expect_error([&] { kto::read_model_index(p.string()); },
                     {"component folder 'unet' not found"});
    }

    void configFieldErrorsNameFileAndField() {
        const auto te = kto::read_component_config(tiny_sd() + "/text_encoder");
        QCOMPARE(te.get<int>("hidden_size"), 32);
        QCOMPARE(te.get<std::string>("hidden_act"), std::string("quick_gelu"));
        QCOMPARE(te.get<double>("layer_norm_eps"), 1e-5);
        QCOMPARE(te.get_or<int>("absent_field", 7), 7);
        expect_error([&] { te.get<int>("latent_channels"); },
                     {"text_encoder/config.json: missing 'latent_channels'"});

        const auto bad = kto::read_component_config(configs() + "/bad_types");
        expect_error([&] { bad.get<int>("hidden_size"); },
                     {"bad_types/config.json: 'hidden_size' must be an integer", "thirty-two"});
        expect_error([&] { bad.get<int>("num_hidden_layers"); },
                     {"'num_hidden_layers' must be an integer", "2.5"});
        expect_error([&] { bad.get<bool>("use_thing"); }, {"'use_thing' must be a boolean"});
        expect_error([&] { bad.get<std::vector<int>>("block_out_channels"); },
                     {"'block_out_channels' must be a list of integers"});
        expect_error([&] { bad.get_or<int>("hidden_size", 3); },
                     {"'hidden_size' must be an integer"});
        QCOMPARE(bad.get<float>("layer_norm_eps"), 1e-5f);
        expect_error([&] { kto::read_component_config(configs() + "/sdxl"); },
                     {"config.json: file not found"});
    }

    void findsWeights() {
        QVERIFY(kto::find_weights_file(tiny_sd() + "/unet")
                    .find("unet/diffusion_pytorch_model.safetensors") != std::string::npos);
        QVERIFY(kto::find_weights_file(tiny_sd() + "/text_encoder")
                    .find("text_encoder/model.safetensors") != std::string::npos);

        const fs::path both = fresh("both");
        touch(both / "diffusion_pytorch_model.safetensors");
        touch(both / "diffusion_pytorch_model.fp16.safetensors");
        QCOMPARE(fs::path(kto::find_weights_file(both.string())).filename().string(),
                 std::string("diffusion_pytorch_model.safetensors"));
        QCOMPARE(fs::path(kto::find_weights_file(both.string(), true)).filename().string(),
                 std::string("diffusion_pytorch_model.fp16.safetensors"));
        const fs::path fp16 = fresh("fp16only");
        touch(fp16 / "model.fp16.safetensors");
        QCOMPARE(fs::path(kto::find_weights_file(fp16.string())).filename().string(),
                 std::string("model.fp16.safetensors"));

        expect_error(
            [&] { kto::find_weights_file(configs() + "/only_bin"); },
            {"pickle .bin weights are not supported; convert to safetensors", "pytorch_model.bin"});
        expect_error([&] { kto::find_weights_file(fresh("noweights").string()); },
                     {"no weights file"});
    }

    void loadsShardedWeights() {
        const fs::path d = fresh("sharded");
        kto::write_safetensors((d / "m-1.safetensors").string(), {{"a", torch::ones({2})}});
        kto::write_safetensors((d / "m-2.safetensors").string(), {{"b", torch::zeros({3})}});
        std::ofstream(d / "diffusion_pytorch_model.safetensors.index.json")
            << R"({"metadata": {}, "weight_map": {"a": "m-1.safetensors", "b": "m-2.safetensors"}})";
        const auto t = kto::load_component_weights(d.string());
        QCOMPARE(int(t.size()), 2);
        QVERIFY(torch::equal(t.at("b"), torch::zeros({3})));
    }

    void loadsStrictlyWithDtypeConversion() {
        Tiny m;
        auto w = tiny_weights();
        w["proj.weight"] = w["proj.weight"].to(torch::kFloat16);
        w["scale"] = w["scale"].to(torch::kFloat64);
        kto::load_state_dict_strict(*m, w, "tiny.safetensors");
        QVERIFY(torch::equal(m->proj->weight, torch::arange(6, torch::kFloat32).reshape({2, 3})));
        QCOMPARE(m->proj->weight.scalar_type(), torch::kFloat32);
        QCOMPARE(m->named_buffers()["scale"].item<float>(), 4.f);
        QVERIFY(m->proj->weight.requires_grad());
    }

    void reportsAllMismatchesAtOnce() {
        Tiny m;
        const auto before = m->proj->bias.clone();
        auto w = tiny_weights();
        w.erase("norm.bias");
        w["proj.bias"] = torch::zeros({5});
        w["extra.weight"] = torch::zeros({1});
        expect_error([&] { kto::load_state_dict_strict(*m, w, "bad.safetensors"); },
                     {"bad.safetensors", "1 missing from the checkpoint", "norm.bias",
                      "1 unexpected in the checkpoint", "extra.weight", "1 with the wrong shape",
                      "proj.bias: checkpoint [5], model [2]"});
        QVERIFY(torch::equal(m->proj->bias, before));  // untouched on error
    }

    void renamesAndIgnores() {
        Tiny m;
        auto w = tiny_weights();
        w["old_proj.weight"] = w["proj.weight"];
        w.erase("proj.weight");
        w["position_ids"] = torch::arange(3);
        kto::StateDictLoadOptions opts;
        opts.renames["old_proj.weight"] = "proj.weight";
        opts.ignore.insert("position_ids");
        kto::load_state_dict_strict(*m, w, "renamed.safetensors", opts);
        QCOMPARE(m->proj->weight[1][2].item<float>(), 5.f);
    }

    void listsShapesSorted() {
        Tiny m;
        const auto shapes = kto::named_parameter_shapes(*m);
        QCOMPARE(int(shapes.size()), 5);
        QCOMPARE(shapes.front().first, std::string("norm.bias"));
        QCOMPARE(shapes.back().first, std::string("scale"));
        QCOMPARE(kto::shape_string(shapes[3].second), std::string("[2,3]"));  // proj.weight
        QCOMPARE(kto::shape_string({}), std::string("[]"));
    }
};

QTEST_GUILESS_MAIN(TestModelFolder)
#include "test_model_folder.moc"
