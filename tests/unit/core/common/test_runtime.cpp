#include <QtTest/QtTest>
#include <torch/torch.h>

#include <new>

#include "core/common/error.h"
#include "core/common/runtime.h"
#include "tests/support/error_check.h"

class TestRuntime : public QObject {
    Q_OBJECT
private slots:
    void setsThreads() {
        QCOMPARE(kto::configure_torch_threads(2), 2);
        QCOMPARE(torch::get_num_threads(), 2);
        QVERIFY(QString::fromStdString(kto::torch_runtime_summary()).contains("libtorch"));
    }

    // OpenBLAS runs kernels that fit the CPU: on a CPU with AVX2 never its SSE3 (Prescott) fallback,
    // which Debian 12's OpenBLAS picks on CPUs newer than itself; matrix products stay right.
    void openblasRunsKernelsThatFitTheCpu() {
        kto::configure_torch_threads(2);
        const QString note = QString::fromStdString(kto::openblas_kernels());
        if (note.isEmpty()) QSKIP("libtorch does not use OpenBLAS here");
        QVERIFY(QString::fromStdString(kto::torch_runtime_summary()).contains(note));
        const QString current = note.section(' ', 1, 1);
#if defined(__x86_64__)
        if (__builtin_cpu_supports("avx2") && !qEnvironmentVariableIsSet("OPENBLAS_CORETYPE"))
            QVERIFY2(current.compare("Prescott", Qt::CaseInsensitive) != 0, qPrintable(note));
#endif
        torch::manual_seed(1);
        const auto a = torch::randn({300, 200}), b = torch::randn({200, 100});
        const auto want = torch::mm(a.to(torch::kDouble), b.to(torch::kDouble));
        const double err = (torch::mm(a, b).to(torch::kDouble) - want).abs().max().item<double>();
        QVERIFY2(err < 1e-3, qPrintable(QString("sgemm error %1 with %2").arg(err).arg(note)));
    }

    // Two pieces of work side by side, each on its share of the threads; the caller's count comes back;
    // the worker runs without gradients; an exception from either side reaches the caller, and the
    // runner works again after one.
    void cpuPairRunner() {
        kto::configure_torch_threads(3);
        if (!kto::CpuPairRunner::available()) QSKIP("no OpenMP runtime to split the threads with");
        kto::CpuPairRunner pairs;
        int worker_threads = 0, caller_threads = 0;
        bool worker_grad = true;
        torch::Tensor a, b;
        for (int round = 0; round < 3; ++round) {
            pairs.run(
                [&] {
                    worker_threads = torch::get_num_threads();
                    worker_grad = torch::GradMode::is_enabled();
                    a = torch::mm(torch::ones({64, 64}), torch::ones({64, 64}));
                },
                [&] {
                    caller_threads = torch::get_num_threads();
                    b = torch::mm(torch::ones({64, 64}), torch::full({64, 64}, 2.0));
                });
            QCOMPARE(worker_threads, 1);
            QCOMPARE(caller_threads, 2);
            QVERIFY(!worker_grad);
            QCOMPARE(a.sum().item<double>(), 64.0 * 64 * 64);
            QCOMPARE(b.sum().item<double>(), 2.0 * 64 * 64 * 64);
        }
        QCOMPARE(torch::get_num_threads(), 3);
        kto::test::expect_error([&] { pairs.run([] { throw kto::Error("worker broke"); }, [] {}); }, "worker broke");
        kto::test::expect_error([&] { pairs.run([] {}, [] { throw kto::Error("caller broke"); }); }, "caller broke");
        QCOMPARE(torch::get_num_threads(), 3);
        int ran = 0;
        pairs.run([&] { ++ran; }, [&] { ++ran; });
        QCOMPARE(ran, 2);
        kto::configure_torch_threads(1);
        QVERIFY(!kto::CpuPairRunner::available());
        kto::test::expect_error([] { kto::CpuPairRunner again; }, "needs 2 or more threads");
        kto::configure_torch_threads(2);
    }

    // The bf16 summation probe: where the CPU has bf16 matrix units, oneDNN runs the products and sums
    // in fp32; where the probe says bf16 sums, a plain bf16 product of 4096 terms is visibly off and
    // the runtime summary says so (the default dtype there is fp32, never bf16).
    void bf16SummationProbe() {
        const bool fp32_sums = kto::cpu_bf16_matmul_sums_in_fp32();
        if (kto::cpu_has_bf16_matrix_units()) QVERIFY(fp32_sums);
        torch::manual_seed(3);
        const auto a = torch::randn({16, 4096}), b = torch::randn({4096, 16});
        const auto want = torch::mm(a.to(torch::kBFloat16).to(torch::kFloat), b.to(torch::kBFloat16).to(torch::kFloat));
        const double rel = ((torch::mm(a.to(torch::kBFloat16), b.to(torch::kBFloat16)).to(torch::kFloat) - want).norm() /
                            want.norm()).item<double>();
        QVERIFY2(fp32_sums ? rel < 0.01 : rel > 0.02, qPrintable(QString("relative error %1").arg(rel)));
        QCOMPARE(QString::fromStdString(kto::torch_runtime_summary()).contains("bf16 products sum in bf16"), !fp32_sums);
    }

    // The CPU's default dtype: bf16 only where the CPU has bf16 matrix units, KTO_CPU_DTYPE overrides,
    // a wrong value names the variable; CUDA is always fp16.
    void defaultDtypes() {
        qunsetenv("KTO_CPU_DTYPE");
        QCOMPARE(kto::default_cpu_dtype(),
                 kto::cpu_has_bf16_matrix_units() ? c10::ScalarType::BFloat16 : c10::ScalarType::Float);
        QCOMPARE(kto::default_inference_dtype(true), c10::ScalarType::Half);
        qputenv("KTO_CPU_DTYPE", "fp32");
        QCOMPARE(kto::default_cpu_dtype(), c10::ScalarType::Float);
        QCOMPARE(kto::default_inference_dtype(false), c10::ScalarType::Float);
        qputenv("KTO_CPU_DTYPE", "bf16");
        QCOMPARE(kto::default_inference_dtype(false), c10::ScalarType::BFloat16);
        QCOMPARE(kto::default_inference_dtype(true), c10::ScalarType::Half);
        qputenv("KTO_CPU_DTYPE", "fp8");
        kto::test::expect_error([] { kto::default_cpu_dtype(); }, "KTO_CPU_DTYPE=fp8: expected fp32 or bf16");
        // The app's Settings choice wins over the variable; "auto" hands back to it.
        qputenv("KTO_CPU_DTYPE", "bf16");
        kto::set_cpu_dtype_choice("fp32");
        QCOMPARE(kto::default_cpu_dtype(), c10::ScalarType::Float);
        kto::set_cpu_dtype_choice("auto");
        QCOMPARE(kto::default_cpu_dtype(), c10::ScalarType::BFloat16);
        kto::test::expect_error([] { kto::set_cpu_dtype_choice("fp64"); }, "expected auto, fp32 or bf16");
        qunsetenv("KTO_CPU_DTYPE");
    }

    // What counts as running out of memory: std::bad_alloc, a failed libtorch allocation of an
    // absurd size (CPU allocator), never an ordinary error.
    void recognisesAllocationFailures() {
        QVERIFY(kto::is_out_of_memory(std::bad_alloc()));
        QVERIFY(!kto::is_out_of_memory(kto::Error("vae/config.json: missing 'latent_channels'")));
        QVERIFY(!kto::is_out_of_memory(std::runtime_error("disk full")));
        bool caught = false;
        try {
            // 2^60 floats: refused by the allocator at once, nothing is touched.
            auto t = torch::empty({int64_t(1) << 60}, torch::kFloat32);
            QFAIL("the absurd allocation succeeded");
        } catch (const std::exception& e) {
            caught = true;
            QVERIFY2(kto::is_out_of_memory(e), kto::short_error_message(e).c_str());
            const std::string m = kto::short_error_message(e);
            QVERIFY2(m.find('\n') == std::string::npos, m.c_str());  // one line, no backtrace
        }
        QVERIFY(caught);
        try {
            torch::zeros({2}).view({3});
            QFAIL("expected a shape error");
        } catch (const std::exception& e) {
            QVERIFY(!kto::is_out_of_memory(e));
        }
    }

    // KTO_FAULT_OOM=<site>[:n] fails the n-th pass through that site, once.
    void faultPointsFireOnceAtTheNthPass() {
        qputenv("KTO_FAULT_OOM", "train-step:2");
        kto::reset_fault_points();
        kto::fault_point("generate-step");  // another site: never
        kto::fault_point("train-step");     // pass 1
        QVERIFY_EXCEPTION_THROWN(kto::fault_point("train-step"), std::bad_alloc);  // pass 2
        kto::fault_point("train-step");     // pass 3: once only
        qunsetenv("KTO_FAULT_OOM");
        kto::reset_fault_points();
        kto::fault_point("train-step");     // unset: never
        QCOMPARE(kto::peak_device_memory() >= -1, true);
    }
};

QTEST_GUILESS_MAIN(TestRuntime)
#include "test_runtime.moc"
