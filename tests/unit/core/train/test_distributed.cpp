// Data-parallel layer on c10d/Gloo over loopback: collectives, the bucketed gradient reducer (2
// workers x batch B == 1 worker x batch 2B with the KTO reference point averaged across workers,
// identical weights on every rank after every step), sharding, the local launcher, and failures (a
// killed worker, a hung worker, a rendezvous nobody joins) ending every rank within the timeout.
// Workers are this executable re-run by the launcher with KTO_DIST_TEST_WORKER=<scenario>.
#include <QtTest/QtTest>
#include <torch/torch.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "core/common/error.h"
#include "core/common/runtime.h"
#include "core/io/safetensors.h"
#include "core/train/dist_launcher.h"
#include "core/train/distributed.h"
#include "tests/support/tensor_check.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

std::string env_str(const char* name) {
    const char* v = std::getenv(name);
    return v ? std::string(v) : std::string();
}

void write_text(const std::string& path, const std::string& text) {
    std::ofstream out(path);
    out << text;
}

std::string read_text(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// ------------------------------------------------------------------------------------------
// A toy denoiser trained with the real KTO objective and the real reducer.

struct ToyRun {
    int steps = 6;
    int64_t global_batch = 8;
    int micro_batches = 2;        // gradient accumulation: hooks armed only for the last one
    size_t bucket_bytes = 4096;   // several buckets, so some launch inside backward
    bool overlap = true;
};

torch::nn::Sequential make_denoiser() {
    torch::manual_seed(1234);  // same initial weights everywhere; broadcast makes sure anyway
    return torch::nn::Sequential(torch::nn::Linear(20, 64), torch::nn::SiLU(), torch::nn::Linear(64, 64),
                                 torch::nn::SiLU(), torch::nn::Linear(64, 16));
}

torch::Tensor toy_input(const torch::Tensor& x_t, const torch::Tensor& t) {
    auto f = torch::stack({torch::sin(t * 3.0), torch::cos(t * 3.0), torch::sin(t * 7.0), t}, 1);
    return torch::cat({x_t, f}, 1);
}

// Runs the toy training on this rank; returns per-step losses. Writes weights to `out`.
void toy_train(kto::DistributedContext& ctx, const ToyRun& run, const std::string& out_prefix) {
    auto model = make_denoiser();
    auto ref = make_denoiser();
    for (auto& p : ref->parameters()) p.set_requires_grad(false);
    auto params = model->parameters();
    if (ctx.rank() != 0) {  // rank 0's weights must win: perturb the others before the broadcast
        torch::NoGradGuard ng;
        for (auto& p : params) p.add_(0.01);
    }
    ctx.broadcast_(params, 0);
    kto::GradientReducer reducer(ctx, params, run.bucket_bytes, run.overlap);

    auto data_gen = at::detail::createCPUGenerator(77);
    const auto z0_all = at::randn({32, 16}, data_gen, torch::kFloat);
    std::vector<bool> labels;
    for (int i = 0; i < 32; ++i) labels.push_back(i % 3 != 0);

    kto::KtoParams kp;
    kp.beta = 50.0;
    kp.all_reduce_mean = ctx.scalar_all_reduce();
    torch::optim::SGD opt(params, torch::optim::SGDOptions(0.5));
    const int64_t micro_global = run.global_batch / run.micro_batches;
    std::ostringstream log;
    size_t launched_total = 0;
    for (int step = 0; step < run.steps; ++step) {
        opt.zero_grad();
        // The global batch's examples, noise and timesteps come from the shared seed; each rank
        // takes its rows, so W x B sees exactly the samples 1 x WB sees.
        auto gen = at::detail::createCPUGenerator(1000 + step);
        const auto idx = at::randint(32, {run.global_batch}, gen, torch::kLong);
        const auto noise = at::randn({run.global_batch, 16}, gen, torch::kFloat);
        const auto t = at::rand({run.global_batch}, gen, torch::kFloat);
        for (int m = 0; m < run.micro_batches; ++m) {
            const auto rows = torch::arange(m * micro_global, (m + 1) * micro_global, torch::kLong);
            auto mine = kto::shard_rows(rows, ctx.rank(), ctx.world_size());
            const auto sel = idx.index_select(0, mine);
            const auto z0 = z0_all.index_select(0, sel);
            const auto n = noise.index_select(0, mine);
            const auto tt = t.index_select(0, mine);
            const auto x_t = torch::sqrt(1 - tt).unsqueeze(1) * z0 + torch::sqrt(tt).unsqueeze(1) * n;
            std::vector<uint8_t> y;
            for (int64_t k = 0; k < sel.size(0); ++k) y.push_back(labels[size_t(sel[k].item<int64_t>())] ? 1 : 0);
            const auto yt = torch::tensor(y).to(torch::kBool);
            const auto me = kto::per_sample_mse(model->forward(toy_input(x_t, tt)), n);
            torch::Tensor re;
            {
                torch::NoGradGuard ng;
                re = kto::per_sample_mse(ref->forward(toy_input(x_t, tt)), n);
            }
            auto res = kto::kto_objective(me, re, yt, kp);
            if (m == run.micro_batches - 1) reducer.prepare_for_backward();
            (res.loss / run.micro_batches).backward();
            log << "step " << step << " micro " << m << " kl " << res.kl << "\n";
        }
        reducer.finish();
        launched_total += reducer.launched_in_backward();
        opt.step();
        const double div = ctx.max_divergence_from_rank0(params);
        if (div != 0.0) throw kto::Error("weights differ across ranks after step " + std::to_string(step) +
                                         ": max |diff| " + std::to_string(div));
    }
    kto::TensorMap w;
    int i = 0;
    for (auto& p : params) w["p" + std::to_string(i++)] = p.detach().clone();
    kto::write_safetensors(out_prefix + ".safetensors", w);
    write_text(out_prefix + ".log", log.str() + "buckets " + std::to_string(reducer.bucket_count()) +
                                        "\nlaunched_in_backward " + std::to_string(launched_total) + "\n");
}

// ------------------------------------------------------------------------------------------
// Worker side (a process started by the launcher)

int run_worker(const std::string& scenario) {
    kto::configure_torch_threads(0);
    const std::string dir = env_str("KTO_DIST_TEST_DIR");
    auto opts = kto::DistributedOptions::from_environment();
    if (!opts) {
        std::cerr << "worker: no WORLD_SIZE in the environment\n";
        return 2;
    }
    const int rank = opts->rank;
    const std::string me = dir + "/rank" + std::to_string(rank);
    try {
        if (scenario == "collectives") {
            kto::DistributedContext ctx(*opts, torch::kCPU);
            const int w = ctx.world_size();
            auto mean = ctx.all_reduce_mean(torch::tensor({double(rank), 1.0 + rank}));
            auto mx = ctx.all_reduce_max(torch::tensor(double(rank * 10)));
            std::vector<torch::Tensor> b{torch::full({3}, double(rank + 5)), torch::full({2}, int64_t(rank + 7))};
            ctx.broadcast_(b, 0);
            std::vector<torch::Tensor> s{torch::full({4}, 1.0f + rank)};
            ctx.all_reduce_sum_(s);
            auto gathered = ctx.all_gather_scalar(rank * 2.5);
            ctx.barrier();
            auto hook = ctx.scalar_all_reduce();
            const double hooked = hook(torch::tensor(float(rank))).item<double>();
            std::vector<torch::Tensor> same{torch::ones({5})};
            const double d0 = ctx.max_divergence_from_rank0(same);
            std::vector<torch::Tensor> diff{torch::ones({5}) * (rank == 1 ? 1.5 : 1.0)};
            const double d1 = ctx.max_divergence_from_rank0(diff);
            std::ostringstream os;
            os << "mean " << mean[0].item<double>() << " " << mean[1].item<double>() << "\n"
               << "max " << mx.item<double>() << "\n"
               << "bcast " << b[0][2].item<double>() << " " << b[1][1].item<int64_t>() << "\n"
               << "sum " << s[0][3].item<float>() << "\n"
               << "gather";
            for (double g : gathered) os << " " << g;
            os << "\nhook " << hooked << "\ndiv " << d0 << " " << d1 << "\nworld " << w << " backend "
               << ctx.backend_name() << "\n";
            write_text(me + ".txt", os.str());
            return 0;
        }
        if (scenario == "toy") {
            kto::DistributedContext ctx(*opts, torch::kCPU);
            ToyRun run;
            run.overlap = env_str("KTO_TOY_OVERLAP") != "0";
            run.global_batch = std::stoll(env_str("KTO_TOY_GLOBAL_BATCH"));
            toy_train(ctx, run, me + "-w" + std::to_string(ctx.world_size()));
            return 0;
        }
        if (scenario == "die" || scenario == "hang") {
            kto::DistributedContext ctx(*opts, torch::kCPU);
            auto model = make_denoiser();
            auto params = model->parameters();
            kto::GradientReducer reducer(ctx, params);
            auto last_ok = Clock::now();
            for (int step = 0; step < 100000; ++step) {
                if (rank == 1 && step == 3) {
                    write_text(me + ".stopping", "1");
                    if (scenario == "die") ::raise(SIGKILL);  // like `kill -9`: no goodbye
                    std::this_thread::sleep_for(std::chrono::seconds(120));
                }
                model->zero_grad();
                reducer.prepare_for_backward();
                model->forward(torch::randn({4, 20})).pow(2).mean().backward();
                try {
                    reducer.finish();
                } catch (const kto::Error& e) {
                    const double waited = std::chrono::duration<double>(Clock::now() - last_ok).count();
                    write_text(me + ".error", std::string(e.what()) + "\nwaited " + std::to_string(waited) + "\n");
                    std::cerr << e.what() << std::endl;
                    return 1;
                }
                last_ok = Clock::now();
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
            }
            return 0;
        }
        if (scenario == "sleepers") {
            // A launcher whose workers only sleep; the test kills this process and checks they die.
            kto::LocalLaunchOptions lo;
            lo.nproc = 2;
            lo.argv = {"/bin/sh", "-c", "echo $$ > \"" + dir + "/sleeper-$RANK\"; exec sleep 60"};
            lo.on_line = [](int, bool, const std::string&) {};
            kto::launch_local_workers(lo);
            return 0;
        }
    } catch (const std::exception& e) {
        std::cerr << "worker " << scenario << " rank " << rank << ": " << e.what() << std::endl;
        write_text(me + ".error", e.what());
        return 1;
    }
    std::cerr << "unknown scenario " << scenario << "\n";
    return 2;
}

// ------------------------------------------------------------------------------------------
// Test side

struct Launched {
    kto::LocalLaunchResult result;
    std::vector<std::string> lines;
    std::vector<std::string> messages;
    double seconds = 0;
};

Launched launch(const std::string& scenario, int nproc, const std::string& dir,
                std::map<std::string, std::string> env = {}, std::chrono::milliseconds grace = std::chrono::seconds(15)) {
    kto::LocalLaunchOptions lo;
    lo.nproc = nproc;
    lo.argv = {kto::current_executable()};
    env["KTO_DIST_TEST_WORKER"] = scenario;
    env["KTO_DIST_TEST_DIR"] = dir;
    env["KTO_THREADS"] = "1";
    lo.extra_env = env;
    lo.grace = grace;
    Launched l;
    auto mutex = std::make_shared<std::mutex>();
    lo.on_line = [&l, mutex](int rank, bool is_err, const std::string& line) {
        std::lock_guard<std::mutex> lock(*mutex);
        l.lines.push_back("[rank " + std::to_string(rank) + (is_err ? " err] " : "] ") + line);
    };
    lo.on_message = [&l](const std::string& m) { l.messages.push_back(m); };
    const auto start = Clock::now();
    l.result = kto::launch_local_workers(lo);
    l.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    for (const auto& line : l.lines) qInfo("%s", line.c_str());
    for (const auto& m : l.messages) qInfo("[launcher] %s", m.c_str());
    return l;
}

std::map<std::string, std::string> parse_kv(const std::string& text) {
    std::map<std::string, std::string> out;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        const auto sp = line.find(' ');
        if (sp != std::string::npos) out[line.substr(0, sp)] = line.substr(sp + 1);
    }
    return out;
}

bool process_gone(pid_t pid) {
    if (::kill(pid, 0) != 0) return true;
    // A zombie waiting for its new parent to reap it is gone for our purposes.
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string content((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    const auto close = content.rfind(')');
    return close != std::string::npos && close + 2 < content.size() && content[close + 2] == 'Z';
}

}  // namespace

class TestDistributed : public QObject {
    Q_OBJECT

private slots:
    void environment_parsing() {
        qunsetenv("WORLD_SIZE");
        QVERIFY(!kto::DistributedOptions::from_environment().has_value());
        qputenv("WORLD_SIZE", "2");
        qunsetenv("RANK");
        QVERIFY_THROWS_EXCEPTION(kto::Error, kto::DistributedOptions::from_environment());
        qputenv("RANK", "1");
        qunsetenv("MASTER_ADDR");
        qputenv("MASTER_PORT", "29511");
        try {
            kto::DistributedOptions::from_environment();
            QFAIL("missing MASTER_ADDR accepted");
        } catch (const kto::Error& e) {
            QVERIFY2(std::string(e.what()).find("MASTER_ADDR") != std::string::npos, e.what());
        }
        qputenv("MASTER_ADDR", "10.0.0.5");
        qputenv("KTO_DIST_TIMEOUT", "7");
        qunsetenv("LOCAL_RANK");
        auto o = kto::DistributedOptions::from_environment();
        QVERIFY(o.has_value());
        QCOMPARE(o->rank, 1);
        QCOMPARE(o->world_size, 2);
        QCOMPARE(o->local_rank, 1);
        QCOMPARE(o->master_addr, std::string("10.0.0.5"));
        QCOMPARE(o->master_port, 29511);
        QCOMPARE(int(o->timeout.count()), 7000);
        qputenv("RANK", "2");  // outside [0, WORLD_SIZE)
        QVERIFY_THROWS_EXCEPTION(kto::Error, kto::DistributedOptions::from_environment());
        qputenv("RANK", "x");
        QVERIFY_THROWS_EXCEPTION(kto::Error, kto::DistributedOptions::from_environment());
        for (const char* v : {"WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT", "KTO_DIST_TIMEOUT"}) qunsetenv(v);
        kto::DistributedOptions bad;
        bad.backend = "mpi";
        QVERIFY_THROWS_EXCEPTION(kto::Error, bad.validate());
        if (!kto::nccl_available()) {
            bad.backend = "nccl";
            QVERIFY_THROWS_EXCEPTION(kto::Error, bad.validate());
        }
    }

    void sharding_is_disjoint_and_covers() {
        QCOMPARE(kto::shard_positions(6, 1, 3), (std::vector<int64_t>{1, 4}));
        QVERIFY_THROWS_EXCEPTION(kto::Error, kto::shard_positions(5, 0, 2));
        auto g = torch::arange(8).view({8, 1});
        QVERIFY(torch::equal(kto::shard_rows(g, 1, 2).view(-1), torch::tensor({1, 3, 5, 7}, torch::kLong)));
        for (int w : {1, 2, 3}) {
            std::set<int64_t> all;
            size_t total = 0;
            for (int r = 0; r < w; ++r) {
                auto s = kto::epoch_shard(10, 42, 3, r, w);
                QCOMPARE(s.size(), size_t(10 / w));
                total += s.size();
                all.insert(s.begin(), s.end());
            }
            QCOMPARE(all.size(), total);  // disjoint
            QCOMPARE(total, size_t(10 - 10 % w));
        }
        // The permutation is the same on every call (every rank) and changes with the epoch.
        QCOMPARE(kto::epoch_shard(10, 42, 3, 0, 1), kto::epoch_shard(10, 42, 3, 0, 1));
        QVERIFY(kto::epoch_shard(10, 42, 3, 0, 1) != kto::epoch_shard(10, 42, 4, 0, 1));
    }

    void single_worker_is_identity() {
        kto::DistributedContext ctx;
        QCOMPARE(ctx.world_size(), 1);
        QVERIFY(!ctx.distributed());
        QVERIFY(!ctx.scalar_all_reduce());
        auto t = torch::tensor({1.0, 2.0});
        QVERIFY(torch::equal(ctx.all_reduce_mean(t), t));
        ctx.barrier();
        QCOMPARE(ctx.max_divergence_from_rank0({t}), 0.0);
        torch::nn::Linear lin(3, 2);
        kto::GradientReducer reducer(ctx, lin->parameters());
        reducer.prepare_for_backward();
        lin->forward(torch::ones({1, 3})).sum().backward();
        auto before = lin->weight.grad().clone();
        reducer.finish();
        QVERIFY(torch::equal(lin->weight.grad(), before));
    }

    void collectives_over_gloo() {
        QTemporaryDir tmp;
        auto l = launch("collectives", 2, tmp.path().toStdString());
        QCOMPARE(l.result.exit_code, 0);
        for (int r = 0; r < 2; ++r) {
            auto kv = parse_kv(read_text(tmp.path().toStdString() + "/rank" + std::to_string(r) + ".txt"));
            QCOMPARE(kv["mean"], std::string("0.5 1.5"));
            QCOMPARE(kv["max"], std::string("10"));
            QCOMPARE(kv["bcast"], std::string("5 7"));
            QCOMPARE(kv["sum"], std::string("3"));
            QCOMPARE(kv["gather"], std::string("0 2.5"));
            QCOMPARE(kv["hook"], std::string("0.5"));
            QCOMPARE(kv["div"], std::string("0 0.5"));
            QCOMPARE(kv["world"], std::string("2 backend gloo"));
        }
        // Output comes back prefixed by rank; the launcher names the port it chose.
        QVERIFY(l.result.master_port > 0);
        QVERIFY(!l.messages.empty() && l.messages[0].find("MASTER_PORT=") != std::string::npos);
    }

    // 2 workers x batch B == 1 worker x batch 2B (fp32 tolerance), with overlap and without.
    void two_workers_match_one_worker_with_twice_the_batch() {
        QTemporaryDir tmp;
        const std::string dir = tmp.path().toStdString();
        auto one = launch("toy", 1, dir, {{"KTO_TOY_GLOBAL_BATCH", "8"}});
        QCOMPARE(one.result.exit_code, 0);
        auto two = launch("toy", 2, dir, {{"KTO_TOY_GLOBAL_BATCH", "8"}});
        QCOMPARE(two.result.exit_code, 0);
        const auto w1 = kto::load_safetensors(dir + "/rank0-w1.safetensors");
        const auto w2 = kto::load_safetensors(dir + "/rank0-w2.safetensors");
        const auto w2r1 = kto::load_safetensors(dir + "/rank1-w2.safetensors");
        QCOMPARE(w1.size(), w2.size());
        bool moved = false;
        const auto init = make_denoiser()->parameters();
        int i = 0;
        for (const auto& [name, t] : w1) {
            KTO_COMPARE_TENSORS(w2.at(name), t, 1e-5, ("2x4 vs 1x8: " + name).c_str());
            QVERIFY(torch::equal(w2.at(name), w2r1.at(name)));  // ranks bit-identical
            moved = moved || !torch::allclose(t, init[size_t(i)], 0, 1e-4);
            ++i;
        }
        QVERIFY2(moved, "training did not change the weights: the comparison would prove nothing");
        // The reference point was averaged: both ranks logged the same (global) kl every micro-batch.
        QCOMPARE(read_text(dir + "/rank0-w2.log").substr(0, 200), read_text(dir + "/rank1-w2.log").substr(0, 200));
        // Overlap: some buckets started inside backward.
        auto kv = parse_kv(read_text(dir + "/rank0-w2.log"));
        qInfo("reducer: buckets %s, launched in backward %s (over 6 steps)", kv["buckets"].c_str(),
              kv["launched_in_backward"].c_str());
        QVERIFY(std::stoi(kv["buckets"]) > 1);
        QVERIFY(std::stoi(kv["launched_in_backward"]) > 0);

        // Without overlap (all-reduce after backward) the result is the same.
        QTemporaryDir tmp2;
        auto two_sync = launch("toy", 2, tmp2.path().toStdString(),
                               {{"KTO_TOY_GLOBAL_BATCH", "8"}, {"KTO_TOY_OVERLAP", "0"}});
        QCOMPARE(two_sync.result.exit_code, 0);
        const auto ws = kto::load_safetensors(tmp2.path().toStdString() + "/rank0-w2.safetensors");
        for (const auto& [name, t] : w1) KTO_COMPARE_TENSORS(ws.at(name), t, 1e-5, ("no overlap: " + name).c_str());
        auto kvs = parse_kv(read_text(tmp2.path().toStdString() + "/rank0-w2.log"));
        QCOMPARE(kvs["launched_in_backward"], std::string("0"));
    }

    void killed_worker_ends_the_others_within_the_timeout() {
        QTemporaryDir tmp;
        const std::string dir = tmp.path().toStdString();
        auto l = launch("die", 2, dir, {{"KTO_DIST_TIMEOUT", "10"}}, std::chrono::seconds(20));
        QCOMPARE(l.result.first_failed_rank, 1);
        QCOMPARE(l.result.worker_status[1], 128 + SIGKILL);
        QCOMPARE(l.result.worker_status[0], 1);  // rank 0 stopped on its own, not by the launcher
        const auto err = read_text(dir + "/rank0.error");
        QVERIFY2(err.find("distributed (rank 0 of 2)") != std::string::npos, err.c_str());
        QVERIFY2(err.find("gradient all-reduce failed") != std::string::npos, err.c_str());
        const double waited = std::stod(parse_kv(err)["waited"]);
        qInfo("rank 0 noticed the dead peer after %.2f s (timeout 10 s)", waited);
        QVERIFY(waited < 10.5);
        QVERIFY(l.seconds < 30);
    }

    void hung_worker_times_out_and_is_terminated() {
        QTemporaryDir tmp;
        const std::string dir = tmp.path().toStdString();
        auto l = launch("hang", 2, dir, {{"KTO_DIST_TIMEOUT", "2"}}, std::chrono::seconds(1));
        QCOMPARE(l.result.first_failed_rank, 0);
        QCOMPARE(l.result.exit_code, 1);
        QCOMPARE(l.result.worker_status[1], 128 + SIGTERM);  // terminated by the launcher
        const auto err = read_text(dir + "/rank0.error");
        QVERIFY2(err.find("distributed (rank 0 of 2)") != std::string::npos, err.c_str());
        const double waited = std::stod(parse_kv(err)["waited"]);
        qInfo("rank 0 gave up on the hung peer after %.2f s (timeout 2 s); run ended in %.1f s", waited, l.seconds);
        QVERIFY(waited >= 1.5 && waited < 6);
        QVERIFY(l.seconds < 20);
    }

    void rendezvous_times_out_with_a_clear_message() {
        for (int rank : {0, 1}) {
            kto::DistributedOptions o;
            o.rank = rank;  // rank 0: nobody joins its store; rank 1: nobody hosts one
            o.world_size = 2;
            o.master_port = kto::find_free_port();
            o.timeout = std::chrono::seconds(2);
            const auto start = Clock::now();
            try {
                kto::DistributedContext ctx(o, torch::kCPU);
                QFAIL("rendezvous with a missing worker succeeded");
            } catch (const kto::Error& e) {
                const double s = std::chrono::duration<double>(Clock::now() - start).count();
                qInfo("rank %d: %.2f s: %s", rank, s, e.what());
                QVERIFY2(std::string(e.what()).find("rendezvous") != std::string::npos ||
                             std::string(e.what()).find("process group") != std::string::npos,
                         e.what());
                QVERIFY(s < 15);
            }
        }
    }

    void launcher_prefixes_output_and_aggregates_status() {
        kto::LocalLaunchOptions lo;
        lo.nproc = 3;
        lo.argv = {"/bin/sh", "-c", "echo out $RANK/$WORLD_SIZE $LOCAL_RANK $MASTER_ADDR; echo err >&2; exit $((RANK == 2 ? 4 : 0))"};
        lo.grace = std::chrono::seconds(5);
        std::vector<std::string> lines;
        std::mutex m;
        lo.on_line = [&](int rank, bool is_err, const std::string& line) {
            std::lock_guard<std::mutex> lock(m);
            lines.push_back(std::to_string(rank) + (is_err ? "E " : "O ") + line);
        };
        lo.on_message = [](const std::string&) {};
        auto r = kto::launch_local_workers(lo);
        QCOMPARE(r.exit_code, 4);
        QCOMPARE(r.first_failed_rank, 2);
        QCOMPARE(r.worker_status, (std::vector<int>{0, 0, 4}));
        std::set<std::string> got(lines.begin(), lines.end());
        for (int rank = 0; rank < 3; ++rank) {
            QVERIFY(got.count(std::to_string(rank) + "O out " + std::to_string(rank) + "/3 " +
                              std::to_string(rank) + " 127.0.0.1"));
            QVERIFY(got.count(std::to_string(rank) + "E err"));
        }
        lo.argv = {"/nonexistent/kto-worker"};
        QCOMPARE(kto::launch_local_workers(lo).exit_code, 127);
    }

    void killing_the_launcher_kills_its_workers() {
        QTemporaryDir tmp;
        const std::string dir = tmp.path().toStdString();
        const pid_t launcher = ::fork();
        QVERIFY(launcher >= 0);
        if (launcher == 0) {
            const std::string exe = kto::current_executable();
            ::setenv("KTO_DIST_TEST_WORKER", "sleepers", 1);
            ::setenv("KTO_DIST_TEST_DIR", dir.c_str(), 1);
            ::setenv("WORLD_SIZE", "1", 1);
            ::setenv("RANK", "0", 1);
            ::execl(exe.c_str(), exe.c_str(), static_cast<char*>(nullptr));
            ::_exit(127);
        }
        std::vector<pid_t> sleepers;
        const auto deadline = Clock::now() + std::chrono::seconds(20);
        while (Clock::now() < deadline && sleepers.size() < 2) {
            sleepers.clear();
            for (int r = 0; r < 2; ++r) {
                const auto t = read_text(dir + "/sleeper-" + std::to_string(r));
                if (!t.empty() && t.back() == '\n') sleepers.push_back(std::stoi(t));
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        QCOMPARE(sleepers.size(), size_t(2));
        ::kill(launcher, SIGKILL);
        int status = 0;
        ::waitpid(launcher, &status, 0);
        bool gone = false;
        for (int i = 0; i < 100 && !gone; ++i) {
            gone = process_gone(sleepers[0]) && process_gone(sleepers[1]);
            if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        if (!gone) {
            ::kill(sleepers[0], SIGKILL);
            ::kill(sleepers[1], SIGKILL);
        }
        QVERIFY2(gone, "workers outlived their launcher");
    }
};

// Qt Test's main, plus the worker mode: the same executable is each worker process.
int main(int argc, char** argv) {
    if (const char* scenario = std::getenv("KTO_DIST_TEST_WORKER")) return run_worker(scenario);
    QCoreApplication app(argc, argv);
    TestDistributed tc;
    QTEST_SET_MAIN_SOURCE_PATH
    return QTest::qExec(&tc, argc, argv);
}

#include "test_distributed.moc"
