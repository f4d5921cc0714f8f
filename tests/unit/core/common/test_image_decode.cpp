// Image decoding for training and comparison inputs (core/common/image_decode): valid files decode
// to the right pixels; hostile ones fail with a clear kto::Error and without taking memory.
#include <QtTest>

#include <stb/stb_image_write.h>
#include <sys/resource.h>

#include <fstream>
#include <iterator>

#include "core/common/error.h"
#include "core/common/image_decode.h"

namespace {

std::vector<uint8_t> png_of(int w, int h, const std::vector<uint8_t>& rgb) {
    std::vector<uint8_t> out;
    stbi_write_png_to_func(
        [](void* ctx, void* data, int size) {
            auto* v = static_cast<std::vector<uint8_t>*>(ctx);
            v->insert(v->end(), static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + size);
        },
        &out, w, h, 3, rgb.data(), w * 3);
    return out;
}

std::string error_of(const std::vector<uint8_t>& bytes) {
    try {
        kto::decode_image_rgb8(bytes.data(), bytes.size(), "x.png");
    } catch (const kto::Error& e) {
        return e.what();
    }
    return "";
}

long peak_rss_kb() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return u.ru_maxrss;
}

}  // namespace

class TestImageDecode : public QObject {
    Q_OBJECT
private slots:
    void decodesPixels() {
        std::vector<uint8_t> rgb(5 * 3 * 3);
        for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<uint8_t>(i * 7);
        const auto png = png_of(5, 3, rgb);
        const kto::RgbImage img = kto::decode_image_rgb8(png.data(), png.size(), "x.png");
        QCOMPARE(img.width, 5);
        QCOMPARE(img.height, 3);
        QVERIFY(img.pixels == rgb);
    }

    // stb 2.27 inflates this 81-byte PNG into a buffer of 1.6 GB before failing.
    void inflateBombFailsWithoutTakingMemory() {
        std::ifstream in(std::string(KTO_TEST_DATA_DIR) + "/images/png-inflate-bomb.png", std::ios::binary);
        const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        QCOMPARE(bytes.size(), size_t(81));
        const long before = peak_rss_kb();
        const QString e = QString::fromStdString(error_of(bytes));
        QVERIFY2(e.contains("x.png: corrupt image: its compressed data expands beyond what a 4x3 image can hold"),
                 qPrintable(e));
        QVERIFY2(peak_rss_kb() - before < 64 * 1024, "the decode took more than 64 MB");
        // The cap is per decode: a valid image decodes right after.
        const auto png = png_of(2, 2, std::vector<uint8_t>(12, 200));
        QCOMPARE(kto::decode_image_rgb8(png.data(), png.size(), "y.png").pixels.size(), size_t(12));
    }

    void hostileHeadersAndTruncationAreRefused() {
        auto png = png_of(4, 4, std::vector<uint8_t>(48, 9));
        // IHDR width (bytes 16..19) set to 1,000,000: refused before anything is allocated.
        auto huge = png;
        huge[16] = 0x00; huge[17] = 0x0F; huge[18] = 0x42; huge[19] = 0x40;
        QVERIFY2(QString::fromStdString(error_of(huge)).contains("larger than supported"),
                 qPrintable(QString::fromStdString(error_of(huge))));
        const std::vector<uint8_t> cut(png.begin(), png.begin() + 40);
        QVERIFY(QString::fromStdString(error_of(cut)).startsWith("x.png: "));
        const std::vector<uint8_t> text = {'h', 'e', 'l', 'l', 'o'};
        QVERIFY(QString::fromStdString(error_of(text)).contains("not a PNG, JPEG, GIF or BMP image"));
        QVERIFY(QString::fromStdString(error_of({})).contains("empty file"));
    }
};

QTEST_GUILESS_MAIN(TestImageDecode)
#include "test_image_decode.moc"
