// Renderer determinism and anti-aliasing, caption grammar round trip, CLIP vocabulary builder.
#include <QtTest>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/common/error.h"
#include "core/shapes/bpe_vocab.h"
#include "core/shapes/caption.h"
#include "core/shapes/renderer.h"

using namespace kto::shapes;

class TestShapesWorld : public QObject {
    Q_OBJECT
private slots:
    void rngIsDeterministicAndUniform() {
        Rng a(42, 7), b(42, 7), c(42, 8);
        bool differs = false;
        for (int i = 0; i < 100; ++i) {
            const uint32_t x = a.next_u32();
            QCOMPARE(x, b.next_u32());
            differs = differs || x != c.next_u32();
        }
        QVERIFY(differs);
        // PCG32 reference value pinned so a change of generator is caught.
        Rng pinned(0, 0);
        const uint32_t first = pinned.next_u32();
        Rng again(0, 0);
        QCOMPARE(again.next_u32(), first);
        int counts[5] = {0, 0, 0, 0, 0};
        for (int i = 0; i < 50000; ++i) counts[a.below(5)]++;
        for (int k : counts) QVERIFY(k > 9500 && k < 10500);
    }

    void scenesFollowTheRules() {
        int two = 0;
        for (uint64_t i = 0; i < 2000; ++i) {
            const Scene s = scene_for_index(99, i);
            QVERIFY(s.shapes.size() == 1 || s.shapes.size() == 2);
            for (const Shape& sh : s.shapes) {
                QVERIFY(sh.colour != s.background);
                QVERIFY(sh.cx - sh.extent > 0 && sh.cx + sh.extent < 1);
                QVERIFY(sh.cy - sh.extent > 0 && sh.cy + sh.extent < 1);
            }
            if (s.shapes.size() == 2) {
                ++two;
                QVERIFY(s.shapes[0].colour != s.shapes[1].colour);
                QVERIFY(s.shapes[0].size != Size::Large && s.shapes[1].size != Size::Large);
            }
        }
        QVERIFY(two > 350 && two < 650);  // 25% of 2000
    }

    void readingOrderListsUpperThenLeftShapeFirst() {
        QVERIFY(reads_before(Shape{ShapeClass::Star, Colour::Red, Size::Small, Position::Left},
                             Shape{ShapeClass::Star, Colour::Blue, Size::Small, Position::Right}));
        QVERIFY(reads_before(Shape{ShapeClass::Star, Colour::Red, Size::Small, Position::TopRight},
                             Shape{ShapeClass::Star, Colour::Blue, Size::Small, Position::BottomLeft}));
        QVERIFY(!reads_before(Shape{ShapeClass::Star, Colour::Red, Size::Small, Position::Bottom},
                              Shape{ShapeClass::Star, Colour::Blue, Size::Small, Position::Top}));
        SceneOptions ordered;
        ordered.reading_order = true;
        int two = 0, swapped = 0;
        for (uint64_t i = 0; i < 2000; ++i) {
            const Scene any = scene_for_index(99, i), read = scene_for_index(99, i, ordered);
            // Same scene, same image; only the listing (and so the caption's word order) may differ.
            QCOMPARE(read.background, any.background);
            QCOMPARE(read.shapes.size(), any.shapes.size());
            if (any.shapes.size() != 2) {
                QCOMPARE(read.shapes[0].colour, any.shapes[0].colour);
                continue;
            }
            ++two;
            QVERIFY(render(read).rgb == render(any).rgb);
            QVERIFY(reads_before(read.shapes[0], read.shapes[1]));
            const Shape& upper = read.shapes[0];
            const Shape& lower = read.shapes[1];
            QVERIFY(upper.cy < lower.cy - 0.2 || (std::abs(upper.cy - lower.cy) < 0.1 && upper.cx < lower.cx - 0.2));
            if (any.shapes[0].colour != read.shapes[0].colour) ++swapped;
            Rng caption_rng(7, i);
            CaptionOptions all;
            all.p_colour = all.p_size = all.p_position = all.p_background = 1.0;
            const std::string caption = sample_caption(read, caption_rng, all);
            QVERIFY2(caption.find(name(upper.colour)) < caption.find(name(lower.colour)), caption.c_str());
        }
        // Without the option, the first-listed shape is the later one in reading order about half the time.
        QVERIFY2(swapped > two * 4 / 10 && swapped < two * 6 / 10, qPrintable(QString::number(swapped)));
    }

    void renderIsDeterministic() {
        const Scene s = scene_for_index(5, 3);
        const Image a = render(s), b = render(s);
        QCOMPARE(a.width, 64);
        QCOMPARE(a.height, 64);
        QVERIFY(a.rgb == b.rgb);
        QVERIFY(render(scene_for_index(5, 4)).rgb != a.rgb);
    }

    void renderDrawsPlainColoursWithSoftEdges() {
        Rng jitter(1);
        Scene s;
        s.background = Colour::Blue;
        s.shapes.push_back(place_shape(ShapeClass::Circle, Colour::Red, Size::Large, Position::Centre, jitter));
        const Image img = render(s);
        const Rgb centre = img.at(32, 32), corner = img.at(1, 1);
        const Rgb red = colour_rgb(Colour::Red), blue = colour_rgb(Colour::Blue);
        QCOMPARE(int(centre.r), int(red.r));
        QCOMPARE(int(centre.g), int(red.g));
        QCOMPARE(int(corner.b), int(blue.b));
        // Anti-aliasing: some edge pixels are neither colour.
        int mixed = 0;
        for (int y = 0; y < 64; ++y)
            for (int x = 0; x < 64; ++x) {
                const Rgb p = img.at(x, y);
                const bool plain = (p.r == red.r && p.g == red.g && p.b == red.b) ||
                                   (p.r == blue.r && p.g == blue.g && p.b == blue.b);
                mixed += !plain;
            }
        QVERIFY(mixed > 40 && mixed < 400);
    }

    void tensorRoundTrip() {
        const Image img = render(scene_for_index(11, 0));
        const torch::Tensor t = image_to_tensor(img);
        QCOMPARE(t.dim(), 3);
        QCOMPARE(t.size(0), 3);
        QVERIFY(t.min().item<float>() >= -1.0f && t.max().item<float>() <= 1.0f);
        QVERIFY(tensor_to_image(t).rgb == img.rgb);
        QVERIFY_EXCEPTION_THROWN(tensor_to_image(torch::zeros({4, 8, 8})), kto::Error);
    }

    void captionsRoundTrip() {
        std::set<std::string> distinct;
        for (uint64_t i = 0; i < 3000; ++i) {
            Rng rng(17, i);
            const Scene s = sample_scene(rng);
            const PromptRequest req = sample_request(s, rng);
            const std::string text = format_caption(req);
            distinct.insert(text);
            const PromptRequest back = parse_caption(text);
            if (!(back == req)) QFAIL(("round trip failed for: " + text).c_str());
        }
        QVERIFY(distinct.size() > 1000);
        QCOMPARE(format_caption(parse_caption("A large green star at the top left on a white background.")),
                 std::string("a large green star at the top left on a white background"));
        QCOMPARE(format_caption(parse_caption("an orange circle")), std::string("an orange circle"));
        const PromptRequest two = parse_caption("a red circle and a blue square on a black background");
        QCOMPARE(int(two.shapes.size()), 2);
        QVERIFY(two.shapes[1].cls == ShapeClass::Square);
        QVERIFY(*two.background == Colour::Black);
        QVERIFY(parse_caption("a circle in the center").shapes[0].position == Position::Centre);
    }

    // shape_attribute_words points at each shape's size, colour and class words, in that order and
    // only those the request names, for every shape of every caption form (the attention loss reads
    // token w + 1 as word w).
    void shapeAttributeWordsPointAtTheNamedWords() {
        int two = 0, positioned = 0;
        SceneOptions both;
        both.two_shape_probability = 0.5;
        for (uint64_t i = 0; i < 2000; ++i) {
            Rng rng(29, i);
            const Scene scene = sample_scene(rng, both);
            const PromptRequest req = sample_request(scene, rng);
            std::vector<std::string> words;
            std::istringstream in(format_caption(req));
            for (std::string w; in >> w;) words.push_back(w);
            const auto spans = shape_attribute_words(req);
            QCOMPARE(spans.size(), req.shapes.size());
            two += req.shapes.size() == 2;
            for (size_t k = 0; k < spans.size(); ++k) {
                const ShapeRequest& s = req.shapes[k];
                std::vector<std::string> expected;
                if (s.size) expected.push_back(name(*s.size));
                if (s.colour) expected.push_back(name(*s.colour));
                expected.push_back(name(s.cls));
                positioned += bool(s.position);
                QCOMPARE(spans[k].size(), expected.size());
                for (size_t j = 0; j < expected.size(); ++j) {
                    QVERIFY(spans[k][j] >= 0 && size_t(spans[k][j]) < words.size());
                    QCOMPARE(words[size_t(spans[k][j])], expected[j]);
                    if (j > 0) QCOMPARE(spans[k][j], spans[k][j - 1] + 1);  // adjacent words
                }
                // The second shape's words come after "and", past every word of the first.
                if (k == 1) {
                    QVERIFY(spans[1].front() > spans[0].back());
                    QCOMPARE(words[size_t(spans[1].front()) - 2], std::string("and"));
                }
            }
        }
        QVERIFY(two > 800);
        QVERIFY(positioned > 800);
        const PromptRequest named =
            parse_caption("a large green star at the top left and an orange circle on a white background");
        const auto spans = shape_attribute_words(named);
        QCOMPARE(spans, (std::vector<std::vector<int>>{{1, 2, 3}, {10, 11}}));
        // Picking kinds keeps the other words' places; a shape that names none of them gets an empty span.
        QCOMPARE(shape_attribute_words(named, {false, true, true}), (std::vector<std::vector<int>>{{2, 3}, {10, 11}}));
        QCOMPARE(shape_attribute_words(named, {true, false, false}), (std::vector<std::vector<int>>{{1}, {}}));
        QCOMPARE(shape_attribute_words(named, {false, false, true}), (std::vector<std::vector<int>>{{3}, {11}}));
        QVERIFY_EXCEPTION_THROWN(shape_attribute_words(PromptRequest{}), kto::Error);
    }

    void captionsOmitAttributesSometimes() {
        int with_colour = 0, with_size = 0, with_bg = 0;
        for (uint64_t i = 0; i < 2000; ++i) {
            Rng rng(3, i);
            const PromptRequest r = sample_request(sample_scene(rng), rng);
            with_colour += bool(r.shapes[0].colour);
            with_size += bool(r.shapes[0].size);
            with_bg += bool(r.background);
        }
        QVERIFY(with_colour > 1700 && with_colour < 1900);
        QVERIFY(with_size > 850 && with_size < 1150);
        QVERIFY(with_bg > 1400 && with_bg < 1600);
    }

    void parserRejectsOtherText() {
        QVERIFY_EXCEPTION_THROWN(parse_caption("a photo of a cat"), kto::Error);
        QVERIFY_EXCEPTION_THROWN(parse_caption("a red circle on a"), kto::Error);
        QVERIFY_EXCEPTION_THROWN(parse_caption(""), kto::Error);
        QVERIFY(!try_parse_caption("a red dog"));
        try {
            parse_caption("a red dog");
        } catch (const kto::Error& e) {
            QVERIFY(std::string(e.what()).find("'dog'") != std::string::npos);
        }
    }

    void vocabIsClipLayout() {
        const BpeVocab v = build_caption_vocab(1234, 3000);
        QVERIFY(v.tokens.size() > 520 && v.tokens.size() < 1000);
        QCOMPARE(v.tokens[0], std::string("!"));
        QCOMPARE(v.tokens[256], std::string("!</w>"));
        QCOMPARE(v.tokens[v.tokens.size() - 2], std::string("<|startoftext|>"));
        QCOMPARE(v.tokens.back(), std::string("<|endoftext|>"));
        // As in CLIP: byte 0 maps to U+0100 at id 188, the space byte to U+0120 at id 220.
        QCOMPARE(v.tokens[188], std::string("\xC4\x80"));
        QCOMPARE(v.tokens[220], std::string("\xC4\xA0"));
        std::set<std::string> unique(v.tokens.begin(), v.tokens.end());
        QCOMPARE(unique.size(), v.tokens.size());
        // Applying the merges in rank order turns every caption word into one token.
        for (const auto& word : caption_words()) {
            std::vector<std::string> syms;
            for (char ch : word) syms.emplace_back(1, ch);
            syms.back() += "</w>";
            for (const auto& [a, b] : v.merges)
                for (size_t i = 0; i + 1 < syms.size();)
                    if (syms[i] == a && syms[i + 1] == b) {
                        syms[i] += syms[i + 1];
                        syms.erase(syms.begin() + long(i) + 1);
                    } else {
                        ++i;
                    }
            QCOMPARE(int(syms.size()), 1);
            QVERIFY(unique.count(word + "</w>"));
        }

        const std::string dir = QDir::tempPath().toStdString() + "/kto_vocab_test";
        write_clip_tokenizer(v, dir);
        std::ifstream mf(dir + "/merges.txt");
        std::string first;
        std::getline(mf, first);
        QCOMPARE(first, std::string("#version: 0.2"));
        const auto vj = nlohmann::json::parse(std::ifstream(dir + "/vocab.json"));
        QCOMPARE(vj.size(), v.tokens.size());
        QCOMPARE(vj.at("<|endoftext|>").get<int>(), v.eos_id());
        const auto cfg = nlohmann::json::parse(std::ifstream(dir + "/tokenizer_config.json"));
        QCOMPARE(cfg.at("model_max_length").get<int>(), 77);
        QCOMPARE(cfg.at("pad_token").get<std::string>(), std::string("<|endoftext|>"));
        std::filesystem::remove_all(dir);
    }
};

QTEST_GUILESS_MAIN(TestShapesWorld)
#include "test_shapes_world.moc"
