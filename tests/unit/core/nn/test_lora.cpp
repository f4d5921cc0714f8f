// LoRA adapters on the tiny-sd UNet: zero-initialised B keeps the base output, disabling restores
// it, save/load round trip (PEFT and older diffusers names), gradients reach the adapters only.
#include <QtTest/QtTest>
#include <torch/torch.h>

#include "core/common/error.h"
#include "core/io/safetensors.h"
#include "core/nn/lora.h"
#include "tests/support/tensor_check.h"
#include "tests/support/test_paths.h"

#include "tests/support/error_check.h"

class TestLoRA : public QObject {
    Q_OBJECT
    QTemporaryDir tmp;
    std::string unet_dir;
    torch::Tensor sample, t, ehs;

    kto::UNet2DConditionModel fresh_unet() {
        auto unet = kto::load_unet(unet_dir);
        for (auto& p : unet->parameters()) p.requires_grad_(false);
        return unet;
    }

    static void randomize_b(kto::UNetLoRA& lora) {
        torch::NoGradGuard ng;
        for (const auto& [path, a] : lora.adapters()) a->B.normal_(0.0, 0.05);
    }

private slots:
    void initTestCase() {
        QVERIFY(tmp.isValid());
        unet_dir = kto::test::reference_dir() + "/tiny-sd/unet";
        torch::manual_seed(3);
        sample = torch::randn({1, 4, 16, 16});
        t = torch::tensor({400});
        ehs = torch::randn({1, 77, 32});
    }

    void attachesToAttentionProjections() {
        auto unet = fresh_unet();
        kto::UNetLoRA lora(unet, kto::LoRAConfig{});
        // tiny-sd: 2 + 1 + 3 transformer blocks, attn1 + attn2, 4 projections each.
        QCOMPARE(int(lora.adapters().size()), 6 * 2 * 4);
        QVERIFY(lora.adapters().count("down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"));
        QCOMPARE(lora.adapters().at("down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k")->A.size(1), int64_t(32));
        // The base state dict is unchanged by attaching.
        QCOMPARE(unet->named_parameters().size(), kto::load_unet(unet_dir)->named_parameters().size());
        kto::LoRAConfig bad;
        bad.targets = {"no_such_layer"};
        EXPECT_KTO_ERROR(kto::UNetLoRA(unet, bad));
    }

    void zeroBEqualsBaseAndDisableRestoresBase() {
        torch::NoGradGuard ng;
        auto unet = fresh_unet();
        auto base = unet->forward(sample, t, ehs);
        kto::UNetLoRA lora(unet, kto::LoRAConfig{});
        KTO_COMPARE_TENSORS(unet->forward(sample, t, ehs), base, 0.0, "LoRA with B=0 vs base");
        randomize_b(lora);
        auto adapted = unet->forward(sample, t, ehs);
        QVERIFY((adapted - base).abs().max().item<double>() > 1e-3);
        lora.set_enabled(false);
        KTO_COMPARE_TENSORS(unet->forward(sample, t, ehs), base, 0.0, "LoRA disabled vs base");
        lora.set_enabled(true);
        KTO_COMPARE_TENSORS(unet->forward(sample, t, ehs), adapted, 0.0, "LoRA re-enabled");
    }

    void saveLoadRoundTrip() {
        torch::NoGradGuard ng;
        const auto path = tmp.path().toStdString() + "/pytorch_lora_weights.safetensors";
        torch::Tensor adapted;
        {
            auto unet = fresh_unet();
            kto::LoRAConfig cfg;
            cfg.rank = 2;
            cfg.alpha = 4;  // scale 2: baked into lora_B on save
            kto::UNetLoRA lora(unet, cfg);
            randomize_b(lora);
            adapted = unet->forward(sample, t, ehs);
            lora.save(path);
        }
        const auto file = kto::read_safetensors(path);
        QVERIFY(file.tensors.count("unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_out.0.lora_A.weight"));
        QCOMPARE(file.tensors.at("unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_out.0.lora_B.weight").sizes(),
                 torch::IntArrayRef({64, 2}));
        QCOMPARE(file.metadata.at("format"), std::string("pt"));

        auto unet = fresh_unet();
        auto lora = kto::UNetLoRA::load(unet, path);
        QCOMPARE(lora->config().rank, int64_t(2));
        KTO_COMPARE_TENSORS(unet->forward(sample, t, ehs), adapted, 1e-5, "LoRA save/load round trip");

        // The same adapters under the older diffusers names load to the same function.
        kto::TensorMap old_names;
        for (const auto& [k, v] : file.tensors) {
            std::string n = k.substr(5);  // drop "unet."
            n.replace(n.find(".lora_"), std::string(".lora_A.weight").size(),
                      k.find("lora_A") != std::string::npos ? ".lora.down.weight" : ".lora.up.weight");
            old_names[n] = v;
        }
        const auto old_path = tmp.path().toStdString() + "/old_names.safetensors";
        kto::write_safetensors(old_path, old_names);
        auto unet2 = fresh_unet();
        auto lora2 = kto::UNetLoRA::load(unet2, old_path);
        KTO_COMPARE_TENSORS(unet2->forward(sample, t, ehs), adapted, 1e-5, "LoRA old diffusers names");
    }

    void loadRejectsMismatchedFiles() {
        const auto path = tmp.path().toStdString() + "/bad_lora.safetensors";
        kto::write_safetensors(path, {{"unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight", torch::zeros({4, 48})},
                                      {"unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight", torch::zeros({64, 4})}});
        auto unet = fresh_unet();
        EXPECT_KTO_ERROR(kto::UNetLoRA::load(unet, path));
        kto::write_safetensors(path, {{"unet.conv_in.lora_A.weight", torch::zeros({4, 4})},
                                      {"unet.conv_in.lora_B.weight", torch::zeros({32, 4})}});
        EXPECT_KTO_ERROR(kto::UNetLoRA::load(unet, path));
        // The failed loads left no adapter behind.
        kto::UNetLoRA ok(unet, kto::LoRAConfig{});
        QCOMPARE(int(ok.adapters().size()), 48);
    }

    void gradientsReachAdaptersWithCheckpointing() {
        auto unet = fresh_unet();
        kto::UNetLoRA lora(unet, kto::LoRAConfig{});
        randomize_b(lora);
        // Gradients of a scalar loss w.r.t. every adapter tensor; an undefined entry = no gradient.
        auto loss_grads = [&](bool ckpt) {
            unet->set_gradient_checkpointing(ckpt);
            for (auto& p : lora.parameters()) p.mutable_grad() = torch::Tensor();
            auto out = unet->forward(sample, t, ehs);
            out.pow(2).mean().backward();
            std::vector<torch::Tensor> grads;
            for (auto& p : lora.parameters()) grads.push_back(p.grad().defined() ? p.grad().clone() : torch::Tensor());
            return grads;
        };
        auto plain = loss_grads(false);
        auto ckpt = loss_grads(true);
        for (const auto& g : plain) QVERIFY2(g.defined(), "adapter parameter without gradient");
        for (const auto& g : ckpt) QVERIFY2(g.defined(), "adapter parameter without gradient (checkpointing)");
        QCOMPARE(plain.size(), ckpt.size());
        double max_err = 0;
        for (size_t i = 0; i < plain.size(); ++i) max_err = std::max(max_err, (plain[i] - ckpt[i]).abs().max().item<double>());
        std::printf("PARITY %-48s max abs error %g\n", "LoRA grads, checkpointing vs plain", max_err);
        QVERIFY(max_err < 1e-6);
        for (auto& p : unet->parameters()) QVERIFY(!p.grad().defined());
        unet->set_gradient_checkpointing(false);
    }
};

QTEST_GUILESS_MAIN(TestLoRA)
#include "test_lora.moc"
