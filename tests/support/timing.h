#pragma once
// Limits of the responsiveness checks (GUI-thread stalls, repaint CPU time), scaled for slow
// builds: KTO_TEST_TIME_SCALE (CTest sets it in sanitizer builds, whose instrumented code runs
// several times slower) multiplies them. A real stall (a denoising or training step, a blocking
// query on the GUI thread) is longer than any scaled limit.
#include <cstdlib>
#include <ctime>

namespace kto::test {

inline double time_scale() {
    const char* v = std::getenv("KTO_TEST_TIME_SCALE");
    const double s = (v && *v) ? std::atof(v) : 1.0;
    return s > 1.0 ? s : 1.0;
}

inline long long scaled_ms(long long ms) { return static_cast<long long>(static_cast<double>(ms) * time_scale()); }

// CPU time the calling thread has used, in ms: what a check on work done on the GUI thread
// measures, however busy the machine is.
inline long long thread_cpu_ms() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<long long>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

}  // namespace kto::test
