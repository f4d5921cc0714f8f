#pragma once
// Starts N local worker processes of a data-parallel run the way torchrun does on one machine: each
// is the given program with RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1
// and a free MASTER_PORT in its environment. Their output comes back line by line, prefixed by rank;
// when one exits with an error the others get `grace` to notice (their own clear message) and are
// then terminated; when the launcher itself is killed the workers die with it (PR_SET_PDEATHSIG);
// SIGINT/SIGTERM sent to the launcher are forwarded. POSIX only. Not thread-safe: one launch at a
// time per process (it installs signal handlers for its duration).
#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace kto {

struct LocalLaunchOptions {
    int nproc = 2;
    std::vector<std::string> argv;                 // argv[0]: the program (absolute path or found in PATH)
    std::map<std::string, std::string> extra_env;  // set in every worker on top of this environment
    int master_port = 0;                           // 0: a free port on 127.0.0.1
    std::chrono::milliseconds grace{15000};        // after a failure, before SIGTERM (then SIGKILL)
    // Receives each output line (without its newline); default: "[rank R] line" to stdout / stderr.
    std::function<void(int rank, bool is_stderr, const std::string& line)> on_line;
    // Informational lines of the launcher itself; default: "[launcher] ..." to stderr.
    std::function<void(const std::string& message)> on_message;
};

struct LocalLaunchResult {
    int exit_code = 0;                 // 0 when every worker succeeded, else the first failure's code
    int first_failed_rank = -1;
    std::vector<int> worker_status;    // per rank: exit code, or 128 + signal number
    int master_port = 0;
};

// Runs the workers to completion. Throws kto::Error when a worker cannot be started.
LocalLaunchResult launch_local_workers(const LocalLaunchOptions& options);

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0 and released).
int find_free_port();

// The path of the running executable (/proc/self/exe), for re-executing it as a worker.
std::string current_executable();

}  // namespace kto
