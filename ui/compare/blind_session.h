#pragma once
// The bookkeeping of a blind A/B round, free of widgets: pairs in a shuffled order, sides shuffled
// per pair (so neither position nor order gives the models away), votes for left / right / tie
// mapped back to A and B, and B's running win rate with its 95% Wilson interval (ties count half;
// core/compare/win_rate.h). Deterministic for a given shuffle seed, so tests can replay it.
#include <QVector>
#include <cstdint>

#include "core/compare/win_rate.h"
#include "ui/store/comparison_records.h"

namespace kto::ui {

class BlindSession {
public:
    struct Pair {
        int cell = 0;           // index into the comparison's cells
        bool a_on_left = true;  // which side is shown on the left
    };

    BlindSession() = default;
    BlindSession(int cells, std::uint64_t shuffle_seed);

    int size() const { return static_cast<int>(pairs_.size()); }
    int position() const { return static_cast<int>(choices_.size()); }  // pairs voted so far
    bool finished() const { return position() >= size(); }
    const Pair& current() const { return pairs_.at(position()); }  // requires !finished()
    const Pair& pair(int i) const { return pairs_.at(i); }

    // Records a vote for the current pair and moves on; returns the pair voted on.
    Pair vote(VoteChoice choice);

    std::int64_t b_wins() const { return b_wins_; }
    std::int64_t a_wins() const { return a_wins_; }
    std::int64_t ties() const { return ties_; }
    WinRate b_win_rate() const { return win_rate(b_wins_, a_wins_, ties_); }

private:
    void count(const Pair& p, VoteChoice c, int delta);
    QVector<Pair> pairs_;
    QVector<VoteChoice> choices_;
    std::int64_t b_wins_ = 0, a_wins_ = 0, ties_ = 0;
};

}  // namespace kto::ui
