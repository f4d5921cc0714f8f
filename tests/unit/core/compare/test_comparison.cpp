// core/compare: win-rate math (Wilson interval, ties counted half), prompt files, cache keys and
// side identities, and rendering the demo model against a perturbed copy of its UNet: both sides
// through core/pipeline (side A equals a plain generate()), cached on the second call, cancel, grid.
#include <QTemporaryDir>
#include <QtTest/QtTest>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "core/common/error.h"
#include "core/common/image_decode.h"
#include "core/compare/comparison.h"
#include "core/compare/win_rate.h"
#include "core/io/model_folder.h"
#include "tests/support/error_check.h"
#include "tests/support/test_paths.h"

namespace fs = std::filesystem;
using kto::test::expect_error;

namespace {

void write_text(const fs::path& p, const std::string& text) {
    std::ofstream out(p, std::ios::binary);
    out << text;
}

std::string read_bytes(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

// A copy of the demo model's UNet with every weight nudged: a cheap stand-in for a fine-tune.
void write_perturbed_unet(const std::string& demo, const std::string& dir, double scale) {
    auto unet = kto::load_unet(kto::component_dir(demo, "unet"));
    torch::NoGradGuard no_grad;
    auto gen = at::detail::createCPUGenerator(1234);
    for (auto& p : unet->parameters()) p.add_(torch::randn(p.sizes(), gen) * scale * (p.abs().mean() + 1e-3));
    kto::save_unet(unet, unet->config().raw, dir);
}

}  // namespace

class TestComparison : public QObject {
    Q_OBJECT
    QTemporaryDir tmp_;
    std::string demo_;
    std::string tuned_;

    fs::path dir(const std::string& name) const { return fs::path(tmp_.path().toStdString()) / name; }

private slots:
    void initTestCase() {
        QVERIFY(tmp_.isValid());
        demo_ = kto::test::demo_model_dir();
        QVERIFY2(fs::exists(fs::path(demo_) / "model_index.json"), demo_.c_str());
        tuned_ = (dir("run") / "step-2" / "unet").string();
        write_perturbed_unet(demo_, tuned_, 0.5);
    }

    void wilsonIntervalMatchesTheFormula() {
        // Reference values: Wilson (1927) score interval at z = 1.96, computed in float64 by hand.
        auto close = [](double a, double b) { return std::abs(a - b) < 1e-9; };
        kto::Interval i = kto::wilson_interval(5, 10);
        QVERIFY(close(i.low, 0.23658959361548731) && close(i.high, 0.7634104063845126));
        i = kto::wilson_interval(10, 10);
        QVERIFY(close(i.low, 0.7224598312333834) && close(i.high, 1.0));
        i = kto::wilson_interval(0, 10);
        QVERIFY(close(i.low, 0.0) && close(i.high, 0.2775401687666166));
        i = kto::wilson_interval(81, 263);
        QVERIFY(close(i.low, 0.2552876130636696) && close(i.high, 0.36621068405342155));
        i = kto::wilson_interval(0, 0);
        QCOMPARE(i.low, 0.0);
        QCOMPARE(i.high, 1.0);
    }

    void tiesCountHalf() {
        const kto::WinRate w = kto::win_rate(3, 1, 2);
        QCOMPARE(w.votes(), std::int64_t(6));
        QVERIFY(std::abs(w.rate - 4.0 / 6.0) < 1e-12);
        // Same interval as 4 successes of 6.
        QVERIFY(std::abs(w.low - 0.29998832134152864) < 1e-9);
        QVERIFY(std::abs(w.high - 0.9032306674407831) < 1e-9);
        QVERIFY(w.low < w.rate && w.rate < w.high);
        // All ties: exactly even, and the interval narrows as votes accumulate.
        const kto::WinRate t4 = kto::win_rate(0, 0, 4), t40 = kto::win_rate(0, 0, 40);
        QCOMPARE(t4.rate, 0.5);
        QVERIFY(t40.high - t40.low < t4.high - t4.low);
        const kto::WinRate none = kto::win_rate(0, 0, 0);
        QCOMPARE(none.rate, 0.5);
        QCOMPARE(none.low, 0.0);
        QCOMPARE(none.high, 1.0);
    }

    void promptFiles() {
        const fs::path good = dir("prompts.txt");
        write_text(good, "# probe prompts\n  a red circle  \n\n\ta blue square\r\n# end\n");
        const auto p = kto::read_prompt_file(good.string());
        QCOMPARE(p.size(), std::size_t(2));
        QCOMPARE(p[0], std::string("a red circle"));
        QCOMPARE(p[1], std::string("a blue square"));
        const fs::path empty = dir("empty.txt");
        write_text(empty, "\n   \n# only a comment\n");
        expect_error([&] { kto::read_prompt_file(empty.string()); }, "no prompts");
        expect_error([&] { kto::read_prompt_file(dir("missing.txt").string()); }, "not found");
    }

    void cacheKeysAndIdentities() {
        kto::CompareSettings s;
        const std::string id = "identity";
        const std::string k = kto::comparison_cache_key(id, "a red circle", 1, s, "euler", 64, 64);
        QCOMPARE(k.size(), std::size_t(64));
        QCOMPARE(kto::comparison_cache_key(id, "a red circle", 1, s, "euler", 64, 64), k);
        QVERIFY(kto::comparison_cache_key(id + "x", "a red circle", 1, s, "euler", 64, 64) != k);
        QVERIFY(kto::comparison_cache_key(id, "a red circle.", 1, s, "euler", 64, 64) != k);
        QVERIFY(kto::comparison_cache_key(id, "a red circle", 2, s, "euler", 64, 64) != k);
        QVERIFY(kto::comparison_cache_key(id, "a red circle", 1, s, "ddim", 64, 64) != k);
        QVERIFY(kto::comparison_cache_key(id, "a red circle", 1, s, "euler", 64, 72) != k);
        kto::CompareSettings s2 = s;
        s2.steps += 1;
        QVERIFY(kto::comparison_cache_key(id, "a red circle", 1, s2, "euler", 64, 64) != k);
        s2 = s;
        s2.cfg = 7.0;
        QVERIFY(kto::comparison_cache_key(id, "a red circle", 1, s2, "euler", 64, 64) != k);
        s2 = s;
        s2.negative_prompt = "blurry";
        QVERIFY(kto::comparison_cache_key(id, "a red circle", 1, s2, "euler", 64, 64) != k);

        // A side's identity follows its files: rewriting the UNet changes it.
        const std::string unet = (dir("ident") / "unet").string();
        write_perturbed_unet(demo_, unet, 0.1);
        const kto::CompareSide side{demo_, unet, {}, {}};
        const std::string before = kto::side_identity(side);
        QCOMPARE(kto::side_identity(side), before);
        QVERIFY(kto::side_identity(kto::CompareSide{demo_, {}, {}, {}}) != before);
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        write_perturbed_unet(demo_, unet, 0.2);
        QVERIFY(kto::side_identity(side) != before);
        QCOMPARE(kto::side_display_name(kto::CompareSide{demo_, tuned_, {}, {}}), std::string("kto-demo+step-2"));
        QCOMPARE(kto::side_display_name(kto::CompareSide{demo_, {}, {}, "mine"}), std::string("mine"));
    }

    void rendersBothSidesThenReadsTheCache() {
        const kto::CompareSide a{demo_, {}, {}, {}};
        const kto::CompareSide b{demo_, tuned_, {}, {}};
        kto::CompareSettings s;
        s.steps = 3;
        const std::string cache = dir("cache").string();
        int started = 0, fresh = 0, cached = 0;
        kto::CompareCallbacks cb;
        cb.on_image_start = [&](int, int index, int total) {
            QCOMPARE(index, started);
            QCOMPARE(total, 4);
            ++started;
        };
        cb.on_image = [&](int, size_t, const std::string& path, bool from_cache) {
            QVERIFY(fs::exists(path));
            (from_cache ? cached : fresh) += 1;
        };
        const auto r = kto::render_comparison(a, b, {"a large red circle on a blue background"}, {3, 4}, s, cache, cb);
        QCOMPARE(r.cells.size(), std::size_t(2));
        QCOMPARE(r.rendered, 4);
        QCOMPARE(r.cached, 0);
        QCOMPARE(fresh, 4);
        QCOMPARE(cached, 0);
        QCOMPARE(r.cells[1].seed, std::uint64_t(4));
        QVERIFY(r.width > 0 && r.height > 0);
        QVERIFY(!r.sampler.empty());

        // Side A is exactly what the pipeline generates with the same prompt, seed and settings.
        auto bundle = kto::ModelBundle::load(demo_);
        kto::GenerateOptions o;
        o.prompts = {"a large red circle on a blue background"};
        o.seed = 3;
        o.steps = 3;
        o.cfg = s.cfg;
        o.sampler = r.sampler;
        o.width = r.width;
        o.height = r.height;
        const auto direct = kto::generate(bundle, o);
        const kto::RgbImage ia = kto::read_image_rgb8(r.cells[0].image_a);
        QCOMPARE(ia.width, r.width);
        QVERIFY(ia.pixels == direct.rgb.at(0).pixels);
        // The tuned side differs from the base for the same seed; seeds differ from each other.
        QVERIFY(kto::read_image_rgb8(r.cells[0].image_b).pixels != ia.pixels);
        QVERIFY(kto::read_image_rgb8(r.cells[1].image_a).pixels != ia.pixels);

        // Reopening: nothing rendered, the same files.
        const std::string bytes = read_bytes(r.cells[0].image_b);
        fresh = cached = started = 0;
        const auto again = kto::render_comparison(a, b, {"a large red circle on a blue background"}, {3, 4}, s, cache, cb);
        QCOMPARE(again.rendered, 0);
        QCOMPARE(again.cached, 4);
        QCOMPARE(cached, 4);
        QCOMPARE(started, 0);
        QCOMPARE(again.cells[0].image_b, r.cells[0].image_b);
        QCOMPARE(read_bytes(again.cells[0].image_b), bytes);

        // Other settings are other images.
        kto::CompareSettings s2 = s;
        s2.steps = 2;
        const auto other = kto::render_comparison(a, b, {"a large red circle on a blue background"}, {3}, s2, cache);
        QCOMPARE(other.rendered, 2);
        QVERIFY(other.cells[0].image_a != r.cells[0].image_a);

        // The grid: one row per cell, A left and B right.
        const kto::RgbImage grid = kto::comparison_grid(r, 4);
        QCOMPARE(grid.width, 2 * r.width + 3 * 4);
        QCOMPARE(grid.height, 2 * (r.height + 4) + 4);
        const kto::RgbImage ib = kto::read_image_rgb8(r.cells[0].image_b);
        const size_t right = static_cast<size_t>((4 * grid.width + 4 + r.width + 4) * 3);
        QCOMPARE(int(grid.pixels[right]), int(ib.pixels[0]));
        QCOMPARE(int(grid.pixels[static_cast<size_t>((4 * grid.width + 4) * 3)]), int(ia.pixels[0]));
    }

    void cancelKeepsFinishedImages() {
        const kto::CompareSide a{demo_, {}, {}, {}};
        const kto::CompareSide b{demo_, tuned_, {}, {}};
        kto::CompareSettings s;
        s.steps = 2;
        const std::string cache = dir("cancel-cache").string();
        int images = 0;
        kto::CompareCallbacks cb;
        cb.on_image = [&](int, size_t, const std::string&, bool) { ++images; };
        cb.should_cancel = [&] { return images >= 1; };
        bool cancelled = false;
        try {
            kto::render_comparison(a, b, {"a small green square on a white background"}, {1, 2}, s, cache, cb);
        } catch (const kto::Cancelled&) {
            cancelled = true;
        }
        QVERIFY(cancelled);
        QCOMPARE(images, 1);
        const auto r = kto::render_comparison(a, b, {"a small green square on a white background"}, {1, 2}, s, cache);
        QCOMPARE(r.cached, 1);
        QCOMPARE(r.rendered, 3);
    }

    void badInput() {
        const kto::CompareSide a{demo_, {}, {}, {}};
        const kto::CompareSide b{demo_, tuned_, {}, {}};
        const std::string cache = dir("bad").string();
        expect_error([&] { kto::render_comparison(a, b, {}, {1}, {}, cache); }, "no prompts");
        expect_error([&] { kto::render_comparison(a, b, {"x"}, {}, {}, cache); }, "no seeds");
        expect_error([&] { kto::render_comparison(a, b, {""}, {1}, {}, cache); }, "empty");
        expect_error([&] { kto::render_comparison(a, kto::CompareSide{demo_, tuned_, "x.safetensors", {}}, {"x"}, {1}, {}, cache); },
                     "not both");
        expect_error([&] { kto::render_comparison(a, kto::CompareSide{demo_, dir("nope").string(), {}, {}}, {"x"}, {1}, {}, cache); },
                     "no such UNet folder");
        expect_error([&] { kto::render_comparison(kto::CompareSide{dir("nomodel").string(), {}, {}, {}}, b, {"x"}, {1}, {}, cache); },
                     "no such model");
        kto::CompareSettings odd;
        odd.width = 60;
        odd.height = 64;
        expect_error([&] { kto::render_comparison(a, b, {"x"}, {1}, odd, cache); }, "multiples of 8");
    }
};

QTEST_GUILESS_MAIN(TestComparison)
#include "test_comparison.moc"
