#include <torch/torch.h>
#include <QtTest/QtTest>

#include <filesystem>
#include <fstream>
#include <random>

#include "core/common/error.h"
#include "core/io/safetensors.h"
#include "tests/support/test_paths.h"

namespace fs = std::filesystem;

class TestSafetensors : public QObject {
    Q_OBJECT

    QTemporaryDir tmp_;

    std::string tmp(const std::string& name) const {
        return tmp_.filePath(QString::fromStdString(name)).toStdString();
    }
    static std::string fixture(const std::string& name) {
        return kto::test::test_data_dir() + "/safetensors/" + name;
    }

    // Reading `name` must throw kto::Error whose message names the file and contains `needle`.
    static void expect_error(const std::string& name, const std::string& needle) {
        const std::string path = fixture(name);
        QVERIFY2(fs::exists(path), path.c_str());
        for (int pass = 0; pass < 2; ++pass) {
            try {
                if (pass == 0)
                    kto::read_safetensors(path);
                else
                    kto::read_safetensors_header(path);
                QFAIL(("no error for " + name).c_str());
            } catch (const kto::Error& e) {
                const std::string msg = e.what();
                QVERIFY2(msg.find(name) != std::string::npos, ("file not named: " + msg).c_str());
                QVERIFY2(msg.find(needle) != std::string::npos,
                         ("expected '" + needle + "' in: " + msg).c_str());
            }
        }
    }

private slots:
    void roundTripEveryDtype() {
        kto::TensorMap in;
        torch::manual_seed(0);
        in["f32"] = torch::randn({3, 5});
        in["f16"] = torch::randn({7}).to(torch::kFloat16);
        in["bf16"] = torch::randn({2, 3}).to(torch::kBFloat16);
        in["i64"] = torch::arange(11, torch::kInt64).reshape({1, 11}) - 5;
        in["f64"] = torch::randn({4}, torch::kFloat64);
        in["i32"] = torch::arange(3, torch::kInt32);
        in["u8"] = torch::arange(250, 255).to(torch::kUInt8);
        in["bool"] = torch::tensor({true, false, true});
        in["scalar"] = torch::tensor(3.5f);
        in["empty"] = torch::zeros({0, 4});
        in["strided"] = torch::randn({4, 6}).t();  // non-contiguous input is written densely
        const std::map<std::string, std::string> meta{{"format", "pt"},
                                                      {"note", "quote \" and \\"}};
        const std::string path = tmp("rt.safetensors");
        kto::write_safetensors(path, in, meta);

        const auto size = fs::file_size(path);
        const auto header = kto::read_safetensors_header(path);
        QCOMPARE(header.header_length % 8, uint64_t(0));
        QCOMPARE(header.file_size, uint64_t(size));
        QCOMPARE(int(header.entries.size()), int(in.size()));

        const auto out = kto::read_safetensors(path);
        QCOMPARE(out.metadata, meta);
        QCOMPARE(out.tensors.size(), in.size());
        for (const auto& [name, t] : in) {
            QVERIFY2(out.tensors.count(name), name.c_str());
            const auto& r = out.tensors.at(name);
            QCOMPARE(r.scalar_type(), t.scalar_type());
            QCOMPARE(r.sizes().vec(), t.sizes().vec());
            QVERIFY2(torch::equal(r, t), name.c_str());
        }
        // No temporary file left behind.
        int files = 0;
        for (const auto& e : fs::directory_iterator(tmp_.path().toStdString()))
            files += e.is_regular_file();
        QCOMPARE(files, 1);
    }

    void tensorsOutliveFileAndAreWritable() {
        const std::string path = tmp("alive.safetensors");
        kto::write_safetensors(path, {{"x", torch::arange(16, torch::kFloat32)}});
        torch::Tensor x = kto::load_safetensors(path).at("x");
        fs::remove(path);
        x.add_(1);  // private copy-on-write mapping: in-place ops are safe
        QCOMPARE(x[15].item<float>(), 16.0f);
    }

    void overwriteIsAtomicReplace() {
        const std::string path = tmp("over.safetensors");
        kto::write_safetensors(path, {{"a", torch::ones({2})}});
        kto::write_safetensors(path, {{"b", torch::zeros({3})}});
        const auto t = kto::load_safetensors(path);
        QCOMPARE(int(t.size()), 1);
        QVERIFY(t.count("b"));
    }

    void writerRejectsUnsupportedDtype() {
        QVERIFY_THROWS_EXCEPTION(
            kto::Error, kto::write_safetensors(tmp("c.safetensors"),
                                               {{"c", torch::zeros({2}, torch::kComplexFloat)}}));
        QVERIFY(!fs::exists(tmp("c.safetensors")));
    }

    void readsGoodFixture() {
        const auto f = kto::read_safetensors(fixture("good.safetensors"));
        QCOMPARE(f.metadata.at("format"), std::string("pt"));
        QVERIFY(
            torch::equal(f.tensors.at("a"), torch::tensor({1.f, 2.f, 3.f, 4.f}).reshape({2, 2})));
        QVERIFY(torch::equal(f.tensors.at("b"), torch::tensor({5.f, 6.f, 7.f})));
        QCOMPARE(f.tensors.at("ids").item<int64_t>(), int64_t(42));  // misaligned: copied
    }

    void readsEveryGoldenFile() {
        const std::string ref = kto::test::reference_dir();
        if (!fs::exists(ref)) QSKIP("reference set not present");
        int files = 0;
        for (const auto& e : fs::recursive_directory_iterator(ref)) {
            if (e.path().extension() != ".safetensors") continue;
            const auto f = kto::read_safetensors(e.path().string());
            QVERIFY2(!f.tensors.empty(), e.path().c_str());
            for (const auto& [name, t] : f.tensors) {
                if (t.is_floating_point())
                    QVERIFY2(torch::isfinite(t).all().item<bool>(),
                             (e.path().string() + ":" + name).c_str());
            }
            ++files;
        }
        QVERIFY(files >= 9);
        const auto tok = kto::load_safetensors(ref + "/golden/tiny-sd/tokenizer.safetensors");
        QCOMPARE(tok.at("input_ids").sizes().vec(), (std::vector<int64_t>{21, 77}));
        QCOMPARE(tok.at("input_ids").scalar_type(), torch::kInt64);
        const auto te = kto::read_safetensors(ref + "/tiny-sd/text_encoder/model.safetensors");
        QCOMPARE(te.metadata.at("format"), std::string("pt"));
    }

    void brokenFixtures_data() {
        QTest::addColumn<QString>("file");
        QTest::addColumn<QString>("needle");
        QTest::newRow("truncated") << "truncated.safetensors"
                                   << "outside the data section";
        QTest::newRow("too short") << "too_short.safetensors"
                                   << "too short";
        QTest::newRow("huge header") << "huge_header.safetensors"
                                     << "exceeds the 100 MB limit";
        QTest::newRow("header past eof") << "header_past_eof.safetensors"
                                         << "past the end of the file";
        QTest::newRow("not json") << "not_json.safetensors"
                                  << "not valid JSON";
        QTest::newRow("json array") << "json_array.safetensors"
                                    << "must be a JSON object";
        QTest::newRow("unknown dtype") << "unknown_dtype.safetensors"
                                       << "tensor 'weird': unknown or unsupported dtype 'F7'";
        QTest::newRow("span mismatch") << "span_mismatch.safetensors"
                                       << "tensor 'w': span mismatch";
        QTest::newRow("overlap") << "overlap.safetensors"
                                 << "tensor 'y' overlaps tensor 'x'";
        QTest::newRow("span outside") << "span_outside.safetensors"
                                      << "tensor 'far': data_offsets";
        QTest::newRow("bad metadata") << "bad_metadata.safetensors"
                                      << "'__metadata__' entry 'step' must be a string";
        QTest::newRow("shape overflow") << "shape_overflow.safetensors"
                                        << "tensor 'big': shape";
        QTest::newRow("gap") << "gap.safetensors"
                             << "densely packed";
    }
    void brokenFixtures() {
        QFETCH(QString, file);
        QFETCH(QString, needle);
        expect_error(file.toStdString(), needle.toStdString());
    }

    void missingFileAndFolder() {
        try {
            kto::read_safetensors(tmp("nope.safetensors"));
            QFAIL("no error");
        } catch (const kto::Error& e) {
            QVERIFY(std::string(e.what()).find("nope.safetensors: cannot open") !=
                    std::string::npos);
        }
        QVERIFY_THROWS_EXCEPTION(kto::Error, kto::read_safetensors(tmp_.path().toStdString()));
    }

    // Random byte corruptions of a valid file either read or throw kto::Error, never crash.
    void corruptedBytesNeverCrash() {
        const std::string good = fixture("good.safetensors");
        std::ifstream in(good, std::ios::binary);
        const std::string bytes((std::istreambuf_iterator<char>(in)), {});
        const std::string path = tmp("mutant.safetensors");
        std::mt19937 rng(1234);
        int rejected = 0;
        for (int round = 0; round < 400; ++round) {
            std::string m = bytes;
            const int edits = 1 + int(rng() % 4);
            for (int e = 0; e < edits; ++e) m[rng() % m.size()] = char(rng() % 256);
            std::ofstream(path, std::ios::binary | std::ios::trunc).write(m.data(), long(m.size()));
            try {
                const auto f = kto::read_safetensors(path);
                for (const auto& [name, t] : f.tensors) (void)t.sum();  // touch the data
            } catch (const kto::Error&) {
                ++rejected;
            }
        }
        QVERIFY(rejected > 50);
    }

    // Every prefix of a valid file is rejected cleanly (never a crash).
    void everyTruncationIsAnError() {
        const std::string good = fixture("good.safetensors");
        std::ifstream in(good, std::ios::binary);
        const std::string bytes((std::istreambuf_iterator<char>(in)), {});
        const std::string path = tmp("cut.safetensors");
        for (size_t n = 0; n < bytes.size(); ++n) {
            std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), long(n));
            QVERIFY_THROWS_EXCEPTION(kto::Error, kto::read_safetensors(path));
        }
    }
};

QTEST_GUILESS_MAIN(TestSafetensors)
#include "test_safetensors.moc"
