// The streaming RFC 4180 reader and the field quoting used by the dataset export.
#include <QTemporaryDir>
#include <QtTest>

#include <random>

#include "core/common/error.h"
#include "storage/dataset/csv.h"
#include "storage_fixtures.h"

using kto::storage::CsvReader;
using kto::storage::csv_field;

namespace {

std::vector<std::vector<std::string>> read_all(const std::filesystem::path& file,
                                               std::vector<std::int64_t>* lines = nullptr) {
    CsvReader r(file);
    std::vector<std::vector<std::string>> rows;
    std::vector<std::string> fields;
    while (r.next(fields)) {
        rows.push_back(fields);
        if (lines) lines->push_back(r.record_line());
    }
    return rows;
}

std::string error_of(const std::filesystem::path& file) {
    try {
        read_all(file);
    } catch (const kto::Error& e) {
        return e.what();
    }
    return "";
}

}  // namespace

class TestCsv : public QObject {
    Q_OBJECT
    QTemporaryDir dir_;

    std::filesystem::path file(const std::string& content) {
        static int n = 0;
        const auto p = kto::test::temp_path(dir_, "f" + std::to_string(n++) + ".csv");
        kto::test::write_file(p, content);
        return p;
    }

private slots:
    void quoting() {
        QCOMPARE(csv_field("plain"), std::string("plain"));
        QCOMPARE(csv_field(""), std::string(""));
        QCOMPARE(csv_field("a,b"), std::string("\"a,b\""));
        QCOMPARE(csv_field("say \"hi\""), std::string("\"say \"\"hi\"\"\""));
        QCOMPARE(csv_field("two\nlines"), std::string("\"two\nlines\""));
        QCOMPARE(csv_field("cr\rhere"), std::string("\"cr\rhere\""));
        QCOMPARE(csv_field(" lead"), std::string("\" lead\""));
        QCOMPARE(csv_field("trail "), std::string("\"trail \""));
        QCOMPARE(csv_field("in side"), std::string("in side"));
        QCOMPARE(csv_field("猫 🐱"), std::string("猫 🐱"));
        std::string rec;
        kto::storage::append_csv_record(rec, {"a", "b,c", ""});
        QCOMPARE(rec, std::string("a,\"b,c\",\n"));
    }

    void readsRfc4180() {
        const auto rows = read_all(file("h1,h2,h3\nplain,\"a,b\",\"say \"\"hi\"\"\"\n,\"\",x\n"));
        QCOMPARE(rows.size(), std::size_t(3));
        QCOMPARE(rows[1], (std::vector<std::string>{"plain", "a,b", "say \"hi\""}));
        QCOMPARE(rows[2], (std::vector<std::string>{"", "", "x"}));
    }

    // Quoted line breaks belong to the field; record_line() is the line where a record starts.
    void quotedNewlinesAndLineNumbers() {
        std::vector<std::int64_t> lines;
        const auto rows = read_all(file("a,b\n\"one\ntwo\nthree\",x\nnext,y\n"), &lines);
        QCOMPARE(rows.size(), std::size_t(3));
        QCOMPARE(rows[1][0], std::string("one\ntwo\nthree"));
        QCOMPARE(lines, (std::vector<std::int64_t>{1, 2, 5}));
    }

    void crlfBomAndBlankLines() {
        const auto rows = read_all(file("\xEF\xBB\xBFh1,h2\r\n\r\nv1,\"q\r\nq\"\r\nlast,row"));
        QCOMPARE(rows.size(), std::size_t(3));
        QCOMPARE(rows[0][0], std::string("h1"));  // BOM stripped
        QCOMPARE(rows[1][1], std::string("q\r\nq"));
        QCOMPARE(rows[2], (std::vector<std::string>{"last", "row"}));
        QCOMPARE(read_all(file("")).size(), std::size_t(0));
        QCOMPARE(read_all(file("\xEF\xBB\xBF")).size(), std::size_t(0));
        QCOMPARE(read_all(file("a,b,\n")).back(), (std::vector<std::string>{"a", "b", ""}));
    }

    void malformedReportsLine() {
        QString e = QString::fromStdString(error_of(file("a,b\nok,1\n\"open,2\nmore\n")));
        QVERIFY2(e.contains("line 3") && e.contains("unterminated"), qPrintable(e));
        e = QString::fromStdString(error_of(file("a,b\nab\"c,1\n")));
        QVERIFY2(e.contains("line 2") && e.contains("quote inside an unquoted field"), qPrintable(e));
        e = QString::fromStdString(error_of(file("a,b\n\"x\"y,1\n")));
        QVERIFY2(e.contains("line 2") && e.contains("after a closing quote"), qPrintable(e));
        const std::string huge = "a\n\"" + std::string(CsvReader::kMaxFieldBytes + 10, 'x');
        e = QString::fromStdString(error_of(file(huge)));
        QVERIFY2(e.contains("line 2") && e.contains("1 MiB"), qPrintable(e));
    }

    // Random nasty fields written with csv_field read back unchanged, across buffer boundaries.
    void roundTripAcrossBuffers() {
        std::mt19937 rng(7);
        const std::vector<std::string> pieces = {"a", ",", "\"", "\n", "\r\n", " ", "猫", "🐱", "xyz",
                                                 "\t", "''"};
        std::vector<std::vector<std::string>> rows;
        std::string content;
        std::size_t bytes = 0;
        while (bytes < 3u << 20) {  // 3 MiB: several 1 MiB reader buffers
            std::vector<std::string> row(4);
            for (auto& f : row) {
                const int n = static_cast<int>(rng() % 12);
                for (int i = 0; i < n; ++i) f += pieces[rng() % pieces.size()];
            }
            kto::storage::append_csv_record(content, row);
            bytes = content.size();
            rows.push_back(std::move(row));
        }
        QCOMPARE(read_all(file(content)), rows);
    }
};

QTEST_GUILESS_MAIN(TestCsv)
#include "test_csv.moc"
