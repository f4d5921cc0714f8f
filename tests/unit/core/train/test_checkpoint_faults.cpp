// Checkpoint writes under faults (issue 9), on the tiny-sd reference model (patterns of
// test_training_job.cpp). Each fault hits a child process (this executable re-run with
// KTO_FAULT_CHILD set, so no torch state crosses a fork):
//   - disk full while writing a checkpoint (RLIMIT_FSIZE, SIGXFSZ ignored, as ENOSPC would):
//     the job fails with an error naming the step, the cause and the checkpoint to resume from;
//     no partial checkpoint folder is left; the earlier checkpoints are intact and resume works;
//   - SIGKILL while a checkpoint is being written: no half-written checkpoint is visible, and the
//     run resumes from the last complete one to the same weights as an uninterrupted run.
#include <QtTest/QtTest>
#include <torch/torch.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "core/common/error.h"
#include "core/io/safetensors.h"
#include "core/train/trainer.h"
#include "tests/support/test_paths.h"
#include "tests/support/training_fixtures.h"

namespace fs = std::filesystem;

namespace {

using kto::test::count_lines;

// As test_training_job's runs, keeping every checkpoint, without previews, resuming when possible.
kto::TrainRequest request(const fs::path& root, const std::string& run, int64_t steps) {
    kto::TrainRequest r = kto::test::tiny_train_request(root, run, steps);
    r.options.keep_last = 10;
    r.options.preview_every = 0;
    r.resume = true;
    return r;
}

std::vector<std::string> entries(const fs::path& dir) {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
}

// Child side: resume (or start) run KTO_FAULT_RUN to KTO_FAULT_STEPS steps, under a file-size
// limit of KTO_FAULT_FSIZE bytes when set. Exit 0: done; 1: kto::Error (message on stderr).
int run_child() {
    const fs::path root = std::getenv("KTO_FAULT_ROOT");
    if (const char* fsize = std::getenv("KTO_FAULT_FSIZE")) {
        ::signal(SIGXFSZ, SIG_IGN);  // write() fails with EFBIG, as it would with ENOSPC
        const rlim_t n = std::strtoull(fsize, nullptr, 10);
        const rlimit limit{n, n};
        if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) return 3;
    }
    try {
        kto::TrainingJob(request(root, std::getenv("KTO_FAULT_RUN"), std::atoll(std::getenv("KTO_FAULT_STEPS")))).run();
    } catch (const kto::Error& e) {
        std::cerr << "ERROR: " << e.what() << std::endl;
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "not a kto::Error: " << e.what() << std::endl;
        return 2;
    }
    return 0;
}

struct Child {
    pid_t pid = -1;
    int err_fd = -1;  // the child's stderr
};

Child spawn(const fs::path& root, const std::string& run, int steps, const std::string& fsize = "") {
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) env.emplace_back(*e);
    env.push_back("KTO_FAULT_CHILD=1");
    env.push_back("KTO_FAULT_ROOT=" + root.string());
    env.push_back("KTO_FAULT_RUN=" + run);
    env.push_back("KTO_FAULT_STEPS=" + std::to_string(steps));
    if (!fsize.empty()) env.push_back("KTO_FAULT_FSIZE=" + fsize);
    std::vector<char*> envp;
    for (auto& s : env) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::string self = fs::read_symlink("/proc/self/exe").string();
    char* argv[] = {self.data(), nullptr};
    int fds[2];
    if (::pipe(fds) != 0) return {};
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(fds[1], 2);
        ::close(fds[0]);
        ::close(fds[1]);
        ::execve(self.c_str(), argv, envp.data());
        ::_exit(127);
    }
    ::close(fds[1]);
    return {pid, fds[0]};
}

std::string drain(int fd) {
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    ::close(fd);
    return out;
}

// A tmp checkpoint folder being written, if any.
bool checkpoint_in_progress(const fs::path& ckpts) {
    std::error_code ec;
    for (fs::directory_iterator it(ckpts, ec), end; !ec && it != end; it.increment(ec))
        if (it->path().filename().string().rfind(".tmp-step-", 0) == 0) return true;
    return false;
}

void expect_same_weights(const std::string& a, const std::string& b) {
    const auto wa = kto::load_safetensors(a + "/unet/diffusion_pytorch_model.safetensors");
    const auto wb = kto::load_safetensors(b + "/unet/diffusion_pytorch_model.safetensors");
    QCOMPARE(wa.size(), wb.size());
    for (const auto& [k, v] : wa) QVERIFY2(torch::equal(v, wb.at(k)), k.c_str());
}

// Every visible checkpoint folder is complete: trainer_state.json present and the weights load.
void expect_only_complete_checkpoints(const fs::path& ckpts) {
    for (const auto& name : entries(ckpts)) {
        if (name.rfind("step-", 0) != 0) continue;
        QVERIFY2(fs::exists(ckpts / name / "trainer_state.json"), name.c_str());
        QVERIFY(!kto::load_safetensors((ckpts / name / "unet" / "diffusion_pytorch_model.safetensors").string()).empty());
    }
}

}  // namespace

class TestCheckpointFaults : public QObject {
    Q_OBJECT
    QTemporaryDir tmp_;
    fs::path root_;
    std::string straight_;  // final checkpoint of an uninterrupted 4-step run

private slots:
    void initTestCase() {
        root_ = tmp_.path().toStdString();
        kto::test::make_tiny_dataset(root_ / "data");
        const auto r = kto::TrainingJob(request(root_, "straight", 4)).run();
        QCOMPARE(r.steps_done, int64_t(4));
        straight_ = r.final_checkpoint;
    }

    void diskFullDuringCheckpoint() {
        const fs::path run = root_ / "runs" / "full";
        QCOMPARE(kto::TrainingJob(request(root_, "full", 2)).run().steps_done, int64_t(2));
        const auto unet_bytes = fs::file_size(run / "checkpoints" / "step-2" / "unet" / "diffusion_pytorch_model.safetensors");
        const auto optim_bytes = fs::file_size(run / "checkpoints" / "step-2" / "optimizer.safetensors");
        QVERIFY(optim_bytes > unet_bytes + 4096);
        // Room for the UNet weights but not the optimizer state: the checkpoint fails half-way.
        Child c = spawn(root_, "full", 4, std::to_string(unet_bytes + 4096));
        const std::string err = drain(c.err_fd);
        int status = 0;
        ::waitpid(c.pid, &status, 0);
        QVERIFY2(WIFEXITED(status) && WEXITSTATUS(status) == 1, err.c_str());
        QVERIFY2(err.find("checkpoint of step 3 failed") != std::string::npos, err.c_str());
        QVERIFY2(err.find("File too large") != std::string::npos, err.c_str());
        QVERIFY2(err.find("step-2") != std::string::npos && err.find("resume") != std::string::npos, err.c_str());

        QCOMPARE(entries(run / "checkpoints"), (std::vector<std::string>{"step-1", "step-2"}));
        QCOMPARE(kto::latest_checkpoint(run.string()), (run / "checkpoints" / "step-2").string());
        expect_only_complete_checkpoints(run / "checkpoints");

        // Space again: the run resumes from step 2 and ends where an uninterrupted run does.
        const auto r = kto::TrainingJob(request(root_, "full", 4)).run();
        QCOMPARE(r.steps_done, int64_t(4));
        QCOMPARE(count_lines(run / "metrics.jsonl"), 4);
        expect_same_weights(r.final_checkpoint, straight_);
    }

    void killedDuringCheckpointResumes() {
        // Kill as soon as a checkpoint folder is being written; retry when the write won the race.
        bool interrupted = false;
        fs::path run;
        for (int attempt = 0; attempt < 4 && !interrupted; ++attempt) {
            run = root_ / "runs" / ("killed-" + std::to_string(attempt));
            Child c = spawn(root_, run.filename().string(), 4);
            const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
            int status = 0;
            bool exited = false;
            while (std::chrono::steady_clock::now() < deadline) {
                if (checkpoint_in_progress(run / "checkpoints")) {
                    ::kill(c.pid, SIGKILL);
                    break;
                }
                if (::waitpid(c.pid, &status, WNOHANG) == c.pid) {
                    exited = true;
                    break;
                }
                std::this_thread::sleep_for(std::chrono::microseconds(200));
            }
            if (!exited) {
                ::kill(c.pid, SIGKILL);
                ::waitpid(c.pid, &status, 0);
            }
            const std::string err = drain(c.err_fd);
            QVERIFY2(!exited, ("the child ended before any checkpoint: " + err).c_str());
            interrupted = checkpoint_in_progress(run / "checkpoints");
        }
        QVERIFY2(interrupted, "no checkpoint write was interrupted in 4 attempts");

        // The half-written folder is hidden; every visible checkpoint is complete.
        expect_only_complete_checkpoints(run / "checkpoints");
        const std::string last = kto::latest_checkpoint(run.string());
        const auto r = kto::TrainingJob(request(root_, run.filename().string(), 4)).run();
        QCOMPARE(r.steps_done, int64_t(4));
        QCOMPARE(count_lines(run / "metrics.jsonl"), 4);
        for (const auto& name : entries(run / "checkpoints")) QVERIFY2(name.rfind(".tmp", 0) != 0, name.c_str());
        expect_same_weights(r.final_checkpoint, straight_);
        qInfo("killed mid-write; resumed from %s", last.empty() ? "step 0 (no complete checkpoint yet)" : last.c_str());
    }
};

int main(int argc, char** argv) {
    if (std::getenv("KTO_FAULT_CHILD")) return run_child();
    QCoreApplication app(argc, argv);
    TestCheckpointFaults t;
    return QTest::qExec(&t, argc, argv);
}
#include "test_checkpoint_faults.moc"
