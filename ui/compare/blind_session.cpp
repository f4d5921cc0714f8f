#include "ui/compare/blind_session.h"

#include <QRandomGenerator>
#include <algorithm>

namespace kto::ui {

BlindSession::BlindSession(int cells, std::uint64_t shuffle_seed) {
    QRandomGenerator rng(static_cast<quint32>(shuffle_seed ^ (shuffle_seed >> 32)));
    for (int i = 0; i < cells; ++i) pairs_.push_back({i, rng.bounded(2) == 0});
    // Fisher-Yates over the order too, so the same prompt's seeds do not come in a row.
    for (int i = cells - 1; i > 0; --i) std::swap(pairs_[i], pairs_[static_cast<int>(rng.bounded(i + 1))]);
}

void BlindSession::count(const Pair& p, VoteChoice c, int delta) {
    if (c == VoteChoice::Tie) {
        ties_ += delta;
        return;
    }
    const bool left_won = c == VoteChoice::Left;
    const bool a_won = left_won == p.a_on_left;
    (a_won ? a_wins_ : b_wins_) += delta;
}

BlindSession::Pair BlindSession::vote(VoteChoice choice) {
    const Pair p = current();
    choices_.push_back(choice);
    count(p, choice, +1);
    return p;
}

}  // namespace kto::ui
