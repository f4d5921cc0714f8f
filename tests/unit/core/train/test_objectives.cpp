// Objectives against values computed by hand in plain doubles, and the direction of one SGD step.
#include <QtTest/QtTest>
#include <torch/torch.h>

#include <cmath>
#include <vector>

#include "core/common/error.h"
#include "core/train/objectives.h"

namespace {

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double log_sigmoid(double x) { return -std::log1p(std::exp(-x)); }

torch::Tensor vec(const std::vector<double>& v) {
    return torch::tensor(std::vector<float>(v.begin(), v.end()));
}

// Hand computation of KTO.md "Per-sample loss" with doubles.
struct HandKto {
    double loss, kl, margin;
};
HandKto hand_kto(const std::vector<double>& m, const std::vector<double>& r, const std::vector<int>& y,
                 double beta, double ld, double lu, bool class_mean, bool loss_averse) {
    const size_t b = m.size();
    std::vector<double> g(b);
    double sum = 0, sum_d = 0, sum_u = 0;
    int nd = 0, nu = 0;
    for (size_t i = 0; i < b; ++i) {
        g[i] = r[i] - m[i];
        sum += g[i];
        if (y[i]) { sum_d += g[i]; ++nd; } else { sum_u += g[i]; ++nu; }
    }
    double point = class_mean ? 0.5 * (sum_d / nd + sum_u / nu) : sum / b;
    const double kl = std::max(0.0, point);
    double loss = 0;
    for (size_t i = 0; i < b; ++i) {
        const double s = y[i] ? 1.0 : -1.0;
        const double z = beta * s * (g[i] - kl);
        const double h = loss_averse ? log_sigmoid(z) : sigmoid(z);
        loss += (y[i] ? ld : lu) * (1.0 - h);
    }
    return {loss / b, kl, sum_d / nd - sum_u / nu};
}

}  // namespace

class TestObjectives : public QObject {
    Q_OBJECT

    // A fixed batch: 3 desirable, 2 undesirable; reference errors mostly above the model's so the
    // batch-mean reference point is positive (exercises the max(0, .)).
    const std::vector<double> m_ = {0.1020, 0.2500, 0.0870, 0.3100, 0.1990};
    const std::vector<double> r_ = {0.1030, 0.2490, 0.0890, 0.3110, 0.2000};
    const std::vector<int> y_ = {1, 0, 1, 1, 0};

    torch::Tensor labels() { return torch::tensor(std::vector<int64_t>(y_.begin(), y_.end())); }

private slots:
    void ktoBatchMeanSigmoid() {
        kto::KtoParams p;
        p.beta = 1000;
        const auto got = kto::kto_objective(vec(m_), vec(r_), labels(), p);
        const auto want = hand_kto(m_, r_, y_, 1000, 1, 1, false, false);
        QVERIFY2(want.kl > 0, "fixture must have a positive reference point");
        QVERIFY(std::abs(got.loss_value - want.loss) < 1e-4);
        QVERIFY(std::abs(got.kl - want.kl) < 1e-6);
        QVERIFY(std::abs(got.reward_margin - want.margin) < 1e-6);
        QCOMPARE(got.loss.dim(), 0);
    }

    void ktoNegativeReferencePointClampsToZero() {
        std::vector<double> r = m_;
        for (auto& v : r) v -= 0.002;  // the model beats the reference everywhere: mean g < 0
        kto::KtoParams p;
        const auto got = kto::kto_objective(vec(m_), vec(r), labels(), p);
        const auto want = hand_kto(m_, r, y_, 1000, 1, 1, false, false);
        QCOMPARE(want.kl, 0.0);
        QCOMPARE(got.kl, 0.0);
        QVERIFY(std::abs(got.loss_value - want.loss) < 1e-4);
    }

    void ktoWeightsClassMeanLossAverse() {
        kto::KtoParams p;
        p.beta = 5000;
        p.lambda_desirable = 1.5;
        p.lambda_undesirable = 0.7;
        p.reference_point = kto::ReferencePoint::class_mean;
        p.utility = kto::Utility::loss_averse;
        const auto got = kto::kto_objective(vec(m_), vec(r_), labels(), p);
        const auto want = hand_kto(m_, r_, y_, 5000, 1.5, 0.7, true, true);
        QVERIFY(std::abs(got.loss_value - want.loss) < 1e-3 * std::max(1.0, std::abs(want.loss)));
        QVERIFY(std::abs(got.kl - want.kl) < 1e-6);
        // Class mean differs from batch mean on this unbalanced batch.
        const auto batch = hand_kto(m_, r_, y_, 5000, 1.5, 0.7, false, true);
        QVERIFY(std::abs(want.kl - batch.kl) > 1e-5);
    }

    void ktoAllReduceHookIsUsed() {
        kto::KtoParams p;
        int calls = 0;
        // A fake second worker whose mean g is 0.003: the average is (local + 0.003) / 2.
        p.all_reduce_mean = [&](const torch::Tensor& t) {
            ++calls;
            return (t + 0.003) / 2;
        };
        const auto got = kto::kto_objective(vec(m_), vec(r_), labels(), p);
        double mean_g = 0;
        for (size_t i = 0; i < m_.size(); ++i) mean_g += (r_[i] - m_[i]) / m_.size();
        QCOMPARE(calls, 1);
        QVERIFY(std::abs(got.kl - (mean_g + 0.003) / 2) < 1e-6);
    }

    void ktoGradientMatchesHandDerivative() {
        // d loss / d m_i = w_i * h_i (1 - h_i) * beta * s_i / B for the sigmoid utility (kl detached).
        kto::KtoParams p;
        p.beta = 1000;
        auto m = vec(m_).requires_grad_(true);
        const auto got = kto::kto_objective(m, vec(r_), labels(), p);
        got.loss.backward();
        const auto want = hand_kto(m_, r_, y_, 1000, 1, 1, false, false);
        for (size_t i = 0; i < m_.size(); ++i) {
            const double s = y_[i] ? 1.0 : -1.0;
            const double h = sigmoid(1000 * s * (r_[i] - m_[i] - want.kl));
            const double d = h * (1 - h) * 1000 * s / m_.size();
            QVERIFY(std::abs(m.grad()[i].item<double>() - d) < 1e-3 * std::max(1.0, std::abs(d)));
        }
    }

    void sftHandValue() {
        const auto got = kto::sft_objective(vec(m_), labels());
        double want = 0;
        for (size_t i = 0; i < m_.size(); ++i) want += m_[i] * y_[i] / m_.size();
        QVERIFY(std::abs(got.loss_value - want) < 1e-6);
        QVERIFY(std::isnan(got.reward_margin));
    }

    void dpoHandValue() {
        const std::vector<double> mw = {0.20, 0.31}, ml = {0.25, 0.30}, rw = {0.21, 0.30},
                                  rl = {0.24, 0.305};
        const double beta = 5000;
        const auto got = kto::dpo_objective(vec(mw), vec(ml), vec(rw), vec(rl), beta);
        double want = 0, margin = 0;
        for (size_t i = 0; i < mw.size(); ++i) {
            const double md = mw[i] - ml[i], rd = rw[i] - rl[i];
            want += -log_sigmoid(-0.5 * beta * (md - rd)) / mw.size();
            margin += (rd - md) / mw.size();
        }
        QVERIFY(std::abs(got.loss_value - want) < 1e-3 * std::max(1.0, want));
        QVERIFY(std::abs(got.reward_margin - margin) < 1e-6);
    }

    void perSampleMseIsFp32MeanOverCHW() {
        auto pred = torch::arange(24, torch::kFloat).reshape({2, 3, 2, 2}).to(torch::kDouble);
        auto target = torch::zeros({2, 3, 2, 2});
        const auto e = kto::per_sample_mse(pred, target);
        QCOMPARE(e.scalar_type(), torch::kFloat);
        QCOMPARE(e.size(0), 2);
        double s0 = 0;
        for (int i = 0; i < 12; ++i) s0 += double(i) * i / 12;
        QVERIFY(std::abs(e[0].item<double>() - s0) < 1e-3);
    }

    void badShapesAreClearErrors() {
        kto::KtoParams p;
        bool thrown = false;
        try {
            kto::kto_objective(vec({0.1, 0.2}), vec({0.1}), torch::tensor({1, 0}), p);
        } catch (const kto::Error& e) {
            thrown = QString(e.what()).contains("ref_err");
        }
        QVERIFY(thrown);
        QVERIFY_EXCEPTION_THROWN(kto::parse_objective("ppo"), kto::Error);
    }

    void sgdStepMovesDesirableUpAndUndesirableDown() {
        // A tiny denoiser: eps_hat = W x + b on 8-dim "latents"; reference = frozen copy.
        torch::manual_seed(7);
        torch::nn::Linear model(8, 8), ref(8, 8);
        {
            torch::NoGradGuard ng;
            for (size_t i = 0; i < model->parameters().size(); ++i)
                ref->parameters()[i].copy_(model->parameters()[i]);
        }
        const auto x = torch::randn({2, 8});
        const auto noise = torch::randn({2, 8});
        const auto y = torch::tensor({1, 0});
        auto errors = [&](torch::nn::Linear& net) { return kto::per_sample_mse(net(x), noise); };

        kto::KtoParams p;
        p.beta = 10;
        torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(0.05));
        const auto r = errors(ref).detach();
        const auto m0 = errors(model).detach();
        auto res = kto::kto_objective(errors(model), r, y, p);
        opt.zero_grad();
        res.loss.backward();
        opt.step();
        const auto m1 = errors(model).detach();
        const double g_undesirable_before = (r[1] - m0[1]).item<double>();
        const double g_undesirable_after = (r[1] - m1[1]).item<double>();
        QVERIFY2(m1[0].item<double>() < m0[0].item<double>(), "desirable sample's loss must fall");
        QVERIFY2(g_undesirable_after < g_undesirable_before,
                 "undesirable sample's implicit reward must fall");
        // And the KTO loss itself falls.
        const auto after = kto::kto_objective(errors(model), r, y, p);
        QVERIFY(after.loss_value < res.loss_value);
    }
};

QTEST_GUILESS_MAIN(TestObjectives)
#include "test_objectives.moc"
