// The real Trainer data-parallel on the tiny-sd reference UNet, Gloo over loopback: 2 workers x batch 1
// give the weights of 1 worker x batch 2 (fp32 tolerance) with identical weights on both ranks after
// every step; a 2-worker checkpoint resumes onto 1 worker (and a 1-worker one onto 2) and lands where
// the straight run does; a worker killed mid-run ends the other with a clear message and leaves the
// last checkpoint complete. Workers are this executable re-run by the launcher.
#include <QtTest/QtTest>
#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <stb/stb_image_write.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <signal.h>

#include "core/common/error.h"
#include "core/common/runtime.h"
#include "core/io/safetensors.h"
#include "core/nn/unet.h"
#include "core/sampling/scheduler.h"
#include "core/sampling/scheduler_config.h"
#include "core/train/dist_launcher.h"
#include "core/train/distributed.h"
#include "core/train/trainer.h"
#include "tests/support/tensor_check.h"
#include "tests/support/test_paths.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

std::string tiny() { return kto::test::reference_dir() + "/tiny-sd"; }

std::string env_str(const char* name, const std::string& fallback = {}) {
    const char* v = std::getenv(name);
    return (v && *v) ? std::string(v) : fallback;
}

std::string read_text(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// 8 examples (5 liked, 3 disliked) of 4x8x8 latents, 3 captions, 32-wide text states.
kto::TrainingSet synthetic_set() {
    torch::manual_seed(4321);
    kto::TrainingSet s;
    for (int i = 0; i < 8; ++i) {
        s.latents.push_back({torch::randn({2, 4, 8, 8}), torch::rand({2, 4, 8, 8}) * 0.1});
        s.desirable.push_back(i < 5);
        s.caption_index.push_back(i % 3);
    }
    s.embeddings = torch::randn({3, 77, 32});
    s.empty_embedding = torch::randn({77, 32});
    s.scaling_factor = 0.18215;
    return s;
}

// Worker: trains with the environment's settings, checks rank agreement after every step.
int run_worker() {
    kto::configure_torch_threads(0);
    const std::string dir = env_str("KTO_DIST_TEST_DIR");
    auto env = kto::DistributedOptions::from_environment();
    if (!env) return 2;
    const int rank = env->rank;
    const std::string tag = env_str("KTO_RUN_TAG", "run");
    try {
        auto dist = std::make_shared<kto::DistributedContext>(*env, torch::kCPU);
        kto::TrainOptions o;
        o.steps = std::stoll(env_str("KTO_STEPS", "4"));
        o.batch_size = std::stoi(env_str("KTO_BATCH", "1"));
        o.grad_accumulation = std::stoi(env_str("KTO_ACCUM", "1"));
        o.learning_rate = 1e-3;
        o.warmup_steps = 1;
        o.seed = 5;
        auto unet = kto::load_unet(tiny() + "/unet");
        auto reference = kto::load_unet(tiny() + "/unet");
        kto::Trainer::Parts parts;
        parts.unet = unet.ptr();
        parts.reference = reference.ptr();
        parts.unet_config = unet->config().raw;
        auto cfg = kto::SchedulerConfig::from_file(tiny() + "/scheduler/scheduler_config.json");
        parts.noise_scheduler = std::shared_ptr<kto::Scheduler>(kto::make_scheduler("ddpm", cfg));
        parts.distributed = dist;
        kto::Trainer trainer(parts, synthetic_set(), o);
        const std::string resume = env_str("KTO_RESUME_FROM");
        if (!resume.empty() && dist->is_main()) trainer.load_checkpoint(resume);
        trainer.sync_from_rank0();
        const int64_t save_at = std::stoll(env_str("KTO_SAVE_AT", "-1"));
        const int64_t die_at = std::stoll(env_str("KTO_DIE_AT", "-1"));
        std::vector<torch::Tensor> params;
        for (const auto& [n, p] : trainer.trainable()) params.push_back(p);
        std::ostringstream log;
        while (trainer.steps_done() < o.steps) {
            if (rank == 1 && trainer.steps_done() == die_at) ::raise(SIGKILL);
            const auto m = trainer.step();
            const double div = dist->max_divergence_from_rank0(params);
            log << "step " << m.step << " loss " << m.loss << " kl " << m.kl << " div " << div << "\n";
            if (div != 0.0)
                throw kto::Error("ranks hold different weights after step " + std::to_string(m.step) +
                                 " (max |diff| " + std::to_string(div) + ")");
            if (trainer.steps_done() == save_at && dist->is_main()) {
                // As TrainingJob does: write aside, then rename (a checkpoint is complete or absent).
                const std::string tmp = dir + "/" + tag + "-ckpt.tmp";
                trainer.save_checkpoint(tmp);
                fs::rename(tmp, dir + "/" + tag + "-ckpt");
            }
        }
        if (dist->is_main()) {
            kto::TensorMap w;
            for (const auto& [n, p] : trainer.trainable()) w[n] = p.detach().clone();
            kto::write_safetensors(dir + "/" + tag + ".safetensors", w);
            std::ofstream(dir + "/" + tag + ".log") << log.str();
        }
        return 0;
    } catch (const std::exception& e) {
        std::ofstream(dir + "/" + tag + "-rank" + std::to_string(rank) + ".error") << e.what() << "\n";
        std::cerr << e.what() << std::endl;
        return 1;
    }
}

struct Launched {
    kto::LocalLaunchResult result;
    double seconds = 0;
};

Launched launch(int nproc, const std::string& dir, std::map<std::string, std::string> env) {
    kto::LocalLaunchOptions lo;
    lo.nproc = nproc;
    lo.argv = {kto::current_executable()};
    env["KTO_DIST_TRAIN_WORKER"] = "1";
    env["KTO_DIST_TEST_DIR"] = dir;
    env["KTO_THREADS"] = "1";
    lo.extra_env = env;
    lo.grace = std::chrono::seconds(20);
    auto mutex = std::make_shared<std::mutex>();
    lo.on_line = [mutex](int rank, bool, const std::string& line) {
        std::lock_guard<std::mutex> lock(*mutex);
        qInfo("[rank %d] %s", rank, line.c_str());
    };
    lo.on_message = [](const std::string& m) { qInfo("[launcher] %s", m.c_str()); };
    Launched l;
    const auto start = Clock::now();
    l.result = kto::launch_local_workers(lo);
    l.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return l;
}

void expect_close(const std::string& a_file, const std::string& b_file, double atol, const std::string& what) {
    const auto a = kto::load_safetensors(a_file);
    const auto b = kto::load_safetensors(b_file);
    QCOMPARE(a.size(), b.size());
    double worst = 0;
    for (const auto& [name, t] : a) {
        const auto d = kto::test::diff_tensors(t, b.at(name), atol);
        worst = std::max(worst, d.max_abs);
        QVERIFY2(d.ok, (what + ": " + name + ": " + d.message).c_str());
    }
    qInfo("%s: max |diff| %.3g over %zu tensors", what.c_str(), worst, a.size());
}

}  // namespace

class TestDistributedTraining : public QObject {
    Q_OBJECT

    QTemporaryDir tmp_;
    std::string dir() const { return tmp_.path().toStdString(); }

private slots:
    void initTestCase() {
        if (!fs::exists(tiny() + "/unet/config.json")) QSKIP("tiny-sd reference model not found");
    }

    void two_workers_match_one_worker_with_twice_the_batch() {
        auto one = launch(1, dir(), {{"KTO_BATCH", "2"}, {"KTO_RUN_TAG", "one"}, {"KTO_SAVE_AT", "2"}});
        QCOMPARE(one.result.exit_code, 0);
        auto two = launch(2, dir(), {{"KTO_BATCH", "1"}, {"KTO_RUN_TAG", "two"}, {"KTO_SAVE_AT", "2"}});
        QCOMPARE(two.result.exit_code, 0);
        qInfo("1 x 2: %.1f s, 2 x 1: %.1f s (4 steps each, process start included)", one.seconds, two.seconds);
        expect_close(dir() + "/two.safetensors", dir() + "/one.safetensors", 2e-5, "2 workers x 1 vs 1 x 2");
        // The weights moved: the comparison is not between two copies of the start.
        const auto start = kto::load_unet(tiny() + "/unet");
        const auto w = kto::load_safetensors(dir() + "/one.safetensors");
        double moved = 0;
        for (const auto& item : start->named_parameters())
            moved = std::max(moved, (w.at(item.key()) - item.value()).abs().max().item<double>());
        QVERIFY2(moved > 1e-4, "training did not move the weights");
        // Same losses and kl per step (the reference point is global).
        qInfo("1 worker:\n%s2 workers:\n%s", read_text(dir() + "/one.log").c_str(), read_text(dir() + "/two.log").c_str());
    }

    void resume_changes_the_number_of_workers() {
        // 2-worker checkpoint at step 2, resumed by 1 worker x batch 2 up to step 4.
        QVERIFY(fs::exists(dir() + "/two-ckpt/trainer_state.json"));
        auto r1 = launch(1, dir(), {{"KTO_BATCH", "2"}, {"KTO_RUN_TAG", "two-then-one"},
                                    {"KTO_RESUME_FROM", dir() + "/two-ckpt"}});
        QCOMPARE(r1.result.exit_code, 0);
        expect_close(dir() + "/two-then-one.safetensors", dir() + "/one.safetensors", 2e-5,
                     "2 workers then resumed on 1 vs 1 straight");
        // And a 1-worker checkpoint resumed by 2 workers.
        auto r2 = launch(2, dir(), {{"KTO_BATCH", "1"}, {"KTO_RUN_TAG", "one-then-two"},
                                    {"KTO_RESUME_FROM", dir() + "/one-ckpt"}});
        QCOMPARE(r2.result.exit_code, 0);
        expect_close(dir() + "/one-then-two.safetensors", dir() + "/one.safetensors", 2e-5,
                     "1 worker then resumed on 2 vs 1 straight");
    }

    void killed_worker_ends_the_run_and_keeps_the_checkpoint() {
        auto l = launch(2, dir(), {{"KTO_BATCH", "1"}, {"KTO_RUN_TAG", "dies"}, {"KTO_SAVE_AT", "2"},
                                   {"KTO_DIE_AT", "3"}, {"KTO_DIST_TIMEOUT", "10"}});
        QCOMPARE(l.result.first_failed_rank, 1);
        QCOMPARE(l.result.worker_status[1], 128 + SIGKILL);
        QCOMPARE(l.result.worker_status[0], 1);  // ended on its own with an error, not by the launcher
        const auto err = read_text(dir() + "/dies-rank0.error");
        qInfo("rank 0 said: %s (run took %.1f s)", err.c_str(), l.seconds);
        QVERIFY2(err.find("distributed (rank 0 of 2)") != std::string::npos, err.c_str());
        QVERIFY(l.seconds < 60);
        // The checkpoint written before the failure is complete and loads.
        QVERIFY(fs::exists(dir() + "/dies-ckpt/trainer_state.json"));
        QVERIFY(!fs::exists(dir() + "/dies-ckpt.tmp"));
        auto r = launch(1, dir(), {{"KTO_BATCH", "2"}, {"KTO_RUN_TAG", "dies-resumed"},
                                   {"KTO_RESUME_FROM", dir() + "/dies-ckpt"}});
        QCOMPARE(r.result.exit_code, 0);
        expect_close(dir() + "/dies-resumed.safetensors", dir() + "/one.safetensors", 2e-5,
                     "resumed after a dead worker vs 1 straight");
    }

    // `kto-studio-cli train --nproc 2`: two local workers through the launcher, rank 0 alone writes
    // the run folder (config states the workers and the global batch; checkpoints; metrics).
    void cli_nproc_runs_two_workers() {
        const fs::path data = fs::path(dir()) / "cli-data";
        fs::create_directories(data / "train");
        std::string csv = "file_path,caption,label\n";
        for (int i = 0; i < 4; ++i) {
            std::vector<uint8_t> px(64 * 64 * 3);
            for (size_t k = 0; k < px.size(); ++k) px[k] = static_cast<uint8_t>((i < 2 ? 160 : 30) + (k * 5 + i) % 80);
            const std::string name = "train/img" + std::to_string(i) + ".png";
            QVERIFY(stbi_write_png((data / name).string().c_str(), 64, 64, 3, px.data(), 64 * 3));
            csv += name + ",a photograph of an astronaut riding a horse," + (i < 2 ? "exclusive_win" : "exclusive_lose") + "\n";
        }
        std::ofstream(data / "train_processed_v3.csv") << csv;
        const fs::path run = fs::path(dir()) / "cli-run";
        QProcess p;
        p.setProcessChannelMode(QProcess::MergedChannels);
        p.start(QString::fromStdString(kto::test::cli_path()),
                {"train", "--model", QString::fromStdString(tiny()), "--data", QString::fromStdString(data.string()),
                 "--out", QString::fromStdString(run.string()), "--steps", "2", "--batch", "1", "--checkpoint-every",
                 "1", "--nproc", "2"});
        QVERIFY(p.waitForFinished(240000));
        const QString out = QString::fromUtf8(p.readAll());
        QVERIFY2(p.exitCode() == 0, qPrintable(out));
        QVERIFY2(out.contains("[rank 1]") && out.contains("[rank 0] trained 2 steps"), qPrintable(out));
        std::ifstream cfg(run / "config.json");
        const auto config = nlohmann::json::parse(cfg);
        QCOMPARE(config.value("workers", 0), 2);
        QCOMPARE(config.value("global_batch", 0), 2);
        QVERIFY(fs::exists(run / "checkpoints" / "step-2"));
        // Both ranks would have appended their own lines: rank 0 alone writes metrics.
        std::ifstream metrics(run / "metrics.jsonl");
        int lines = 0;
        for (std::string l; std::getline(metrics, l);) ++lines;
        QCOMPARE(lines, 2);
        // --nproc inside a worker is refused with a message naming both launch styles.
        QProcess bad;
        bad.setProcessChannelMode(QProcess::MergedChannels);
        auto env = QProcessEnvironment::systemEnvironment();
        env.insert("WORLD_SIZE", "2");
        env.insert("RANK", "0");
        env.insert("MASTER_ADDR", "127.0.0.1");
        env.insert("MASTER_PORT", "1");
        bad.setProcessEnvironment(env);
        bad.start(QString::fromStdString(kto::test::cli_path()),
                  {"train", "--model", QString::fromStdString(tiny()), "--data", QString::fromStdString(data.string()),
                   "--out", QString::fromStdString((fs::path(dir()) / "bad-run").string()), "--nproc", "2"});
        QVERIFY(bad.waitForFinished(60000));
        QVERIFY(bad.exitCode() != 0);
        QVERIFY2(QString::fromUtf8(bad.readAll()).contains("already a worker"), "no clear message");
    }
};

int main(int argc, char** argv) {
    if (std::getenv("KTO_DIST_TRAIN_WORKER")) return run_worker();
    QCoreApplication app(argc, argv);
    TestDistributedTraining tc;
    QTEST_SET_MAIN_SOURCE_PATH
    return QTest::qExec(&tc, argc, argv);
}

#include "test_distributed_training.moc"
