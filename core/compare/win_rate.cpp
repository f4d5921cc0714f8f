#include "core/compare/win_rate.h"

#include <algorithm>
#include <cmath>

namespace kto {

// Wilson (1927): centre (p + z^2/2n) / (1 + z^2/n), half-width z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n).
Interval wilson_interval(double successes, double n, double z) {
    if (!(n > 0.0)) return {};
    const double p = std::clamp(successes / n, 0.0, 1.0);
    const double z2 = z * z;
    const double denom = 1.0 + z2 / n;
    const double centre = (p + z2 / (2.0 * n)) / denom;
    const double half = z * std::sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denom;
    return {std::max(0.0, centre - half), std::min(1.0, centre + half)};
}

WinRate win_rate(std::int64_t wins, std::int64_t losses, std::int64_t ties, double z) {
    WinRate w;
    w.wins = std::max<std::int64_t>(0, wins);
    w.losses = std::max<std::int64_t>(0, losses);
    w.ties = std::max<std::int64_t>(0, ties);
    const double n = static_cast<double>(w.votes());
    if (n <= 0.0) return w;
    const double successes = static_cast<double>(w.wins) + 0.5 * static_cast<double>(w.ties);
    w.rate = successes / n;
    const Interval i = wilson_interval(successes, n, z);
    w.low = i.low;
    w.high = i.high;
    return w;
}

}  // namespace kto
