#include <torch/torch.h>
#include <QtTest/QtTest>

#include <nlohmann/json.hpp>

#include "core/common/error.h"
#include "core/io/model_folder.h"
#include "core/io/safetensors.h"
#include "core/text/clip_text_model.h"
#include "tests/support/tensor_check.h"
#include "tests/support/test_paths.h"

class TestClipTextModel : public QObject {
    Q_OBJECT

    kto::TensorMap golden_;
    kto::CLIPTextModel model_{nullptr};

    std::string tiny_sd() const { return kto::test::reference_dir() + "/tiny-sd"; }

private slots:
    void initTestCase() {
        golden_ = kto::load_safetensors(kto::test::reference_dir() +
                                        "/golden/tiny-sd/text_encoder.safetensors");
        model_ = kto::load_text_encoder(tiny_sd());
    }

    void lastHiddenStateAndPooler() {
        torch::NoGradGuard ng;
        const auto out = model_(golden_.at("input_ids"));
        KTO_COMPARE_TENSORS(out.last_hidden_state, golden_.at("last_hidden_state"), 1e-4,
                            "text_encoder last_hidden_state");
        KTO_COMPARE_TENSORS(out.pooler_output, golden_.at("pooler_output"), 1e-4,
                            "text_encoder pooler_output");
    }

    void withAttentionMask() {
        torch::NoGradGuard ng;
        const auto out = model_(golden_.at("input_ids"), golden_.at("attention_mask"));
        KTO_COMPARE_TENSORS(out.last_hidden_state,
                            golden_.at("last_hidden_state_with_attention_mask"), 1e-4,
                            "text_encoder last_hidden_state_with_attention_mask");
    }

    void penultimateClipSkip() {
        torch::NoGradGuard ng;
        KTO_COMPARE_TENSORS(model_->encode(golden_.at("input_ids"), 1),
                            golden_.at("penultimate_hidden_state_final_ln"), 1e-4,
                            "text_encoder penultimate_hidden_state_final_ln");
        KTO_COMPARE_TENSORS(model_->encode(golden_.at("input_ids"), 0),
                            golden_.at("last_hidden_state"), 1e-4,
                            "text_encoder encode clip_skip 0");
        QVERIFY_THROWS_EXCEPTION(kto::Error, model_->encode(golden_.at("input_ids"), 5));
    }

    void debugHiddenStates() {
        torch::NoGradGuard ng;
        const auto ids = golden_.at("input_ids").slice(0, 0, 4);
        const auto out = model_->forward(ids, {}, true);
        QCOMPARE(int(out.hidden_states.size()), 6);
        for (int i = 0; i < 6; ++i) {
            const std::string name = "debug.hidden_states." + std::to_string(i);
            KTO_COMPARE_TENSORS(out.hidden_states[size_t(i)], golden_.at(name), 1e-4,
                                "text_encoder " + name);
        }
    }

    void loadsFromComponentFolder() {
        torch::NoGradGuard ng;
        auto m = kto::load_text_encoder(tiny_sd() + "/text_encoder");
        const auto ids = golden_.at("input_ids").slice(0, 0, 2);
        QVERIFY(torch::equal(m(ids).last_hidden_state, model_(ids).last_hidden_state));
        QVERIFY(!m->is_training());
    }

    // The device/dtype parameters: a float64 copy agrees with the float32 goldens to their noise
    // floor.
    void loadsInFloat64() {
        torch::NoGradGuard ng;
        auto m = kto::load_text_encoder(tiny_sd(), torch::kCPU, torch::kFloat64);
        QCOMPARE(m->text_model->final_layer_norm->weight.scalar_type(), torch::kFloat64);
        const auto out = m(golden_.at("input_ids"));
        QCOMPARE(out.last_hidden_state.scalar_type(), torch::kFloat64);
        KTO_COMPARE_TENSORS(out.last_hidden_state, golden_.at("last_hidden_state"), 1e-4,
                            "text_encoder last_hidden_state (float64 run)");
    }

    // Configs with eos_token_id != 2 pool at the first EOS id rather than at the highest id.
    void poolsAtFirstEosForNewConfigs() {
        torch::NoGradGuard ng;
        auto cfg = kto::CLIPTextConfig::from_json(
            kto::read_json_file(tiny_sd() + "/text_encoder/config.json"));
        cfg.eos_token_id = 7;
        kto::CLIPTextModel m(cfg);
        kto::StateDictLoadOptions opts;
        kto::load_state_dict_strict(
            *m, kto::load_safetensors(tiny_sd() + "/text_encoder/model.safetensors"), "te", opts);
        const auto ids = torch::tensor({998, 40, 7, 900, 7, 999, 999}, torch::kInt64).view({1, 7});
        const auto out = m(ids);
        QVERIFY(torch::equal(out.pooler_output[0], out.last_hidden_state[0][2]));
        QVERIFY(torch::equal(model_(ids).pooler_output[0], model_(ids).last_hidden_state[0][5]));
    }

    void rejectsBadInput() {
        torch::NoGradGuard ng;
        QVERIFY_THROWS_EXCEPTION(kto::Error, model_(torch::zeros({1, 78}, torch::kInt64)));
        QVERIFY_THROWS_EXCEPTION(kto::Error, model_(torch::full({1, 5}, 1000, torch::kInt64)));
        QVERIFY_THROWS_EXCEPTION(kto::Error, model_(torch::zeros({5}, torch::kInt64)));
    }

    void configErrorsNameTheField() {
        auto j = kto::read_json_file(tiny_sd() + "/text_encoder/config.json");
        j["hidden_act"] = "relu6";
        try {
            kto::CLIPTextConfig::from_json(j, "te/config.json");
            QFAIL("no error");
        } catch (const kto::Error& e) {
            QVERIFY2(
                std::string(e.what()).find(
                    "te/config.json: 'hidden_act' 'relu6' is not supported") != std::string::npos,
                e.what());
        }
        j = kto::read_json_file(tiny_sd() + "/text_encoder/config.json");
        j.erase("hidden_size");
        try {
            kto::CLIPTextConfig::from_json(j, "te/config.json");
            QFAIL("no error");
        } catch (const kto::Error& e) {
            QVERIFY2(std::string(e.what()).find("te/config.json: missing 'hidden_size'") !=
                         std::string::npos,
                     e.what());
        }
    }

    void wrongWeightsAreRejected() {
        // A text encoder config that does not fit the stored weights: the error lists the mismatch.
        auto cfg = kto::CLIPTextConfig::from_json(
            kto::read_json_file(tiny_sd() + "/text_encoder/config.json"));
        cfg.num_hidden_layers = 6;
        kto::CLIPTextModel m(cfg);
        const auto w = kto::load_safetensors(tiny_sd() + "/text_encoder/model.safetensors");
        try {
            kto::load_state_dict_strict(*m, w, "model.safetensors");
            QFAIL("no error");
        } catch (const kto::Error& e) {
            QVERIFY2(std::string(e.what()).find("text_model.encoder.layers.5.mlp.fc1.weight") !=
                         std::string::npos,
                     e.what());
        }
    }

    // Our module declares exactly the SD 1.5 text encoder's state-dict names and shapes.
    void matchesSd15StateDictKeys() {
        const auto ref = kto::read_json_file(kto::test::reference_dir() +
                                             "/state_dict_keys/sd15_text_encoder.json");
        const kto::CLIPTextModel full(
            kto::CLIPTextConfig::from_json(ref["config"], "sd15_text_encoder.json"));
        std::map<std::string, std::vector<int64_t>> expected;
        for (const auto& t : ref["tensors"])
            expected[t["name"].get<std::string>()] = t["shape"].get<std::vector<int64_t>>();
        const auto ours = kto::named_parameter_shapes(*full);
        QCOMPARE(int(ours.size()), ref["num_tensors"].get<int>());
        int64_t elements = 0;
        for (const auto& [name, shape] : ours) {
            QVERIFY2(expected.count(name), ("not in the reference: " + name).c_str());
            QVERIFY2(expected.at(name) == shape, (name + ": " + kto::shape_string(shape) + " vs " +
                                                  kto::shape_string(expected.at(name)))
                                                     .c_str());
            int64_t n = 1;
            for (auto d : shape) n *= d;
            elements += n;
        }
        QCOMPARE(elements, ref["num_elements"].get<int64_t>());
    }
};

QTEST_GUILESS_MAIN(TestClipTextModel)
#include "test_clip_text_model.moc"
