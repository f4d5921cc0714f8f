// Data-parallel KTO throughput: samples/s of the real Trainer with 1 worker x batch 2B and 2 workers x
// batch B (same global batch), Gloo over loopback, on the demo model's UNet (tiny-sd when the demo model
// is not built), with the time each step spends blocked on communication and the time a bare
// all-reduce of all gradients takes. The cores are split between the workers (as torchrun does), so on
// a 2-core machine 2 workers get 1 thread each: the figures show what scaling this machine allows.
// Options via environment: KTO_BENCH_STEPS (default 12), KTO_BENCH_BATCH (per-worker B, default 2).
#include <QtTest/QtTest>
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/common/runtime.h"
#include "core/nn/unet.h"
#include "core/sampling/scheduler.h"
#include "core/sampling/scheduler_config.h"
#include "core/train/dist_launcher.h"
#include "core/train/distributed.h"
#include "core/train/trainer.h"
#include "tests/support/test_paths.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

std::string env_str(const char* name, const std::string& fallback = {}) {
    const char* v = std::getenv(name);
    return (v && *v) ? std::string(v) : fallback;
}

std::string model_dir() {
    const auto demo = kto::test::demo_model_dir();
    if (fs::exists(fs::path(demo) / "unet" / "config.json")) return demo;
    return kto::test::reference_dir() + "/tiny-sd";
}

int run_worker() {
    kto::configure_torch_threads(0);
    auto env = kto::DistributedOptions::from_environment();
    if (!env) return 2;
    const std::string out = env_str("KTO_BENCH_OUT");
    try {
        auto dist = std::make_shared<kto::DistributedContext>(*env, torch::kCPU);
        const std::string dir = model_dir();
        auto unet = kto::load_unet(dir + "/unet");
        auto reference = kto::load_unet(dir + "/unet");
        const auto& c = unet->config();
        const int64_t h = c.sample_size, ch = c.in_channels;
        const int64_t d = c.cross_attention_dim.empty() ? 768 : c.cross_attention_dim[0];
        torch::manual_seed(7);
        kto::TrainingSet s;
        for (int i = 0; i < 16; ++i) {
            s.latents.push_back({torch::randn({2, ch, h, h}), torch::rand({2, ch, h, h}) * 0.1});
            s.desirable.push_back(i % 4 != 0);
            s.caption_index.push_back(i % 4);
        }
        s.embeddings = torch::randn({4, 77, d});
        s.empty_embedding = torch::randn({77, d});
        kto::TrainOptions o;
        o.steps = std::stoll(env_str("KTO_BENCH_STEPS", "12")) + 2;
        o.batch_size = std::stoi(env_str("KTO_BENCH_BATCH", "2"));
        o.learning_rate = 1e-4;
        o.warmup_steps = 0;
        kto::Trainer::Parts parts;
        parts.unet = unet.ptr();
        parts.reference = reference.ptr();
        parts.unet_config = c.raw;
        auto cfg = kto::SchedulerConfig::from_file(dir + "/scheduler/scheduler_config.json");
        parts.noise_scheduler = std::shared_ptr<kto::Scheduler>(kto::make_scheduler("ddpm", cfg));
        parts.distributed = dist;
        kto::Trainer trainer(parts, s, o);
        // Bare all-reduce of a gradient-sized buffer: the communication one step needs.
        int64_t numel = 0;
        for (const auto& [n, p] : trainer.trainable()) numel += p.numel();
        std::vector<torch::Tensor> buf{torch::ones({numel})};
        dist->barrier();
        const auto c0 = Clock::now();
        for (int i = 0; i < 5; ++i) dist->all_reduce_sum_(buf);
        const double allreduce_s = std::chrono::duration<double>(Clock::now() - c0).count() / 5;

        trainer.step();  // warm-up steps (allocations, thread pools)
        trainer.step();
        dist->barrier();
        dist->reset_stats();
        const int64_t timed = o.steps - 2;
        const auto t0 = Clock::now();
        for (int64_t i = 0; i < timed; ++i) trainer.step();
        const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
        const double comm = dist->stats().wait_seconds / double(timed);
        if (dist->is_main()) {
            std::ofstream f(out);
            f << "model " << dir << "\nparams " << numel << "\nworld " << dist->world_size() << "\nbatch "
              << o.batch_size << "\nthreads " << torch::get_num_threads() << "\nsteps " << timed
              << "\nsamples_per_s " << double(timed * o.batch_size * dist->world_size()) / secs << "\nstep_s "
              << secs / double(timed) << "\ncomm_wait_s " << comm << "\nallreduce_s " << allreduce_s << "\n";
        }
        return 0;
    } catch (const std::exception& e) {
        std::cerr << e.what() << std::endl;
        return 1;
    }
}

std::map<std::string, std::string> run(int nproc, int batch, const std::string& out) {
    kto::LocalLaunchOptions lo;
    lo.nproc = nproc;
    lo.argv = {kto::current_executable()};
    const int hw = int(std::max(1u, std::thread::hardware_concurrency()));
    lo.extra_env = {{"KTO_BENCH_WORKER", "1"},
                    {"KTO_BENCH_OUT", out},
                    {"KTO_BENCH_BATCH", std::to_string(batch)},
                    {"KTO_THREADS", std::to_string(std::max(1, hw / nproc))}};
    lo.on_message = [](const std::string&) {};
    const auto r = kto::launch_local_workers(lo);
    std::map<std::string, std::string> kv;
    if (r.exit_code != 0) return kv;
    std::ifstream in(out);
    std::string k, v;
    while (in >> k >> v) kv[k] = v;
    return kv;
}

}  // namespace

class BenchDistributed : public QObject {
    Q_OBJECT

private slots:
    void samples_per_second_1_vs_2_workers() {
        QTemporaryDir tmp;
        const int b = std::stoi(env_str("KTO_BENCH_BATCH", "2"));
        auto one = run(1, 2 * b, tmp.path().toStdString() + "/one.txt");
        auto two = run(2, b, tmp.path().toStdString() + "/two.txt");
        QVERIFY2(!one.empty() && !two.empty(), "a benchmark run failed (see the worker output above)");
        const double s1 = std::stod(one["samples_per_s"]), s2 = std::stod(two["samples_per_s"]);
        std::printf("\nbench_distributed: model %s (%s parameters), global batch %d, %s timed steps, %u cores\n",
                    one["model"].c_str(), one["params"].c_str(), 2 * b, one["steps"].c_str(),
                    std::thread::hardware_concurrency());
        std::printf("  1 worker  x batch %d (%s threads): %7.2f samples/s  %.3f s/step\n", 2 * b,
                    one["threads"].c_str(), s1, std::stod(one["step_s"]));
        std::printf("  2 workers x batch %d (%s thread each): %7.2f samples/s  %.3f s/step  "
                    "blocked on communication %.4f s/step (%.1f%%), bare gradient all-reduce %.4f s\n",
                    b, two["threads"].c_str(), s2, std::stod(two["step_s"]), std::stod(two["comm_wait_s"]),
                    100.0 * std::stod(two["comm_wait_s"]) / std::stod(two["step_s"]), std::stod(two["allreduce_s"]));
        std::printf("  scaling 2 vs 1 worker: %.2fx (ideal 2x with twice the cores)\n", s2 / s1);
    }
};

int main(int argc, char** argv) {
    if (std::getenv("KTO_BENCH_WORKER")) return run_worker();
    QCoreApplication app(argc, argv);
    BenchDistributed tc;
    QTEST_SET_MAIN_SOURCE_PATH
    return QTest::qExec(&tc, argc, argv);
}

#include "bench_distributed.moc"
