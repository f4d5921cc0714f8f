#include <QtTest/QtTest>
#include <torch/torch.h>

#include <new>

#include "core/common/error.h"
#include "core/common/runtime.h"

class TestRuntime : public QObject {
    Q_OBJECT
private slots:
    void setsThreads() {
        QCOMPARE(kto::configure_torch_threads(2), 2);
        QCOMPARE(torch::get_num_threads(), 2);
        QVERIFY(QString::fromStdString(kto::torch_runtime_summary()).contains("libtorch"));
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
