#include <QtTest/QtTest>
#include <torch/torch.h>
#include <torch/version.h>

#include <functional>
#include <vector>

#include "core/common/batched_matmul.h"
#include "core/common/runtime.h"

namespace {

// Values and both gradients of kto::batched_matmul against torch::matmul(a, b) * alpha computed in
// double, for operands `make` builds from random leaf tensors (and may transpose, slice or expand):
// the gradients are compared on the leaves.
using Make = std::function<std::pair<torch::Tensor, torch::Tensor>(const std::function<torch::Tensor(torch::IntArrayRef)>&)>;

void check_against_matmul(const Make& make, double alpha, const char* what) {
    std::vector<torch::Tensor> leaves;
    auto leaf = [&](torch::IntArrayRef shape) {
        leaves.push_back(torch::randn(shape).requires_grad_(true));
        return leaves.back();
    };
    torch::manual_seed(11);
    auto [a, b] = make(leaf);
    const auto out = kto::batched_matmul(a, b, alpha);
    const auto g = torch::randn(out.sizes());
    out.backward(g);
    std::vector<torch::Tensor> got;
    for (const auto& l : leaves) got.push_back(l.grad().clone());

    leaves.clear();
    torch::manual_seed(11);
    auto [ra, rb] = make(leaf);
    const auto ref = torch::matmul(ra.to(torch::kFloat64), rb.to(torch::kFloat64)) * alpha;
    ref.backward(g.to(torch::kFloat64));

    QCOMPARE(out.sizes().vec(), ref.sizes().vec());
    QCOMPARE(out.scalar_type(), torch::kFloat32);
    const double scale = ref.abs().max().item<double>() + 1e-12;
    QVERIFY2((out.to(torch::kFloat64) - ref.detach()).abs().max().item<double>() / scale < 1e-5, what);
    QCOMPARE(got.size(), leaves.size());
    for (size_t i = 0; i < got.size(); ++i) {
        const auto want = leaves[i].grad().to(torch::kFloat64);
        const double s = want.abs().max().item<double>() + 1e-12;
        QVERIFY2((got[i].to(torch::kFloat64) - want).abs().max().item<double>() / s < 1e-5, what);
    }
}

}  // namespace

class TestBatchedMatmul : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        kto::configure_torch_threads(2);
        torch::manual_seed(3);
#if TORCH_VERSION_MAJOR < 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR < 1)
        // libtorch 1.13 loads a BLAS with the standard sgemm_ entry point (Debian: OpenBLAS).
        if (!qEnvironmentVariableIsSet("KTO_CPU_BMM")) QVERIFY(kto::cpu_batched_matmul_available());
#endif
    }

    // Attention's shapes and layouts: the scores (q against a transposed k), the output (probs against
    // v), 4-D views with heads as a strided middle dimension, the backward's transposed operands.
    void matchesMatmulOnEveryLayout() {
        check_against_matmul([](const auto& leaf) { return std::pair{leaf({12, 9, 5}), leaf({12, 5, 7})}; }, 1.0,
                             "plain 3-D");
        check_against_matmul([](const auto& leaf) { return std::pair{leaf({12, 9, 5}), leaf({12, 7, 5}).transpose(1, 2)}; },
                             0.25, "b transposed, alpha");
        check_against_matmul([](const auto& leaf) { return std::pair{leaf({12, 5, 9}).transpose(1, 2), leaf({12, 5, 7})}; },
                             1.0, "a transposed");
        check_against_matmul(
            [](const auto& leaf) {
                // [b, n, heads * d] viewed as [b, heads, n, d]: each matrix row-major with a leading
                // dimension of heads * d, the heads a strided leading dimension.
                auto q = leaf({3, 10, 4 * 6}).view({3, 10, 4, 6}).transpose(1, 2);
                auto k = leaf({3, 11, 4 * 6}).view({3, 11, 4, 6}).transpose(1, 2);
                return std::pair{q, k.transpose(-1, -2)};
            },
            1.0 / std::sqrt(6.0), "4-D head views");
        check_against_matmul(
            [](const auto& leaf) {
                auto full = leaf({6, 9, 16});
                return std::pair{full.slice(2, 3, 8), leaf({6, 5, 4})};  // a row stride past its width
            },
            1.0, "a sliced");
        check_against_matmul(
            [](const auto& leaf) { return std::pair{leaf({1, 5, 3}).expand({7, 5, 3}), leaf({7, 3, 2})}; }, 1.0,
            "a expanded over the batch");
        check_against_matmul(
            [](const auto& leaf) {
                // Neither row- nor column-major per matrix: copied first.
                auto a = leaf({4, 6, 10}).slice(1, 0, 6, 2).slice(2, 0, 10, 2);
                return std::pair{a, leaf({4, 5, 3})};
            },
            1.0, "strided both ways");
        check_against_matmul([](const auto& leaf) { return std::pair{leaf({8, 1, 5}), leaf({8, 5, 1})}; }, 2.0,
                             "vectors");
        check_against_matmul([](const auto& leaf) { return std::pair{leaf({5, 3, 70, 33}), leaf({5, 3, 33, 77})}; }, 1.0,
                             "many larger matrices");
        check_against_matmul([](const auto& leaf) { return std::pair{leaf({2, 300, 64}), leaf({2, 64, 300})}; }, 0.125,
                             "two large matrices (BLAS threads)");
    }

    // What it does not take goes to torch::matmul: other dtypes, 2-D, and empty operands.
    void fallsBackWhereItDoesNotApply() {
        auto a = torch::randn({4, 3, 5}, torch::kFloat64), b = torch::randn({4, 5, 2}, torch::kFloat64);
        QVERIFY(torch::allclose(kto::batched_matmul(a, b, 0.5), torch::matmul(a, b) * 0.5));
        auto a2 = torch::randn({3, 5}), b2 = torch::randn({5, 2});
        QVERIFY(torch::allclose(kto::batched_matmul(a2, b2), torch::matmul(a2, b2)));
        auto e = kto::batched_matmul(torch::randn({4, 3, 0}), torch::randn({4, 0, 2}));
        QCOMPARE(e.sizes().vec(), (std::vector<int64_t>{4, 3, 2}));
        QCOMPARE(e.abs().sum().item<float>(), 0.0f);
        auto bf = kto::batched_matmul(torch::randn({4, 3, 5}).to(torch::kBFloat16), torch::randn({4, 5, 2}).to(torch::kBFloat16));
        QCOMPARE(bf.scalar_type(), torch::kBFloat16);
    }

    // The same inputs give the same bits whatever the thread count (each matrix is one BLAS call).
    void deterministicOverThreadCounts() {
        auto a = torch::randn({64, 16, 24}), b = torch::randn({64, 24, 77});
        kto::configure_torch_threads(1);
        const auto one = kto::batched_matmul(a, b, 0.3);
        kto::configure_torch_threads(2);
        const auto two = kto::batched_matmul(a, b, 0.3);
        QVERIFY(torch::equal(one, two));
    }
};

QTEST_GUILESS_MAIN(TestBatchedMatmul)
#include "test_batched_matmul.moc"
