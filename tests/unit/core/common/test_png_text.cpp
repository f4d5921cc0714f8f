#include <QtTest/QtTest>

#include <cstdlib>

// From libstb (stb_image), to check the PNG decodes with an independent reader.
extern "C" unsigned char* stbi_load_from_memory(const unsigned char* buffer, int len, int* x, int* y,
                                                int* channels_in_file, int desired_channels);

#include "core/common/error.h"
#include "core/common/png_text.h"

class TestPngText : public QObject {
    Q_OBJECT

    static std::vector<uint8_t> gradient(int w, int h) {
        std::vector<uint8_t> px(static_cast<size_t>(w) * h * 3);
        for (int y = 0; y < h; ++y)
            for (int x = 0; x < w; ++x) {
                uint8_t* p = &px[(static_cast<size_t>(y) * w + x) * 3];
                p[0] = static_cast<uint8_t>(x * 255 / (w - 1));
                p[1] = static_cast<uint8_t>(y * 255 / (h - 1));
                p[2] = 77;
            }
        return px;
    }

private slots:
    void roundTripPixelsAndText() {
        const auto px = gradient(17, 9);
        kto::GenerationParameters p;
        p.prompt = "a red circle, on blue\nsecond line";
        p.negative_prompt = "blurry";
        p.steps = 25;
        p.sampler = "euler_ancestral";
        p.cfg_scale = 7.5;
        p.seed = 4294967297ull;
        p.width = 512;
        p.height = 768;
        p.model = "kto-demo";
        const std::string text = kto::format_generation_parameters(p);
        QCOMPARE(text, std::string("a red circle, on blue\nsecond line\nNegative prompt: blurry\nSteps: 25, Sampler: "
                                   "euler_ancestral, CFG scale: 7.5, Seed: 4294967297, Size: 512x768, Model: kto-demo"));
        auto png = kto::encode_png(px.data(), 17, 9, 3, {{"parameters", text}});
        // stb_image decodes it with the pixels intact (the text chunk is skipped as ancillary).
        int w = 0, h = 0, c = 0;
        unsigned char* dec = stbi_load_from_memory(png.data(), static_cast<int>(png.size()), &w, &h, &c, 3);
        QVERIFY(dec != nullptr);
        QCOMPARE(w, 17);
        QCOMPARE(h, 9);
        QVERIFY(std::equal(px.begin(), px.end(), dec));
        std::free(dec);
        auto chunks = kto::read_png_text(png);
        QCOMPARE(chunks.at("parameters"), text);
        auto back = kto::parse_generation_parameters(chunks.at("parameters"));
        QCOMPARE(back.prompt, p.prompt);
        QCOMPARE(back.negative_prompt, p.negative_prompt);
        QCOMPARE(back.steps, 25);
        QCOMPARE(back.sampler, p.sampler);
        QCOMPARE(back.cfg_scale, 7.5);
        QCOMPARE(back.seed, p.seed);
        QCOMPARE(back.width, 512);
        QCOMPARE(back.height, 768);
        QCOMPARE(back.model, std::string("kto-demo"));
    }

    void utf8UsesItxt() {
        const auto px = gradient(4, 4);
        const std::string text = "un chat \xc3\xa9l\xc3\xa9gant \xe7\x8c\xab\nSteps: 1, Sampler: ddim, CFG scale: 1, Seed: 0, Size: 8x8, Model: m";
        auto png = kto::encode_png(px.data(), 4, 4, 3, {{"parameters", text}});
        QCOMPARE(kto::read_png_text(png).at("parameters"), text);
    }

    void a1111Text() {
        auto p = kto::parse_generation_parameters(
            "masterpiece, a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 12345, Size: 512x512, Model hash: abc, "
            "Model: v1-5-pruned, Lora hashes: \"x: 1, y: 2\", Version: v1.6.0");
        QCOMPARE(p.prompt, std::string("masterpiece, a cat"));
        QCOMPARE(p.negative_prompt, std::string());
        QCOMPARE(p.sampler, std::string("Euler a"));
        QCOMPARE(p.extra.at("Lora hashes"), std::string("x: 1, y: 2"));
        QCOMPARE(p.extra.at("Version"), std::string("v1.6.0"));
        QCOMPARE(p.model, std::string("v1-5-pruned"));
    }

    void badInput() {
        const auto px = gradient(4, 4);
        auto png = kto::encode_png(px.data(), 4, 4, 3, {{"parameters", "x\nSteps: 1"}});
        // Truncations at every length and single-byte corruptions: errors or clean results, never a crash.
        for (size_t n = 0; n < png.size(); ++n) {
            std::vector<uint8_t> cut(png.begin(), png.begin() + static_cast<std::ptrdiff_t>(n));
            try {
                kto::read_png_text(cut);
            } catch (const kto::Error&) {
            }
        }
        for (size_t i = 0; i < png.size(); ++i) {
            auto bad = png;
            bad[i] ^= 0x5a;
            try {
                auto m = kto::read_png_text(bad);
                if (m.count("parameters")) QCOMPARE(m.at("parameters"), std::string("x\nSteps: 1"));
            } catch (const kto::Error&) {
            }
        }
        bool threw = false;
        try {
            kto::read_png_text({1, 2, 3});
        } catch (const kto::Error& e) {
            threw = std::string(e.what()).find("not a PNG") != std::string::npos;
        }
        QVERIFY(threw);
        threw = false;
        try {
            kto::parse_generation_parameters("just a prompt");
        } catch (const kto::Error& e) {
            threw = std::string(e.what()).find("Steps") != std::string::npos;
        }
        QVERIFY(threw);
        threw = false;
        try {
            kto::parse_generation_parameters("p\nSteps: 20, Seed: -5");
        } catch (const kto::Error& e) {
            threw = std::string(e.what()).find("Seed") != std::string::npos;
        }
        QVERIFY(threw);
        threw = false;
        try {
            kto::add_png_text(png, "", "x");
        } catch (const kto::Error&) {
            threw = true;
        }
        QVERIFY(threw);
    }
};

QTEST_GUILESS_MAIN(TestPngText)
#include "test_png_text.moc"
