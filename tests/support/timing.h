#pragma once
// Limits of the responsiveness checks (GUI-thread stalls, repaint CPU time), scaled for slow
// builds: KTO_TEST_TIME_SCALE (CTest sets it in sanitizer builds, whose instrumented code runs
// several times slower) multiplies them. A real stall (a denoising or training step, a blocking
// query on the GUI thread) is longer than any scaled limit.
#include <cstdlib>

namespace kto::test {

inline double time_scale() {
    const char* v = std::getenv("KTO_TEST_TIME_SCALE");
    const double s = (v && *v) ? std::atof(v) : 1.0;
    return s > 1.0 ? s : 1.0;
}

inline long long scaled_ms(long long ms) { return static_cast<long long>(static_cast<double>(ms) * time_scale()); }

}  // namespace kto::test
