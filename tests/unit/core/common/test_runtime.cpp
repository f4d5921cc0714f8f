#include <QtTest/QtTest>
#include <torch/torch.h>

#include "core/common/runtime.h"

class TestRuntime : public QObject {
    Q_OBJECT
private slots:
    void setsThreads() {
        QCOMPARE(kto::configure_torch_threads(2), 2);
        QCOMPARE(torch::get_num_threads(), 2);
        QVERIFY(QString::fromStdString(kto::torch_runtime_summary()).contains("libtorch"));
    }
};

QTEST_GUILESS_MAIN(TestRuntime)
#include "test_runtime.moc"
