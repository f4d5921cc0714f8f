// The scorer reads clean renders back almost perfectly; the synthetic tastes behave as named.
#include <QtTest>

#include "core/common/error.h"
#include "core/shapes/scorer.h"
#include "core/shapes/taste.h"

using namespace kto::shapes;

namespace {
Scene one_shape(ShapeClass cls, Colour colour, Size size, Position pos, Colour bg, uint64_t seed = 1) {
    Rng jitter(seed);
    Scene s;
    s.background = bg;
    s.shapes.push_back(place_shape(cls, colour, size, pos, jitter));
    return s;
}
}  // namespace

class TestShapesScorer : public QObject {
    Q_OBJECT
private slots:
    void readsCleanRendersBack() {
        const int n = 1500;
        int bg = 0, colour = 0, cls = 0, size = 0, pos = 0, count = 0, shapes = 0;
        std::map<std::string, int> confusions;
        for (uint64_t i = 0; i < uint64_t(n); ++i) {
            const Scene s = scene_for_index(2024, i);
            const Fidelity f = fidelity(render(s), full_request(s));
            bg += f.background.right;
            count += f.count.right;
            colour += f.colour.right;
            cls += f.cls.right;
            size += f.size.right;
            pos += f.position.right;
            shapes += f.cls.asked;
            QCOMPARE(int(f.matched.size()), f.cls.asked);
            if (s.shapes.size() == 2 && f.colour.right == 2) QVERIFY(f.matched[0] != f.matched[1]);
            if (f.cls.right != f.cls.asked) {
                const SceneEstimate e = estimate_scene(render(s));
                confusions[name(s.shapes[0].cls) + "->" +
                           (e.shapes.empty() ? std::string("none") : name(e.shapes[0].cls))]++;
            }
        }
        for (const auto& [k, v] : confusions) qInfo("class confusion %s: %d", k.c_str(), v);
        qInfo("background %d/%d colour %d/%d class %d/%d size %d/%d position %d/%d count %d/%d", bg, n,
              colour, shapes, cls, shapes, size, shapes, pos, shapes, count, n);
        QCOMPARE(bg, n);
        QCOMPARE(count, n);
        QCOMPARE(colour, shapes);
        QVERIFY(cls >= 0.98 * shapes);
        QVERIFY(size >= 0.98 * shapes);
        QVERIFY(pos >= 0.98 * shapes);
    }

    void flagsWrongAttributes() {
        const Image img = render(one_shape(ShapeClass::Star, Colour::Yellow, Size::Large,
                                           Position::Centre, Colour::Purple));
        QVERIFY(fidelity(img, "a large yellow star in the centre on a purple background").all_right());
        const Fidelity wrong = fidelity(img, "a small blue circle on the left on a white background");
        QCOMPARE(wrong.colour.right, 0);
        QCOMPARE(wrong.cls.right, 0);
        QCOMPARE(wrong.size.right, 0);
        QCOMPARE(wrong.position.right, 0);
        QCOMPARE(wrong.background.right, 0);
        QCOMPARE(wrong.colour.asked, 1);
        // Only what the prompt names is checked.
        const Fidelity partial = fidelity(img, "a star");
        QCOMPARE(partial.colour.asked, 0);
        QCOMPARE(partial.background.asked, 0);
        QCOMPARE(partial.cls.right, 1);
        // A two-shape prompt on a one-shape image misses a shape.
        const Fidelity two = fidelity(img, "a yellow star and a red circle");
        QCOMPARE(two.count.right, 0);
        QCOMPARE(two.colour.right, 1);
        // Each requested shape names the blob it was judged against; the missing one has none.
        QCOMPARE(two.matched, (std::vector<int>{0, -1}));
        QCOMPARE(fidelity(img, "a red circle and a yellow star").matched, (std::vector<int>{-1, 0}));
        QCOMPARE(partial.matched, (std::vector<int>{0}));
        QVERIFY_EXCEPTION_THROWN(fidelity(img, "a dog"), kto::Error);
    }

    void blankImageHasNoShapes() {
        Scene s;
        s.background = Colour::Green;
        const SceneEstimate e = estimate_scene(render(s));
        QVERIFY(e.background == Colour::Green);
        QVERIFY(e.shapes.empty());
        QCOMPARE(e.foreground_fraction, 0.0);
        QVERIFY(!fidelity(render(s), "a circle").all_right());
    }

    void tastes() {
        const auto large = make_taste("likes-large-shapes");
        const auto warm = make_taste("likes-warm-colours");
        const auto match = make_taste("dislikes-prompt-mismatch");
        const Image big_red = render(one_shape(ShapeClass::Circle, Colour::Red, Size::Large,
                                               Position::Centre, Colour::Blue));
        const Image small_blue = render(one_shape(ShapeClass::Square, Colour::Blue, Size::Small,
                                                  Position::Left, Colour::Yellow));
        // Pixels, not words: the caption does not change these two.
        QVERIFY(large->likes(big_red, "a small circle"));
        QVERIFY(!large->likes(small_blue, "a large square"));
        QVERIFY(warm->likes(big_red, "a blue circle"));
        QVERIFY(!warm->likes(small_blue, "a red square"));  // the yellow is background, not shape
        QVERIFY(match->likes(big_red, "a large red circle on a blue background"));
        QVERIFY(!match->likes(big_red, "a large green circle on a blue background"));
        QVERIFY(match->likes(small_blue, "a small blue square on the left"));
        QVERIFY(!match->likes(small_blue, "a blue triangle"));
        QVERIFY_EXCEPTION_THROWN(make_taste("likes-dogs"), kto::Error);

        // Over many renders, each taste splits the set (neither always nor never likes).
        int liked_large = 0, liked_warm = 0, liked_match = 0;
        for (uint64_t i = 0; i < 300; ++i) {
            const Scene s = scene_for_index(77, i);
            const Image img = render(s);
            const std::string prompt = format_caption(full_request(s));
            liked_large += large->likes(img, prompt);
            liked_warm += warm->likes(img, prompt);
            liked_match += match->likes(img, prompt);
            bool any_warm = false, all_warm = true;
            for (const auto& sh : s.shapes) any_warm |= is_warm(sh.colour), all_warm &= is_warm(sh.colour);
            if (all_warm) QVERIFY(warm->likes(img, prompt));
            if (!any_warm) QVERIFY(!warm->likes(img, prompt));
        }
        QVERIFY(liked_large > 50 && liked_large < 250);
        QVERIFY(liked_warm > 50 && liked_warm < 250);
        QVERIFY(liked_match >= 290);  // clean renders match their full captions
    }
};

QTEST_GUILESS_MAIN(TestShapesScorer)
#include "test_shapes_scorer.moc"
