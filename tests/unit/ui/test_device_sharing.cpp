// Sharing the GPU between the app's workers: while a training run holds CUDA, generation and
// comparisons asked for CUDA run on the CPU (and say so); CPU requests and a free GPU are untouched.
#include <QtTest>

#include "ui/workers/generation_worker.h"

using namespace kto::ui;

class TestDeviceSharing : public QObject {
    Q_OBJECT
private slots:
    void inferenceYieldsTheGpuToTraining() {
        setTrainingHoldsGpu(false);
        QString note;
        QCOMPARE(deviceForInference("cuda", &note), QString("cuda"));
        QVERIFY(note.isEmpty());
        QCOMPARE(deviceForInference("cpu", &note), QString("cpu"));

        setTrainingHoldsGpu(true);
        QVERIFY(trainingHoldsGpu());
        QCOMPARE(deviceForInference("cuda", &note), QString("cpu"));
        QVERIFY2(note.contains("training run is using the GPU"), qPrintable(note));
        note.clear();
        QCOMPARE(deviceForInference("cpu", &note), QString("cpu"));
        QVERIFY(note.isEmpty());
        QCOMPARE(deviceForInference("cuda", nullptr), QString("cpu"));

        setTrainingHoldsGpu(false);
        QCOMPARE(deviceForInference("cuda", &note), QString("cuda"));
    }
};

QTEST_GUILESS_MAIN(TestDeviceSharing)
#include "test_device_sharing.moc"
