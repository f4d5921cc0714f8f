// ModelCatalog under QAbstractItemModelTester: demo model, user folders, checkpoints under runs/.
#include <QAbstractItemModelTester>
#include <QDir>
#include <QFile>
#include <QTemporaryDir>
#include <QtTest>

#include "ui/generate/model_catalog.h"

using namespace kto::ui;

namespace {
void touch(const QString& path, const QByteArray& text = "{}") {
    QDir().mkpath(QFileInfo(path).path());
    QFile f(path);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write(text);
}
}  // namespace

class TestModelCatalog : public QObject {
    Q_OBJECT
private slots:
    void findsModelsAndCheckpoints() {
        QTemporaryDir tmp;
        const QString demo = tmp.filePath("kto-demo"), mine = tmp.filePath("my-model"), runs = tmp.filePath("ws/runs");
        touch(demo + "/model_index.json");
        touch(mine + "/model_index.json");
        touch(tmp.filePath("not-a-model/readme.txt"));
        touch(runs + "/1/checkpoints/step-100/model_index.json");            // a full checkpoint
        touch(runs + "/2/checkpoints/step-50/unet/config.json");             // UNet only, base named
        QFile base(runs + "/2/base_model.txt");
        QVERIFY(base.open(QIODevice::WriteOnly));
        base.write(demo.toUtf8());
        base.close();
        touch(runs + "/3/checkpoints/step-10/unet/config.json");             // UNet only, base unknown
        touch(runs + "/4/checkpoints/step-20/pytorch_lora_weights.safetensors");  // LoRA, base in config.json
        touch(runs + "/4/config.json", "{\"model\": \"" + demo.toUtf8() + "\"}");

        ModelCatalog catalog;
        QAbstractItemModelTester tester(&catalog, QAbstractItemModelTester::FailureReportingMode::QtTest);
        catalog.rescan(demo, {mine, tmp.filePath("not-a-model"), demo, tmp.filePath("gone")}, runs);
        QCOMPARE(catalog.rowCount(), 5);
        QCOMPARE(catalog.entry(0)->kind, ModelEntry::Kind::Demo);
        QCOMPARE(catalog.entry(0)->name, QString("kto-demo"));
        QVERIFY(catalog.index(0).data().toString().contains("demo"));
        QCOMPARE(catalog.entry(1)->path, QDir(mine).absolutePath());
        QCOMPARE(catalog.entry(2)->kind, ModelEntry::Kind::Checkpoint);
        QCOMPARE(catalog.entry(2)->name, QString("1/checkpoints/step-100"));
        QCOMPARE(catalog.entry(3)->path, demo);
        QCOMPARE(catalog.entry(3)->unet_path, runs + "/2/checkpoints/step-50/unet");
        QCOMPARE(catalog.rowOfPath(demo, runs + "/2/checkpoints/step-50/unet"), 3);
        QVERIFY(!isLoraFile(catalog.entry(3)->unet_path));
        QCOMPARE(catalog.entry(4)->name, QString("4/checkpoints/step-20 (LoRA)"));
        QCOMPARE(catalog.entry(4)->path, demo);
        QCOMPARE(catalog.entry(4)->unet_path, runs + "/4/checkpoints/step-20/pytorch_lora_weights.safetensors");
        QVERIFY(isLoraFile(catalog.entry(4)->unet_path));
        QCOMPARE(catalog.rowOfName("my-model"), 1);
        QCOMPARE(catalog.rowOfName("nope"), -1);

        catalog.rescan({}, {}, {});
        QCOMPARE(catalog.rowCount(), 0);
    }
};

QTEST_MAIN(TestModelCatalog)
#include "test_model_catalog.moc"
