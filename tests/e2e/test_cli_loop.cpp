// The whole loop through the command line, on the built-in demo model, with a scripted taste in
// place of a person: generate into a workspace -> taste-label -> export -> train (Diffusion-KTO) ->
// compare base vs the new checkpoint. Reports the taste's like-rate of base and tuned images over
// the same prompts and seeds. (Whether KTO raises it is measured with enough steps by
// tests/bench/bench_alignment; this test checks that every step works and hands the next one
// what it needs.)
#include <QProcess>
#include <QtTest/QtTest>

#include <nlohmann/json.hpp>

#include <csignal>
#include <filesystem>
#include <fstream>

#include <sys/types.h>

#include "core/common/image_decode.h"
#include "core/shapes/taste.h"
#include "core/train/demo_model.h"
#include "storage/dataset/csv.h"
#include "tests/support/test_paths.h"

namespace fs = std::filesystem;

namespace {

// Like-rate of `taste` over images given by path, with their prompts.
double like_rate(const kto::shapes::Taste& taste, const std::vector<std::pair<std::string, std::string>>& images) {
    int liked = 0;
    for (const auto& [path, prompt] : images) {
        const kto::RgbImage rgb = kto::read_image_rgb8(path);
        kto::shapes::Image img;
        img.width = rgb.width;
        img.height = rgb.height;
        img.rgb = rgb.pixels;
        liked += taste.likes(img, prompt) ? 1 : 0;
    }
    return images.empty() ? 0.0 : double(liked) / double(images.size());
}

}  // namespace

class TestCliLoop : public QObject {
    Q_OBJECT
    QTemporaryDir tmp_;
    QString dir(const char* name) const { return tmp_.path() + "/" + name; }

    // Runs the CLI; fails the test with its output when it does not exit 0.
    QString cli(const QStringList& args, int timeout_ms = 600000) {
        QProcess p;
        p.setProcessChannelMode(QProcess::MergedChannels);
        p.start(QString::fromStdString(kto::test::cli_path()), args);
        if (!p.waitForFinished(timeout_ms)) {
            p.kill();
            return "TIMEOUT " + args.join(' ');
        }
        const QString out = QString::fromUtf8(p.readAll());
        if (p.exitStatus() != QProcess::NormalExit || p.exitCode() != 0)
            return "FAILED (" + QString::number(p.exitCode()) + ") " + args.join(' ') + "\n" + out;
        return out;
    }

private slots:
    void initTestCase() {
        QVERIFY(tmp_.isValid());
        if (!fs::exists(kto::test::demo_model_dir() + "/model_index.json")) QSKIP("demo model not found");
        if (!fs::exists(kto::test::cli_path())) QSKIP("kto-studio-cli not built");
    }

    void generateLabelExportTrainCompare() {
        const QString model = QString::fromStdString(kto::test::demo_model_dir());
        const QString ws = dir("ws");
        const QStringList prompts = {"a red circle on a blue background", "a blue square on a white background",
                                     "a yellow star on a black background", "a green triangle on a white background"};
        // 1. Generate: 4 prompts x 4 images, recorded in the workspace with provenance.
        QStringList gen = {"generate", "--model", model, "--workspace", ws, "--batch", "4", "--steps", "10",
                           "--cfg", "5", "--seed", "11", "--out", dir("gen.png")};
        for (const auto& p : prompts) gen << "--prompt" << p;
        QString out = cli(gen);
        QVERIFY2(!out.startsWith("FAILED") && !out.startsWith("TIMEOUT"), qPrintable(out));
        out = cli({"stats", "--workspace", ws});
        QVERIFY2(out.contains("images     16"), qPrintable(out));

        // 2. Label every image with the scripted taste.
        out = cli({"taste-label", "--workspace", ws, "--taste", "likes-warm-colours"});
        QVERIFY2(out.contains("likes-warm-colours:"), qPrintable(out));
        out = cli({"stats", "--workspace", ws});
        QVERIFY2(out.contains("unlabeled  0"), qPrintable(out));

        // 3. Export as a Diffusion-KTO dataset folder.
        out = cli({"export", "--workspace", ws, "--to", dir("data")});
        QVERIFY2(!out.startsWith("FAILED"), qPrintable(out));
        QVERIFY(fs::exists(dir("data").toStdString() + "/train_processed_v3.csv"));

        // 4. Train a few KTO steps from the exported folder (one class only is allowed, in case the
        //    taste liked or disliked everything this seed drew).
        out = cli({"train", "--model", model, "--data", dir("data"), "--out", dir("run"), "--preset", "demo", "--steps",
                   "12", "--batch", "4", "--checkpoint-every", "12", "--allow-one-class", "--lr", "1e-4"});
        QVERIFY2(out.contains("trained 12 steps"), qPrintable(out));
        const fs::path unet = fs::path(dir("run").toStdString()) / "checkpoints" / "step-12" / "unet";
        QVERIFY2(fs::exists(unet / "config.json"), unet.string().c_str());

        // 5. Compare base vs tuned on the same prompts and seeds.
        {
            std::ofstream pf(dir("prompts.txt").toStdString());
            for (const auto& p : prompts) pf << p.toStdString() << "\n";
        }
        out = cli({"compare", "--model", model, "--unet", QString::fromStdString(unet.string()), "--prompts",
                   dir("prompts.txt"), "--seeds", "2", "--steps", "10", "--cfg", "5", "--out", dir("cmp")});
        QVERIFY2(!out.startsWith("FAILED"), qPrintable(out));
        std::ifstream jf(dir("cmp/compare.json").toStdString());
        const auto j = nlohmann::json::parse(jf);
        QCOMPARE(int(j.at("cells").size()), 8);
        QVERIFY(fs::exists(dir("cmp").toStdString() + "/" + j.value("grid", std::string("grid.png"))));
        std::vector<std::pair<std::string, std::string>> before, after;
        for (const auto& c : j.at("cells")) {
            const fs::path a = fs::path(dir("cmp").toStdString()) / c.at("a").get<std::string>();
            const fs::path b = fs::path(dir("cmp").toStdString()) / c.at("b").get<std::string>();
            QVERIFY2(fs::exists(a) && fs::exists(b), a.string().c_str());
            before.emplace_back(a.string(), c.at("prompt").get<std::string>());
            after.emplace_back(b.string(), c.at("prompt").get<std::string>());
        }
        const auto taste = kto::shapes::make_taste("likes-warm-colours");
        const double rb = like_rate(*taste, before), ra = like_rate(*taste, after);
        qInfo("like-rate (likes-warm-colours) over %zu prompt x seed cells: base %.1f%%, tuned %.1f%% (12 KTO steps)",
              before.size(), 100 * rb, 100 * ra);
        QVERIFY(rb >= 0 && rb <= 1 && ra >= 0 && ra <= 1);
        // The tuned side is a different model: at least one of its images differs from the base's.
        bool differs = false;
        for (size_t i = 0; i < before.size() && !differs; ++i)
            differs = kto::read_image_rgb8(before[i].first).pixels != kto::read_image_rgb8(after[i].first).pixels;
        QVERIFY2(differs, "the tuned side rendered exactly the base images");
    }

    // demo-eval --details: one CSV row per image with the prompt, each attribute's verdict and what
    // the scorer read; its colour column adds up to the printed share.
    void demoEvalWritesDetails() {
        const QString csv = dir("details.csv");
        const QString out = cli({"demo-eval", "--model", QString::fromStdString(kto::test::demo_model_dir()), "--prompts",
                                 "4", "--speed-runs", "0", "--threads", "1", "--details", csv});
        QVERIFY2(out.contains("details: " + csv), qPrintable(out));
        const QRegularExpressionMatch m = QRegularExpression("colour right +([0-9.]+)%").match(out);
        QVERIFY2(m.hasMatch(), qPrintable(out));
        kto::storage::CsvReader reader(csv.toStdString());
        std::vector<std::string> row;
        QVERIFY(reader.next(row));
        QCOMPARE(row, (std::vector<std::string>{"index", "seed", "prompt", "colour_right", "background_right",
                                                "class_right", "size_right", "position_right", "count_right",
                                                "scorer_read"}));
        int rows = 0, colour_rows = 0, colour_right = 0;
        while (reader.next(row)) {
            QCOMPARE(int(row.size()), 10);
            QCOMPARE(row[0], std::to_string(rows++));
            QVERIFY2(row[2].rfind("a", 0) == 0, row[2].c_str());      // a caption of the grammar
            QVERIFY2(row[9].find(" background") != std::string::npos, row[9].c_str());
            QVERIFY(row[4] == "0" || row[4] == "1");                   // every eval prompt names it
            if (!row[3].empty()) ++colour_rows, colour_right += row[3] == "1";
        }
        QCOMPARE(rows, 4);
        QVERIFY(colour_rows == 4);
        // Rows are whole prompts (both shapes right to count), so the printed per-shape share
        // can only be 100% when every row is right, and 0% when none is.
        const double printed = m.captured(1).toDouble();
        if (colour_right == 4) QCOMPARE(printed, 100.0);
        if (colour_right == 0) QCOMPARE(printed, 0.0);
    }

    // train-demo on Ctrl-C: writes a checkpoint, says how to continue and exits 130; the same command refuses
    // to start over it, and with --resume completes the folder (and removes the checkpoint).
    void trainDemoStopsOnCtrlCAndResumes() {
        const QString out = dir("demo");
        const QStringList args = {"train-demo", "--out", out, "--vae-steps", "60", "--vae-batch", "2",
                                  "--unet-steps", "2", "--unet-batch", "2", "--cache-images", "4", "--unet-rounds",
                                  "0", "--decoder-steps", "0", "--threads", "1", "--checkpoint-every", "20"};
        stopWithCtrlC(args);
        if (QTest::currentTestFailed()) return;

        QString again = cli(args);
        QVERIFY2(again.startsWith("FAILED (1)") && again.contains("add --resume"), qPrintable(again));
        QStringList resume = args;
        resume << "--resume";
        again = cli(resume);
        QVERIFY2(again.contains("resuming from vae step ") && again.contains("demo model written"), qPrintable(again));
        QVERIFY(fs::exists(out.toStdString() + "/model_index.json"));
        QVERIFY(!fs::exists(out.toStdString() + "/train-demo-checkpoint"));
    }

    // Since session 29 train-demo runs its text encoder + UNet steps as half-batches side by side where they
    // can run (2+ threads on the CPU) unless told not to; a resumed run keeps what it was started with.
    void trainDemoHalfBatchesByDefaultWhereTheyRun() {
        const QString out = dir("demo-halves");
        const QStringList args = {"train-demo", "--out", out, "--vae-steps", "60", "--vae-batch", "2",
                                  "--unet-steps", "2", "--unet-batch", "2", "--cache-images", "4", "--unet-rounds",
                                  "0", "--decoder-steps", "0", "--threads", "2", "--checkpoint-every", "20"};
        kto::DemoTrainOptions o;
        o.threads = 2;
        o.unet_batch = 2;
        const bool halves = kto::demo_unet_batch_halves_by_default(o);
        qInfo("half-batches can run here: %s", halves ? "yes" : "no (one core, or KTO_CPU_PAIRS=0)");
        stopWithCtrlC(args);
        if (QTest::currentTestFailed()) return;
        std::ifstream state(out.toStdString() + "/train-demo-checkpoint/state.json");
        const nlohmann::json recorded = nlohmann::json::parse(state).at("recipe").at("unet-batch-halves");
        QCOMPARE(recorded.get<bool>(), halves);

        QStringList resume = args;
        resume << "--resume";
        if (halves) {  // one thread cannot run them: refused, and the checkpoint stays
            QStringList one = resume;
            one[one.indexOf("--threads") + 1] = "1";
            const QString refused = cli(one);
            QVERIFY2(refused.startsWith("FAILED (1)") && refused.contains("--threads 2 or more"), qPrintable(refused));
            QVERIFY(fs::exists(out.toStdString() + "/train-demo-checkpoint/state.json"));
        }
        const QString done = cli(resume);
        QVERIFY2(done.contains("resuming from vae step ") && done.contains("demo model written"), qPrintable(done));
        QVERIFY(!fs::exists(out.toStdString() + "/train-demo-checkpoint"));

        const QString both = cli({"train-demo", "--out", dir("demo-both"), "--unet-batch-halves",
                                  "--no-unet-batch-halves"});
        QVERIFY2(both.startsWith("FAILED") && both.contains("excludes"), qPrintable(both));
        QVERIFY(!fs::exists(dir("demo-both").toStdString()));
    }

private:
    // Starts `args` (a train-demo with checkpoints), sends SIGINT after its first VAE progress line and
    // checks that it stopped as a Ctrl-C should: exit 130, a checkpoint, how to continue.
    void stopWithCtrlC(const QStringList& args) {
        const QString out = args[args.indexOf("--out") + 1];
        QProcess p;
        p.setProcessChannelMode(QProcess::MergedChannels);
        p.start(QString::fromStdString(kto::test::cli_path()), args);
        QVERIFY(p.waitForStarted());
        QString log;
        // The first progress line comes after the first VAE step; the 60 take seconds more.
        while (!log.contains("vae ") && p.state() == QProcess::Running) {
            p.waitForReadyRead(1000);
            log += QString::fromUtf8(p.readAll());
        }
        QVERIFY2(p.state() == QProcess::Running, qPrintable(log));
        QCOMPARE(::kill(pid_t(p.processId()), SIGINT), 0);
        QVERIFY(p.waitForFinished(120000));
        log += QString::fromUtf8(p.readAll());
        QCOMPARE(p.exitStatus(), QProcess::NormalExit);
        QVERIFY2(p.exitCode() == 130, qPrintable(log));
        QVERIFY2(log.contains("stopped at vae step ") && log.contains("--resume"), qPrintable(log));
        QVERIFY(fs::exists(out.toStdString() + "/train-demo-checkpoint/state.json"));
    }
};

QTEST_GUILESS_MAIN(TestCliLoop)
#include "test_cli_loop.moc"
