// AutoencoderKL against diffusers' golden outputs for the tiny-sd reference model.
#include <QtTest/QtTest>
#include <torch/torch.h>

#include "core/common/error.h"
#include "core/io/safetensors.h"
#include "core/nn/vae.h"
#include "tests/support/tensor_check.h"
#include "tests/support/test_paths.h"

#include "tests/support/error_check.h"

class TestVAEParity : public QObject {
    Q_OBJECT
    kto::AutoencoderKL vae{nullptr};
    kto::TensorMap golden;

    torch::Tensor g(const std::string& name) {
        auto it = golden.find(name);
        if (it == golden.end()) qFatal("golden tensor %s missing", name.c_str());
        return it->second;
    }

private slots:
    void initTestCase() {
        const auto ref = kto::test::reference_dir();
        vae = kto::load_vae(ref + "/tiny-sd/vae");
        golden = kto::load_safetensors(ref + "/golden/tiny-sd/vae.safetensors");
        QCOMPARE(vae->scaling_factor(), 0.18215);
    }

    void encode() {
        torch::NoGradGuard ng;
        auto dist = vae->encode(g("image"));
        KTO_COMPARE_TENSORS(dist.mean, g("latent_dist.mean"), 1e-4, "vae latent_dist.mean");
        KTO_COMPARE_TENSORS(dist.logvar, g("latent_dist.logvar"), 1e-4, "vae latent_dist.logvar");
        KTO_COMPARE_TENSORS(dist.std(), g("latent_dist.std"), 1e-4, "vae latent_dist.std");
    }

    void sampleUsesGenerator() {
        torch::NoGradGuard ng;
        auto dist = vae->encode(g("image"));
        auto g1 = at::detail::createCPUGenerator(7), g2 = at::detail::createCPUGenerator(7);
        auto a = dist.sample(g1), b = dist.sample(g2);
        QVERIFY(torch::equal(a, b));
        QVERIFY(!torch::equal(a, dist.mean));
    }

    void decode() {
        torch::NoGradGuard ng;
        KTO_COMPARE_TENSORS(vae->decode(g("decoder_in")), g("decoder_out"), 1e-4, "vae decoder_out");
    }

    void nonsquare() {
        torch::NoGradGuard ng;
        auto dist = vae->encode(g("nonsquare.image"));
        KTO_COMPARE_TENSORS(dist.mean, g("nonsquare.latent_dist.mean"), 1e-4, "vae nonsquare.latent_dist.mean");
        KTO_COMPARE_TENSORS(dist.logvar, g("nonsquare.latent_dist.logvar"), 1e-4, "vae nonsquare.latent_dist.logvar");
        KTO_COMPARE_TENSORS(vae->decode(g("nonsquare.decoder_in")), g("nonsquare.decoder_out"), 1e-4,
                            "vae nonsquare.decoder_out");
    }

    void debugActivations() {
        torch::NoGradGuard ng;
        kto::ActivationTrace trace;
        auto dist = vae->encode(g("debug.image"), &trace);
        trace["latent_dist.mean"] = dist.mean;
        trace["latent_dist.logvar"] = dist.logvar;
        trace["decoder_out"] = vae->decode(g("debug.decoder_in"), &trace);
        int compared = 0;
        for (const auto& [name, expected] : golden) {
            if (name.rfind("debug.", 0) != 0 || name == "debug.image" || name == "debug.decoder_in") continue;
            const auto key = name.substr(6);
            QVERIFY2(trace.count(key), ("activation not traced: " + key).c_str());
            KTO_COMPARE_TENSORS(trace.at(key), expected, 1e-4, "vae " + name);
            ++compared;
        }
        QCOMPARE(compared, 16);
    }

    void badInputsAreErrors() {
        torch::NoGradGuard ng;
        EXPECT_KTO_ERROR(vae->encode(torch::zeros({1, 4, 16, 16})));
        EXPECT_KTO_ERROR(vae->decode(torch::zeros({1, 3, 8, 8})));
    }
};

QTEST_GUILESS_MAIN(TestVAEParity)
#include "test_vae_parity.moc"
