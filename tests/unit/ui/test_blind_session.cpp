// The blind A/B bookkeeping: every pair once in a shuffled order, sides shuffled per pair,
// deterministic per seed, votes for left/right/tie mapped back to A and B, B's win rate (ties half).
#include <QtTest>

#include <set>

#include "ui/compare/blind_session.h"

using namespace kto::ui;

class TestBlindSession : public QObject {
    Q_OBJECT
private slots:
    void everyPairOnceShuffled() {
        const BlindSession s(40, 12345);
        QCOMPARE(s.size(), 40);
        std::set<int> cells;
        int a_left = 0, in_place = 0;
        for (int i = 0; i < s.size(); ++i) {
            cells.insert(s.pair(i).cell);
            a_left += s.pair(i).a_on_left ? 1 : 0;
            in_place += s.pair(i).cell == i ? 1 : 0;
        }
        QCOMPARE(int(cells.size()), 40);
        QCOMPARE(*cells.begin(), 0);
        QCOMPARE(*cells.rbegin(), 39);
        // Both orientations occur, and the order is not the cells' order.
        QVERIFY(a_left > 5 && a_left < 35);
        QVERIFY(in_place < 20);
        // The same seed replays the same round; another seed gives another.
        const BlindSession same(40, 12345), other(40, 54321);
        bool differs = false;
        for (int i = 0; i < 40; ++i) {
            QCOMPARE(same.pair(i).cell, s.pair(i).cell);
            QCOMPARE(same.pair(i).a_on_left, s.pair(i).a_on_left);
            differs = differs || other.pair(i).cell != s.pair(i).cell || other.pair(i).a_on_left != s.pair(i).a_on_left;
        }
        QVERIFY(differs);
    }

    void votesMapToSides() {
        BlindSession s(6, 7);
        QVERIFY(!s.finished());
        const VoteChoice votes[] = {VoteChoice::Left, VoteChoice::Right, VoteChoice::Tie,
                                    VoteChoice::Left, VoteChoice::Left, VoteChoice::Right};
        std::int64_t b = 0, a = 0, t = 0;
        for (VoteChoice v : votes) {
            const bool a_left = s.current().a_on_left;
            const int position = s.position();
            const BlindSession::Pair p = s.vote(v);
            QCOMPARE(p.a_on_left, a_left);
            QCOMPARE(s.position(), position + 1);
            if (v == VoteChoice::Tie) ++t;
            else if ((v == VoteChoice::Left) == a_left) ++a;
            else ++b;
        }
        QVERIFY(s.finished());
        QCOMPARE(s.b_wins(), b);
        QCOMPARE(s.a_wins(), a);
        QCOMPARE(s.ties(), t);
        const kto::WinRate w = s.b_win_rate();
        QCOMPARE(w.votes(), std::int64_t(6));
        QVERIFY(std::abs(w.rate - (b + 0.5 * t) / 6.0) < 1e-12);
        QVERIFY(w.low <= w.rate && w.rate <= w.high);
    }

    void emptyRound() {
        const BlindSession s;
        QVERIFY(s.finished());
        QCOMPARE(s.b_win_rate().rate, 0.5);
    }
};

QTEST_GUILESS_MAIN(TestBlindSession)
#include "test_blind_session.moc"
