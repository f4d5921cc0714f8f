// SHA-256 against the FIPS 180-2 / NIST example vectors, incremental updates and files.
#include <QTemporaryDir>
#include <QtTest>

#include "storage/store/sha256.h"
#include "storage_fixtures.h"

using kto::storage::Sha256;
using kto::storage::sha256_hex;

class TestSha256 : public QObject {
    Q_OBJECT
private slots:
    void knownVectors_data() {
        QTest::addColumn<QByteArray>("input");
        QTest::addColumn<QString>("expected");
        QTest::newRow("empty") << QByteArray()
                               << "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        QTest::newRow("abc") << QByteArray("abc")
                             << "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        QTest::newRow("448 bits")
            << QByteArray("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")
            << "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1";
        QTest::newRow("896 bits")
            << QByteArray("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnop"
                          "jklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu")
            << "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1";
        QTest::newRow("million a") << QByteArray(1000000, 'a')
                                   << "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
    }
    void knownVectors() {
        QFETCH(QByteArray, input);
        QFETCH(QString, expected);
        QCOMPARE(QString::fromStdString(sha256_hex(std::string_view(input.constData(), input.size()))),
                 expected);
    }

    // Padding edges (55, 56, 63, 64, 65 bytes) and any split into updates give the one-shot hash.
    void incrementalMatchesOneShot() {
        for (int size : {0, 1, 55, 56, 57, 63, 64, 65, 127, 128, 129, 1000}) {
            std::string data;
            for (int i = 0; i < size; ++i) data.push_back(static_cast<char>((i * 131 + 7) & 0xff));
            const std::string whole = sha256_hex(data);
            for (int step : {1, 3, 63, 64, 65}) {
                Sha256 h;
                for (int off = 0; off < size; off += step) {
                    h.update(data.data() + off, static_cast<std::size_t>(std::min(step, size - off)));
                }
                QCOMPARE(h.hex_digest(), whole);
            }
        }
        // Cross-check one padding edge against Qt's implementation.
        const QByteArray q(56, 'x');
        QCOMPARE(QString::fromStdString(sha256_hex(std::string(56, 'x'))),
                 QString::fromLatin1(QCryptographicHash::hash(q, QCryptographicHash::Sha256).toHex()));
    }

    void fileHash() {
        QTemporaryDir dir;
        const auto file = kto::test::temp_path(dir, "a.bin");
        kto::test::write_file(file, "abc");
        QCOMPARE(kto::storage::sha256_file_hex(file),
                 std::string("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
        QVERIFY_THROWS_EXCEPTION(kto::Error, kto::storage::sha256_file_hex(kto::test::temp_path(dir, "missing")));
    }
};

QTEST_GUILESS_MAIN(TestSha256)
#include "test_sha256.moc"
