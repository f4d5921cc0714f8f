#include "core/train/dist_launcher.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <thread>

#include "core/common/error.h"

extern char** environ;

namespace kto {

namespace {

volatile sig_atomic_t g_forward_signal = 0;

void remember_signal(int sig) { g_forward_signal = sig; }

struct Worker {
    pid_t pid = -1;
    int out_fd = -1, err_fd = -1;
    std::string out_buf, err_buf;
    bool running = false;
    int status = 0;
};

// Emits every complete line of `buf` (a carriage return also ends a line: progress bars).
void drain_lines(std::string& buf, bool flush, const std::function<void(const std::string&)>& emit) {
    size_t start = 0;
    for (size_t i = 0; i < buf.size(); ++i) {
        if (buf[i] == '\n' || buf[i] == '\r') {
            if (i > start) emit(buf.substr(start, i - start));
            start = i + 1;
        }
    }
    buf.erase(0, start);
    if (flush && !buf.empty()) {
        emit(buf);
        buf.clear();
    }
}

int decode_status(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return 1;
}

std::string describe_status(int status) {
    if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status))
        return std::string("was killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
               strsignal(WTERMSIG(status)) + ")";
    return "stopped";
}

}  // namespace

int find_free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw Error(std::string("cannot create a socket to find a free port: ") + std::strerror(errno));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        const std::string why = std::strerror(errno);
        ::close(fd);
        throw Error("cannot find a free TCP port on 127.0.0.1: " + why);
    }
    ::close(fd);
    return ntohs(addr.sin_port);
}

std::string current_executable() {
    char buf[4096];
    const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
    if (n <= 0) throw Error(std::string("cannot find the running executable (/proc/self/exe): ") + std::strerror(errno));
    return std::string(buf, static_cast<size_t>(n));
}

LocalLaunchResult launch_local_workers(const LocalLaunchOptions& options) {
    if (options.nproc < 1) throw Error("--nproc must be at least 1, got " + std::to_string(options.nproc));
    if (options.argv.empty()) throw Error("launch_local_workers: no program to run");
    auto on_line = options.on_line ? options.on_line : [](int rank, bool is_err, const std::string& line) {
        (is_err ? std::cerr : std::cout) << "[rank " << rank << "] " << line << std::endl;
    };
    auto on_message = options.on_message ? options.on_message
                                         : [](const std::string& m) { std::cerr << "[launcher] " << m << std::endl; };

    LocalLaunchResult result;
    result.master_port = options.master_port > 0 ? options.master_port : find_free_port();
    const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    // Like torchrun: split the cores between the workers unless the user chose a thread count.
    const std::string threads = std::to_string(std::max(1, hw / options.nproc));

    struct sigaction forward{}, old_int{}, old_term{}, old_hup{};
    forward.sa_handler = remember_signal;
    sigemptyset(&forward.sa_mask);
    g_forward_signal = 0;
    sigaction(SIGINT, &forward, &old_int);
    sigaction(SIGTERM, &forward, &old_term);
    sigaction(SIGHUP, &forward, &old_hup);
    const pid_t launcher_pid = ::getpid();

    std::vector<Worker> workers(static_cast<size_t>(options.nproc));
    auto kill_all = [&](int sig) {
        for (auto& w : workers)
            if (w.running) ::kill(w.pid, sig);
    };
    auto restore = [&] {
        sigaction(SIGINT, &old_int, nullptr);
        sigaction(SIGTERM, &old_term, nullptr);
        sigaction(SIGHUP, &old_hup, nullptr);
    };

    for (int r = 0; r < options.nproc; ++r) {
        int out[2], err[2];
        if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
            kill_all(SIGKILL);
            restore();
            throw Error(std::string("cannot create pipes for worker output: ") + std::strerror(errno));
        }
        // Everything the child needs is prepared before fork: only async-signal-safe calls after it.
        std::vector<std::string> env_strings;
        std::map<std::string, std::string> env;
        for (char** e = environ; *e; ++e) {
            std::string kv(*e);
            const auto eq = kv.find('=');
            if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
        }
        if (!env.count("KTO_THREADS")) env["KTO_THREADS"] = threads;
        if (!env.count("OMP_NUM_THREADS")) env["OMP_NUM_THREADS"] = threads;
        for (const auto& [k, v] : options.extra_env) env[k] = v;
        env["RANK"] = std::to_string(r);
        env["LOCAL_RANK"] = std::to_string(r);
        env["WORLD_SIZE"] = std::to_string(options.nproc);
        env["LOCAL_WORLD_SIZE"] = std::to_string(options.nproc);
        env["MASTER_ADDR"] = "127.0.0.1";
        env["MASTER_PORT"] = std::to_string(result.master_port);
        for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
        std::vector<char*> envp, argv;
        for (auto& s : env_strings) envp.push_back(s.data());
        envp.push_back(nullptr);
        std::vector<std::string> args = options.argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);

        const pid_t pid = ::fork();
        if (pid < 0) {
            kill_all(SIGKILL);
            restore();
            throw Error(std::string("cannot start worker process: ") + std::strerror(errno));
        }
        if (pid == 0) {
            // The worker dies with the launcher, even when the launcher is SIGKILLed.
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != launcher_pid) ::_exit(128 + SIGKILL);
            struct sigaction dfl{};
            dfl.sa_handler = SIG_DFL;
            sigaction(SIGINT, &dfl, nullptr);
            sigaction(SIGTERM, &dfl, nullptr);
            sigaction(SIGHUP, &dfl, nullptr);
            ::dup2(out[1], STDOUT_FILENO);
            ::dup2(err[1], STDERR_FILENO);
            ::execvpe(argv[0], argv.data(), envp.data());
            const char msg[] = "cannot execute the worker program\n";
            ssize_t ignored = ::write(STDERR_FILENO, msg, sizeof(msg) - 1);
            (void)ignored;
            ::_exit(127);
        }
        ::close(out[1]);
        ::close(err[1]);
        auto& w = workers[static_cast<size_t>(r)];
        w.pid = pid;
        w.out_fd = out[0];
        w.err_fd = err[0];
        w.running = true;
    }
    on_message("started " + std::to_string(options.nproc) + " workers (MASTER_ADDR=127.0.0.1 MASTER_PORT=" +
               std::to_string(result.master_port) + ", " + threads + " threads each)");

    using Clock = std::chrono::steady_clock;
    enum class Phase { running, grace, terminated, killed } phase = Phase::running;
    Clock::time_point deadline{}, pipes_deadline{};
    result.worker_status.assign(workers.size(), 0);
    int forwarded = 0;

    for (;;) {
        // Output first, so a worker's last words come before the launcher's verdict.
        std::vector<pollfd> fds;
        std::vector<std::pair<size_t, bool>> who;
        for (size_t i = 0; i < workers.size(); ++i) {
            if (workers[i].out_fd >= 0) { fds.push_back({workers[i].out_fd, POLLIN, 0}); who.emplace_back(i, false); }
            if (workers[i].err_fd >= 0) { fds.push_back({workers[i].err_fd, POLLIN, 0}); who.emplace_back(i, true); }
        }
        if (!fds.empty()) {
            const int n = ::poll(fds.data(), fds.size(), 100);
            if (n < 0 && errno != EINTR) break;
            for (size_t k = 0; n > 0 && k < fds.size(); ++k) {
                if (!(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
                auto& w = workers[who[k].first];
                const bool is_err = who[k].second;
                int& fd = is_err ? w.err_fd : w.out_fd;
                std::string& buf = is_err ? w.err_buf : w.out_buf;
                char chunk[8192];
                const ssize_t got = ::read(fd, chunk, sizeof(chunk));
                const int rank = static_cast<int>(who[k].first);
                auto emit = [&](const std::string& line) { on_line(rank, is_err, line); };
                if (got > 0) {
                    buf.append(chunk, static_cast<size_t>(got));
                    drain_lines(buf, false, emit);
                } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
                    drain_lines(buf, true, emit);
                    ::close(fd);
                    fd = -1;
                }
            }
        } else {
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }

        if (g_forward_signal != 0 && forwarded != g_forward_signal) {
            forwarded = g_forward_signal;
            on_message(std::string("received ") + strsignal(forwarded) + ", stopping the workers");
            kill_all(forwarded);
            if (phase == Phase::running) {
                phase = Phase::grace;
                deadline = Clock::now() + options.grace;
            }
        }

        bool any_running = false;
        for (size_t i = 0; i < workers.size(); ++i) {
            auto& w = workers[i];
            if (!w.running) continue;
            int status = 0;
            const pid_t p = ::waitpid(w.pid, &status, WNOHANG);
            if (p == 0) { any_running = true; continue; }
            w.running = false;
            w.status = status;
            result.worker_status[i] = p < 0 ? 1 : decode_status(status);
            const bool failed = result.worker_status[i] != 0;
            if (failed && result.first_failed_rank < 0 && phase != Phase::terminated && phase != Phase::killed) {
                result.first_failed_rank = static_cast<int>(i);
                result.exit_code = result.worker_status[i];
                if (phase == Phase::running) {
                    phase = Phase::grace;
                    deadline = Clock::now() + options.grace;
                    on_message("rank " + std::to_string(i) + " " + describe_status(status) +
                               "; the other workers get " + std::to_string(options.grace.count() / 1000) +
                               " s to stop on their own before they are terminated");
                }
            }
        }
        const bool pipes_open = std::any_of(workers.begin(), workers.end(),
                                            [](const Worker& w) { return w.out_fd >= 0 || w.err_fd >= 0; });
        if (!any_running && !pipes_open) break;
        if (!any_running) {
            // A grandchild may hold a pipe open: stop reading shortly after the workers are gone.
            if (pipes_deadline == Clock::time_point{}) pipes_deadline = Clock::now() + std::chrono::seconds(2);
            if (Clock::now() >= pipes_deadline)
                for (auto& w : workers) {
                    if (w.out_fd >= 0) { ::close(w.out_fd); w.out_fd = -1; }
                    if (w.err_fd >= 0) { ::close(w.err_fd); w.err_fd = -1; }
                }
            continue;
        }
        if (phase == Phase::grace && Clock::now() >= deadline) {
            if (any_running) on_message("terminating the remaining workers (SIGTERM)");
            kill_all(SIGTERM);
            phase = Phase::terminated;
            deadline = Clock::now() + std::chrono::seconds(5);
        } else if (phase == Phase::terminated && Clock::now() >= deadline) {
            on_message("workers still running after SIGTERM: SIGKILL");
            kill_all(SIGKILL);
            phase = Phase::killed;
        }
    }
    for (auto& w : workers) {
        if (w.running) {
            ::kill(w.pid, SIGKILL);
            int status = 0;
            ::waitpid(w.pid, &status, 0);
        }
        if (w.out_fd >= 0) ::close(w.out_fd);
        if (w.err_fd >= 0) ::close(w.err_fd);
    }
    restore();
    if (result.exit_code == 0 && forwarded != 0) result.exit_code = 128 + forwarded;
    if (result.exit_code != 0)
        on_message("run failed: rank " + std::to_string(std::max(0, result.first_failed_rank)) +
                   " exited with status " + std::to_string(result.exit_code));
    return result;
}

}  // namespace kto
