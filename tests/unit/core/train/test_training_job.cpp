// The whole job on the tiny-sd reference model and a small dataset folder: run folder layout
// (config, metrics, previews, checkpoints kept K), latent-cache reuse by a second run, resume after
// an interruption, cancel from a callback, and clear errors for bad data.
#include <QtTest/QtTest>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "core/common/error.h"
#include "core/common/runtime.h"
#include "core/io/safetensors.h"
#include "core/train/trainer.h"
#include "tests/support/test_paths.h"
#include "tests/support/training_fixtures.h"

namespace fs = std::filesystem;

namespace {

using kto::test::count_lines;
using kto::test::make_tiny_dataset;
using kto::test::tiny_train_request;

}  // namespace

class TestTrainingJob : public QObject {
    Q_OBJECT

private slots:
    void runFolderCacheReuseAndResume() {
        QTemporaryDir tmp;
        const fs::path root(tmp.path().toStdString());
        make_tiny_dataset(root / "data");

        auto req = tiny_train_request(root, "a", 3);
        req.options.preview_every = 2;
        req.options.probe_prompts = {"a photograph of an astronaut riding a horse"};
        req.options.probe_seeds = {7};
        req.options.preview_steps = 2;
        std::vector<int64_t> preview_steps;
        int step_calls = 0;
        kto::TrainCallbacks cb;
        cb.on_step = [&](const kto::StepMetrics& m) {
            ++step_calls;
            QVERIFY(std::isfinite(m.loss) && m.samples_per_second > 0);
        };
        cb.on_preview = [&](int64_t step, const std::vector<kto::PreviewImage>& imgs) {
            preview_steps.push_back(step);
            QCOMPARE(imgs.size(), size_t(1));
            QVERIFY(fs::exists(imgs[0].path));
            QCOMPARE(imgs[0].image.size(2), int64_t(3));
        };
        kto::TrainingJob job(req, cb);
        const auto r1 = job.run();
        QCOMPARE(r1.steps_done, int64_t(3));
        QCOMPARE(step_calls, 3);
        QCOMPARE(preview_steps, (std::vector<int64_t>{0, 2}));
        QCOMPARE(r1.cache.image_misses, int64_t(6));
        const fs::path run(req.out_dir);
        QVERIFY(fs::exists(run / "config.json"));
        QCOMPARE(count_lines(run / "metrics.jsonl"), 3);
        QVERIFY(fs::exists(run / "previews" / "step-2" / "p0-s7.png"));
        // keep_last 2: step-1 pruned; unet/ in diffusers layout.
        QVERIFY(!fs::exists(run / "checkpoints" / "step-1"));
        QVERIFY(fs::exists(run / "checkpoints" / "step-2" / "unet" / "diffusion_pytorch_model.safetensors"));
        QVERIFY(fs::exists(run / "checkpoints" / "step-3" / "unet" / "config.json"));
        QCOMPARE(r1.final_checkpoint, (run / "checkpoints" / "step-3").string());

        // Second run over the same data: no VAE or text-encoder work at all. LoRA this time.
        auto req2 = tiny_train_request(root, "b", 2);
        req2.options.lora.enabled = true;
        kto::TrainingJob job2(req2);
        const auto r2 = job2.run();
        QCOMPARE(r2.cache.image_misses, int64_t(0));
        QCOMPARE(r2.cache.text_misses, int64_t(0));
        QCOMPARE(r2.cache.image_hits, int64_t(6));
        QVERIFY(fs::exists(fs::path(req2.out_dir) / "checkpoints" / "step-2" / "pytorch_lora_weights.safetensors"));

        // Resume: run a to 5 steps from its last checkpoint; a fresh run of 5 steps gives the same weights.
        auto req3 = tiny_train_request(root, "a", 5);
        req3.resume = true;
        const auto r3 = kto::TrainingJob(req3).run();
        QCOMPARE(r3.steps_done, int64_t(5));
        QCOMPARE(count_lines(run / "metrics.jsonl"), 5);
        const auto straight = kto::TrainingJob(tiny_train_request(root, "c", 5)).run();
        const auto wa = kto::load_safetensors(r3.final_checkpoint + "/unet/diffusion_pytorch_model.safetensors");
        const auto wc = kto::load_safetensors(straight.final_checkpoint + "/unet/diffusion_pytorch_model.safetensors");
        QCOMPARE(wa.size(), wc.size());
        for (const auto& [k, v] : wa) QVERIFY2(torch::equal(v, wc.at(k)), k.c_str());

        // A finished run is not silently overwritten.
        QVERIFY_EXCEPTION_THROWN(kto::TrainingJob(tiny_train_request(root, "a", 5)).run(), kto::Error);
    }

    void cancelAndPauseFromAnotherThread() {
        QTemporaryDir tmp;
        const fs::path root(tmp.path().toStdString());
        make_tiny_dataset(root / "data");
        auto req = tiny_train_request(root, "x", 50);
        kto::TrainingJob* self = nullptr;
        std::atomic<int64_t> last{0};
        kto::TrainCallbacks cb;
        cb.on_step = [&](const kto::StepMetrics& m) {
            last = m.step;
            if (m.step == 2) self->cancel();
        };
        kto::TrainingJob job(req, cb);
        self = &job;
        job.start();
        const auto r = job.wait();
        QVERIFY(r.cancelled);
        QCOMPARE(r.steps_done, int64_t(2));
        QCOMPARE(job.state(), kto::TrainingJob::State::cancelled);

        // Pause holds the job between steps; resume continues.
        auto req2 = tiny_train_request(root, "y", 4);
        std::atomic<bool> paused_seen{false};
        kto::TrainingJob* j2 = nullptr;
        kto::TrainCallbacks cb2;
        cb2.on_step = [&](const kto::StepMetrics& m) {
            if (m.step == 1) j2->pause();
        };
        kto::TrainingJob job2(req2, cb2);
        j2 = &job2;
        job2.start();
        for (int i = 0; i < 600 && job2.state() != kto::TrainingJob::State::paused; ++i) QTest::qWait(50);
        paused_seen = job2.state() == kto::TrainingJob::State::paused;
        QVERIFY(paused_seen);
        job2.resume();
        const auto r2 = job2.wait();
        QVERIFY(!r2.cancelled);
        QCOMPARE(r2.steps_done, int64_t(4));
    }

    // Running out of memory mid-run (forced at the 3rd step) ends the job with advice that fits
    // the run (full fine-tuning: LoRA is suggested) and names the checkpoint to resume from.
    void outOfMemoryEndsWithAdviceAndKeepsCheckpoints() {
        QTemporaryDir tmp;
        const fs::path root(tmp.path().toStdString());
        make_tiny_dataset(root / "data");
        auto req = tiny_train_request(root, "oom", 5);
        qputenv("KTO_FAULT_OOM", "train-step:3");
        kto::reset_fault_points();
        std::string message;
        kto::TrainingJob job(req);
        try {
            job.run();
        } catch (const kto::OutOfMemory& e) {
            message = e.what();
        }
        qunsetenv("KTO_FAULT_OOM");
        QVERIFY2(message.find("out of memory while training on cpu (batch 2") != std::string::npos, message.c_str());
        QVERIFY2(message.find("Try a smaller batch size") != std::string::npos, message.c_str());
        QVERIFY2(message.find("LoRA instead of full fine-tuning") != std::string::npos, message.c_str());
        QVERIFY2(message.find("checkpoints/step-2") != std::string::npos, message.c_str());
        QCOMPARE(job.state(), kto::TrainingJob::State::failed);
        // The run resumes from that checkpoint and finishes.
        req.resume = true;
        kto::TrainingJob again(req);
        QCOMPARE(again.run().steps_done, int64_t(5));
    }

    void badDataMessages() {
        QTemporaryDir tmp;
        const fs::path root(tmp.path().toStdString());
        make_tiny_dataset(root / "data");
        auto req = tiny_train_request(root, "z", 2);
        // Only liked images.
        std::vector<kto::TrainRecord> liked;
        for (const auto& r : req.records)
            if (r.desirable) liked.push_back(r);
        req.records = liked;
        QString msg;
        try {
            kto::TrainingJob(req).run();
        } catch (const kto::Error& e) {
            msg = e.what();
        }
        QVERIFY2(msg.contains("only liked"), qPrintable(msg));
        // Every image missing.
        auto req2 = tiny_train_request(root, "z2", 2);
        for (auto& r : req2.records) r.image_path += ".missing";
        msg.clear();
        try {
            kto::TrainingJob(req2).run();
        } catch (const kto::Error& e) {
            msg = e.what();
        }
        QVERIFY2(msg.contains("could be read") && msg.contains("not found"), qPrintable(msg));
    }
};

QTEST_GUILESS_MAIN(TestTrainingJob)
#include "test_training_job.moc"
