#pragma once
// Win rate of one side of a blind A/B comparison with a 95% Wilson score interval. Ties count
// half a win (and half a loss): the rate is (wins + ties / 2) / (wins + losses + ties), and the
// interval is Wilson's with that fractional success count over all votes. Pure functions.
#include <cstdint>

namespace kto {

struct WinRate {
    std::int64_t wins = 0;
    std::int64_t losses = 0;
    std::int64_t ties = 0;
    double rate = 0.5;  // 0.5 with no votes (no evidence either way)
    double low = 0.0;   // the interval; [0, 1] with no votes
    double high = 1.0;
    std::int64_t votes() const { return wins + losses + ties; }
};

// Wilson score interval for `successes` out of `n` trials at normal quantile `z` (1.96: 95%).
// Returns {0, 1} for n <= 0. successes may be fractional (ties counted half).
struct Interval {
    double low = 0.0;
    double high = 1.0;
};
Interval wilson_interval(double successes, double n, double z = 1.96);

// The win rate of a side that won `wins`, lost `losses` and tied `ties` votes (ties count half).
WinRate win_rate(std::int64_t wins, std::int64_t losses, std::int64_t ties, double z = 1.96);

}  // namespace kto
