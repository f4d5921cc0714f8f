#pragma once
// Event-loop stall probe for GUI tests: a 10 ms timer on the GUI thread records the longest gap
// between two of its ticks. The time the thread spent runnable but waiting for a CPU (the machine
// busy with other tests: /proc/thread-self/schedstat's second field) is left out, so the figure is
// what the app cost its GUI thread: work run on it, or a wait that blocked it.
#include <QElapsedTimer>
#include <QObject>
#include <QTimer>

#include <algorithm>
#include <cstdio>

namespace kto::test {

// Nanoseconds the calling thread has waited on a run queue so far; -1 where the kernel does not say.
inline long long run_queue_wait_ns() {
    std::FILE* f = std::fopen("/proc/thread-self/schedstat", "r");
    if (!f) return -1;
    unsigned long long cpu = 0, wait = 0;
    const int n = std::fscanf(f, "%llu %llu", &cpu, &wait);
    std::fclose(f);
    return n == 2 ? static_cast<long long>(wait) : -1;
}

class StallProbe : public QObject {
public:
    StallProbe() {
        timer_.setInterval(10);
        connect(&timer_, &QTimer::timeout, this, [this] { tick(); });
        clock_.start();
        last_wait_ns_ = run_queue_wait_ns();
        timer_.start();
    }
    void stop() { timer_.stop(); }
    // The longest gap so far, in ms, less the run-queue wait within it.
    qint64 worst() const { return worst_; }

private:
    void tick() {
        const qint64 now = clock_.elapsed();
        const long long wait_ns = run_queue_wait_ns();
        qint64 gap = now - last_;
        if (wait_ns >= 0 && last_wait_ns_ >= 0) gap -= (wait_ns - last_wait_ns_) / 1000000;
        worst_ = std::max(worst_, gap);
        last_ = now;
        last_wait_ns_ = wait_ns;
    }

    QElapsedTimer clock_;
    QTimer timer_;
    qint64 last_ = 0, worst_ = 0;
    long long last_wait_ns_ = -1;
};

}  // namespace kto::test
