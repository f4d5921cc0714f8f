// `kto-studio-cli compare` on the demo model against a perturbed copy of its UNet, run as a user
// would: grid.png and compare.json (prompt, seed, both sides' image files), the cache making a
// second run render nothing, and a clear message for each bad input.
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QTemporaryDir>
#include <QtTest/QtTest>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "core/common/image_decode.h"
#include "core/compare/comparison.h"
#include "core/io/model_folder.h"
#include "tests/support/test_paths.h"

namespace fs = std::filesystem;

namespace {

struct Run {
    int code = -1;
    QString out;
    QString err;
};

Run cli(const QStringList& args) {
    QProcess p;
    auto env = QProcessEnvironment::systemEnvironment();
    env.insert("KTO_DEMO_MODEL", QString::fromStdString(kto::test::demo_model_dir()));
    p.setProcessEnvironment(env);
    p.start(QString::fromStdString(kto::test::cli_path()), args);
    Run r;
    if (!p.waitForFinished(300000)) {
        r.err = "did not finish: " + p.errorString();
        return r;
    }
    r.code = p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1;
    r.out = QString::fromUtf8(p.readAllStandardOutput());
    r.err = QString::fromUtf8(p.readAllStandardError());
    return r;
}

void write_text(const fs::path& p, const std::string& text) {
    std::ofstream out(p, std::ios::binary);
    out << text;
}

std::string read_bytes(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

class TestCliCompare : public QObject {
    Q_OBJECT
    QTemporaryDir tmp_;
    QString demo_, tuned_, prompts_;

    QString path(const QString& name) const { return tmp_.path() + "/" + name; }

private slots:
    void initTestCase() {
        if (!fs::exists(kto::test::cli_path()))
            QFAIL(qPrintable("kto-studio-cli is not built (" + QString::fromStdString(kto::test::cli_path()) + ")"));
        demo_ = QString::fromStdString(kto::test::demo_model_dir());
        tuned_ = path("run/step-3/unet");
        auto unet = kto::load_unet(kto::component_dir(demo_.toStdString(), "unet"));
        {
            torch::NoGradGuard no_grad;
            auto gen = at::detail::createCPUGenerator(99);
            for (auto& p : unet->parameters()) p.add_(torch::randn(p.sizes(), gen) * 0.5 * (p.abs().mean() + 1e-3));
        }
        kto::save_unet(unet, unet->config().raw, tuned_.toStdString());
        prompts_ = path("prompts.txt");
        write_text(prompts_.toStdString(), "# two probes\na large red circle on a blue background\n\na small white star on a black background\n");
    }

    void rendersGridAndJsonThenUsesTheCache() {
        const QString out = path("out");
        // No --model: the built-in demo model.
        const Run r = cli({"compare", "--unet", tuned_, "--prompts", prompts_, "--seeds", "2", "--steps", "2",
                           "--out", out});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        QVERIFY2(r.err.contains("8 image(s) rendered, 0 from the cache"), qPrintable(r.err));
        QVERIFY(r.out.contains("grid.png") && r.out.contains("compare.json"));

        QFile f(out + "/compare.json");
        QVERIFY(f.open(QIODevice::ReadOnly));
        const QJsonObject j = QJsonDocument::fromJson(f.readAll()).object();
        const QJsonArray cells = j["cells"].toArray();
        QCOMPARE(cells.size(), 4);
        QCOMPARE(cells[0].toObject()["prompt"].toString(), QString("a large red circle on a blue background"));
        QCOMPARE(cells[0].toObject()["seed"].toInt(), 0);
        QCOMPARE(cells[1].toObject()["seed"].toInt(), 1);
        QCOMPARE(cells[3].toObject()["prompt"].toString(), QString("a small white star on a black background"));
        for (const auto& v : cells) {
            const QJsonObject c = v.toObject();
            const fs::path a = (out + "/" + c["a"].toString()).toStdString();
            const fs::path b = (out + "/" + c["b"].toString()).toStdString();
            QVERIFY2(fs::is_regular_file(a) && fs::is_regular_file(b), a.c_str());
            QVERIFY(read_bytes(a) != read_bytes(b));  // base and tuned differ for the same seed
        }
        QCOMPARE(j["b"].toObject()["unet"].toString(), QFileInfo(tuned_).absoluteFilePath());
        QCOMPARE(j["settings"].toObject()["steps"].toInt(), 2);
        const int w = j["settings"].toObject()["width"].toInt(), h = j["settings"].toObject()["height"].toInt();
        const kto::RgbImage grid = kto::read_image_rgb8((out + "/grid.png").toStdString());
        QCOMPARE(grid.width, 2 * w + 3 * 4);
        QCOMPARE(grid.height, 4 * (h + 4) + 4);

        // Again, explicitly naming the model: everything comes from the cache.
        const Run again = cli({"compare", "--model", demo_, "--unet", tuned_, "--prompts", prompts_, "--seeds", "2",
                               "--steps", "2", "--out", out});
        QVERIFY2(again.code == 0, qPrintable(again.err));
        QVERIFY2(again.err.contains("0 image(s) rendered, 8 from the cache"), qPrintable(again.err));
    }

    void explicitSeedList() {
        const QString out = path("out-list");
        const Run r = cli({"compare", "--unet", tuned_, "--prompts", prompts_, "--seeds", "7,42", "--steps", "1",
                           "--out", out});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        QFile f(out + "/compare.json");
        QVERIFY(f.open(QIODevice::ReadOnly));
        const QJsonArray cells = QJsonDocument::fromJson(f.readAll()).object()["cells"].toArray();
        QCOMPARE(cells.size(), 4);
        QCOMPARE(cells[1].toObject()["seed"].toInt(), 42);
    }

    void badInputIsReported_data() {
        QTest::addColumn<QStringList>("args");
        QTest::addColumn<QString>("message");
        const QString out = path("bad-out");
        const QString empty = path("empty.txt");
        write_text(empty.toStdString(), "\n# nothing\n   \n");
        QTest::newRow("missing prompts file")
            << QStringList{"compare", "--unet", tuned_, "--prompts", path("nope.txt"), "--seeds", "1", "--out", out}
            << "prompts file not found";
        QTest::newRow("empty prompts file")
            << QStringList{"compare", "--unet", tuned_, "--prompts", empty, "--seeds", "1", "--out", out}
            << "no prompts";
        QTest::newRow("seeds not a number")
            << QStringList{"compare", "--unet", tuned_, "--prompts", prompts_, "--seeds", "many", "--out", out}
            << "--seeds";
        QTest::newRow("zero seeds")
            << QStringList{"compare", "--unet", tuned_, "--prompts", prompts_, "--seeds", "0", "--out", out}
            << "at least one seed";
        QTest::newRow("negative seed")
            << QStringList{"compare", "--unet", tuned_, "--prompts", prompts_, "--seeds", "-3", "--out", out}
            << "--seeds";
        QTest::newRow("nothing to compare")
            << QStringList{"compare", "--prompts", prompts_, "--seeds", "1", "--out", out} << "nothing to compare";
        QTest::newRow("unet and lora")
            << QStringList{"compare", "--unet", tuned_, "--lora", path("x.safetensors"), "--prompts", prompts_,
                           "--seeds", "1", "--out", out}
            << "--lora";
        QTest::newRow("missing unet")
            << QStringList{"compare", "--unet", path("no-unet"), "--prompts", prompts_, "--seeds", "1", "--out", out}
            << "no such UNet folder";
        QTest::newRow("bad size")
            << QStringList{"compare", "--unet", tuned_, "--prompts", prompts_, "--seeds", "1", "--size", "big",
                           "--out", out}
            << "--size";
    }

    void badInputIsReported() {
        QFETCH(QStringList, args);
        QFETCH(QString, message);
        const Run r = cli(args);
        QVERIFY2(r.code != 0, qPrintable(r.out));
        QVERIFY2(r.err.contains(message), qPrintable(r.err));
        QVERIFY(!QFileInfo::exists(path("bad-out/compare.json")));
    }
};

QTEST_GUILESS_MAIN(TestCliCompare)
#include "test_cli_compare.moc"
