// UNet2DConditionModel against diffusers' golden outputs for the tiny-sd reference model.
#include <QtTest/QtTest>
#include <torch/torch.h>

#include "core/common/error.h"
#include "core/common/runtime.h"
#include "core/io/safetensors.h"
#include "core/nn/unet.h"
#include "tests/support/tensor_check.h"
#include "tests/support/test_paths.h"

#include "tests/support/error_check.h"

class TestUNetParity : public QObject {
    Q_OBJECT
    kto::UNet2DConditionModel unet{nullptr};
    kto::TensorMap golden;

    torch::Tensor g(const std::string& name) {
        auto it = golden.find(name);
        if (it == golden.end()) qFatal("golden tensor %s missing", name.c_str());
        return it->second;
    }

private slots:
    void initTestCase() {
        const auto ref = kto::test::reference_dir();
        unet = kto::load_unet(ref + "/tiny-sd/unet");
        golden = kto::load_safetensors(ref + "/golden/tiny-sd/unet.safetensors");
    }

    void cases_data() {
        QTest::addColumn<QString>("name");
        for (const char* n : {"t0", "t1", "t250", "t500", "t999", "t_float", "t_per_sample", "nonsquare"})
            QTest::newRow(n) << QString(n);
    }

    void cases() {
        QFETCH(QString, name);
        const auto prefix = "cases." + name.toStdString();
        torch::NoGradGuard ng;
        const bool ns = name == "nonsquare";
        auto sample = ns ? g(prefix + ".sample") : g("sample");
        auto ehs = ns ? g(prefix + ".encoder_hidden_states") : g("encoder_hidden_states");
        auto t = g(prefix + ".timestep");
        // diffusers was called with a 0-dim timestep except for the per-sample case.
        if (t.numel() == 1) t = t.reshape({});
        auto out = unet->forward(sample, t, ehs);
        KTO_COMPARE_TENSORS(out, g(prefix + ".out"), 1e-4, "unet " + prefix + ".out");
    }

    // In bf16 on the CPU (weights and activations; group and layer norms in fp32 inside) the UNet
    // stays close to diffusers' fp32 output: bf16 keeps 8 bits of mantissa, about 0.4% per value.
    // Where libtorch's bf16 products sum in bf16 (1.13 on a CPU without AVX-512: Zen 3 measured
    // 6.4% at t0) the bound is 15%, about twice that.
    void bf16OnCpuStaysClose() {
        torch::NoGradGuard ng;
        const double bound = kto::cpu_bf16_matmul_sums_in_fp32() ? 0.03 : 0.15;
        auto half = kto::load_unet(kto::test::reference_dir() + "/tiny-sd/unet", torch::kCPU, torch::kBFloat16);
        for (const char* n : {"t0", "t500", "t999"}) {
            const auto prefix = std::string("cases.") + n;
            auto t = g(prefix + ".timestep");
            if (t.numel() == 1) t = t.reshape({});
            const auto out = half->forward(g("sample").to(torch::kBFloat16), t, g("encoder_hidden_states").to(torch::kBFloat16));
            QCOMPARE(out.scalar_type(), torch::kBFloat16);
            const auto want = g(prefix + ".out");
            const double rel = ((out.to(torch::kFloat32) - want).norm() / want.norm()).item<double>();
            QVERIFY2(rel < bound, qPrintable(QString("%1: relative error %2 (bound %3)").arg(n).arg(rel).arg(bound)));
        }
        // Norms given a bf16 input and fp32 weights (as CPU autocast leaves them), or the reverse, work
        // and return the input's dtype.
        kto::GroupNorm gn(2, 8, 1e-5, kto::ModuleOptions{});
        const auto x = torch::randn({2, 8, 4, 4});
        const auto y32 = gn->forward(x), y16 = gn->forward(x.to(torch::kBFloat16));
        QCOMPARE(y16.scalar_type(), torch::kBFloat16);
        QVERIFY((y16.to(torch::kFloat32) - y32).abs().max().item<double>() < 0.05);
        gn->to(torch::kBFloat16);
        QCOMPARE(gn->forward(x).scalar_type(), torch::kFloat32);
        kto::LayerNorm ln(8, 1e-5, kto::ModuleOptions{});
        QCOMPARE(ln->forward(torch::randn({3, 8}).to(torch::kBFloat16)).scalar_type(), torch::kBFloat16);
    }

    void timestepShapesAgree() {
        torch::NoGradGuard ng;
        auto sample = g("sample"), ehs = g("encoder_hidden_states");
        auto a = unet->forward(sample, torch::tensor(500, torch::kInt64), ehs);
        auto b = unet->forward(sample, torch::tensor({500}, torch::kInt64), ehs);
        auto c = unet->forward(sample, torch::tensor({500.0f, 500.0f}), ehs);
        QVERIFY(torch::equal(a, b));
        KTO_COMPARE_TENSORS(c, a, 1e-6, "unet t=500 as F32 [2] vs I64 []");
    }

    void debugActivations() {
        torch::NoGradGuard ng;
        kto::ActivationTrace trace;
        unet->forward_traced(g("sample"), g("cases.t500.timestep").reshape({}), g("encoder_hidden_states"), trace);
        int compared = 0;
        for (const auto& [name, expected] : golden) {
            if (name.rfind("debug.", 0) != 0) continue;
            const auto key = name.substr(6);
            QVERIFY2(trace.count(key), ("activation not traced: " + key).c_str());
            KTO_COMPARE_TENSORS(trace.at(key).slice(0, 0, 1), expected, 1e-4, "unet " + name);
            ++compared;
        }
        QCOMPARE(compared, 11);
    }

    void slicedAttentionMatchesReference() {
        // A 64 KiB budget with 64x64 scores per head (16 KiB): 4 heads per slice, 3 slices for 2x5 heads.
        torch::NoGradGuard ng;
        torch::manual_seed(11);
        const int64_t b = 2, heads = 5, d = 8, n = 64;
        auto q = torch::randn({b, n, heads * d}), k = torch::randn({b, n, heads * d}), v = torch::randn({b, n, heads * d});
        auto out = kto::multi_head_attention(q, k, v, heads, /*upcast_scores=*/true, /*upcast_softmax=*/true, 64 << 10);
        auto whole = kto::multi_head_attention(q, k, v, heads, false, false);
        auto split = [&](const torch::Tensor& t) { return t.view({b, n, heads, d}).transpose(1, 2).to(torch::kFloat64); };
        auto probs = torch::softmax(torch::matmul(split(q), split(k).transpose(-1, -2)) / std::sqrt(double(d)), -1);
        auto expected = torch::matmul(probs, split(v)).transpose(1, 2).reshape({b, n, heads * d});
        KTO_COMPARE_TENSORS(out, expected, 1e-5, "sliced attention vs float64 reference");
        KTO_COMPARE_TENSORS(whole, expected, 1e-5, "unsliced attention vs float64 reference");
    }

    void badInputsAreErrors() {
        torch::NoGradGuard ng;
        auto sample = g("sample"), ehs = g("encoder_hidden_states");
        EXPECT_KTO_ERROR(unet->forward(sample.slice(1, 0, 3), torch::tensor(1), ehs));
        EXPECT_KTO_ERROR(unet->forward(sample, torch::tensor({1, 2, 3}), ehs));
        EXPECT_KTO_ERROR(unet->forward(sample, torch::tensor(1), ehs.slice(2, 0, 16)));
    }
};

QTEST_GUILESS_MAIN(TestUNetParity)
#include "test_unet_parity.moc"
