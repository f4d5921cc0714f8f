#pragma once
// Tolerance-aware tensor comparison for parity tests: checks shape, NaN/Inf, and max abs error,
// and prints the max error so every parity test reports it.
#include <torch/torch.h>

#include <QtTest/QtTest>
#include <cstdio>
#include <string>

namespace kto::test {

struct TensorDiff {
    bool ok = false;
    double max_abs = 0.0;
    std::string message;
};

inline TensorDiff diff_tensors(const torch::Tensor& actual, const torch::Tensor& expected,
                               double atol) {
    TensorDiff d;
    if (actual.sizes() != expected.sizes()) {
        std::ostringstream os;
        os << "shape mismatch: got " << actual.sizes() << ", expected " << expected.sizes();
        d.message = os.str();
        return d;
    }
    auto a = actual.detach().to(torch::kCPU, torch::kDouble);
    auto e = expected.detach().to(torch::kCPU, torch::kDouble);
    if (!torch::isfinite(a).all().item<bool>()) {
        d.message = "result holds NaN or Inf";
        return d;
    }
    d.max_abs = a.numel() ? (a - e).abs().max().item<double>() : 0.0;
    d.ok = d.max_abs <= atol;
    std::ostringstream os;
    os << "max abs error " << d.max_abs << " (tolerance " << atol << ")";
    d.message = os.str();
    return d;
}

}  // namespace kto::test

// Compares and reports: "PARITY <what>: max abs error ...".
#define KTO_COMPARE_TENSORS(actual, expected, atol, what)                                    \
    do {                                                                                     \
        auto kto_diff_ = ::kto::test::diff_tensors((actual), (expected), (atol));            \
        std::printf("PARITY %-48s %s\n", std::string(what).c_str(), kto_diff_.message.c_str()); \
        QVERIFY2(kto_diff_.ok, (std::string(what) + ": " + kto_diff_.message).c_str());       \
    } while (0)
