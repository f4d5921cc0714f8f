// Crash safety: a child process is SIGKILLed in the middle of a burst of label writes and in the
// middle of an export. Every label the child saw committed must be there afterwards, the database
// must be intact, and no partial dataset may be visible under the export's target name.
#include <QTemporaryDir>
#include <QtTest>

#include <SQLiteCpp/Database.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>

#include "storage/dataset/csv.h"
#include "storage/dataset/dataset_export.h"
#include "storage/dataset/dataset_import.h"
#include "storage/store/store.h"
#include "storage_fixtures.h"

using namespace kto::storage;
namespace fs = std::filesystem;

namespace {

bool write_id(int fd, std::int64_t v) {
    return ::write(fd, &v, sizeof v) == static_cast<ssize_t>(sizeof v);
}

// Reads one 8-byte value; false at end of file.
bool read_id(int fd, std::int64_t& v) {
    std::size_t got = 0;
    auto* p = reinterpret_cast<char*>(&v);
    while (got < sizeof v) {
        const ssize_t n = ::read(fd, p + got, sizeof v - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        got += static_cast<std::size_t>(n);
    }
    return true;
}

// A dataset of `files` distinct images referenced by `rows` liked rows, imported into `ws`.
void import_images(const fs::path& ws, const fs::path& dataset, int files, int rows) {
    std::string csv = "file_path,caption,label\n";
    for (int i = 0; i < files; ++i) {
        kto::test::write_file(dataset / "train" / ("img" + std::to_string(i) + ".png"),
                              kto::test::tiny_png(static_cast<unsigned char>(i % 256)) +
                                  std::to_string(i));
    }
    for (int r = 0; r < rows; ++r) {
        csv += "train/img" + std::to_string(r % files) + ".png,prompt " + std::to_string(r % 7) +
               ",exclusive_win\n";
    }
    kto::test::write_file(dataset / kDatasetCsvName, csv);
    Store store{Workspace(ws)};
    QCOMPARE(import_dataset(store, dataset).imported, std::int64_t(rows));
}

// Checks that `dir` holds a complete dataset: every CSV row's image exists, and nothing else.
void verify_complete_dataset(const fs::path& dir, std::size_t expected_rows) {
    CsvReader r(dir / kDatasetCsvName);
    std::vector<std::string> f;
    QVERIFY(r.next(f));
    QCOMPARE(f, dataset_csv_columns());
    std::size_t rows = 0;
    std::set<std::string> referenced;
    while (r.next(f)) {
        ++rows;
        QVERIFY2(fs::is_regular_file(dir / f[0]), f[0].c_str());
        referenced.insert(fs::path(f[0]).filename().string());
    }
    QCOMPARE(rows, expected_rows);
    std::size_t files = 0;
    for (const auto& e : fs::directory_iterator(dir / kDatasetImageDir)) {
        ++files;
        QVERIFY2(referenced.count(e.path().filename().string()), e.path().c_str());
    }
    QCOMPARE(files, referenced.size());
}

}  // namespace

class TestCrash : public QObject {
    Q_OBJECT
    QTemporaryDir tmp_;

private slots:
    void labelBurstKilledKeepsEveryCommittedLabel() {
        const fs::path ws = kto::test::temp_path(tmp_, "labels-ws");
        const int kImages = 20000;
        import_images(ws, kto::test::temp_path(tmp_, "labels-data"), 10, kImages);

        int fds[2];
        QVERIFY(::pipe(fds) == 0);
        const pid_t pid = ::fork();
        QVERIFY(pid >= 0);
        if (pid == 0) {  // child: relabel every image, reporting each id after its commit
            ::close(fds[0]);
            try {
                Store store{Workspace(ws)};
                for (std::int64_t id = 1; id <= kImages; ++id) {
                    store.set_label(id, Label::Dislike);
                    if (!write_id(fds[1], id)) ::_exit(3);
                }
            } catch (...) {
                ::_exit(2);
            }
            ::pause();
            ::_exit(0);
        }
        ::close(fds[1]);
        std::vector<std::int64_t> committed;
        std::int64_t id = 0;
        while (committed.size() < 300 && read_id(fds[0], id)) committed.push_back(id);
        ::kill(pid, SIGKILL);
        int status = 0;
        ::waitpid(pid, &status, 0);
        QVERIFY(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        while (read_id(fds[0], id)) committed.push_back(id);  // reported before it died
        ::close(fds[0]);
        QVERIFY2(committed.size() >= 300 && committed.size() < std::size_t(kImages),
                 "the child was not killed mid-burst");

        Store store{Workspace(ws)};
        QCOMPARE(store.connection().execAndGet("PRAGMA integrity_check").getString(), std::string("ok"));
        for (std::int64_t c : committed) {
            QCOMPARE(store.current_label(c), Label::Dislike);
            QCOMPARE(store.label_history(c).size(), std::size_t(2));
        }
        // At most the one write in flight may have committed without being reported.
        const LabelCounts counts = store.counts();
        QCOMPARE(counts.images, std::int64_t(kImages));
        QVERIFY(counts.disliked == std::int64_t(committed.size()) ||
                counts.disliked == std::int64_t(committed.size()) + 1);
        // The imported labels are the images' base labels; the history holds the relabels only.
        QCOMPARE(store.connection().execAndGet("SELECT COUNT(*) FROM labels").getInt64(), counts.disliked);
    }

    // Killed halfway through an export into a new folder, and through an overwrite of an existing
    // dataset: the target is absent, or still the old complete dataset.
    void exportKilledLeavesNoPartialDataset_data() {
        QTest::addColumn<bool>("overwrite");
        QTest::newRow("new target") << false;
        QTest::newRow("overwrite") << true;
    }
    void exportKilledLeavesNoPartialDataset() {
        QFETCH(bool, overwrite);
        const std::string tag = overwrite ? "over" : "new";
        const fs::path ws = kto::test::temp_path(tmp_, "export-ws-" + tag);
        const int kImages = 200;
        import_images(ws, kto::test::temp_path(tmp_, "export-data-" + tag), kImages, kImages);
        const fs::path parent = kto::test::temp_path(tmp_, "export-out-" + tag);
        const fs::path target = parent / "dataset";
        std::string old_csv;
        if (overwrite) {
            Store store{Workspace(ws)};
            ExportOptions first;
            first.query.limit = 10;
            export_dataset(store, target, first);
            old_csv = kto::test::read_file(target / kDatasetCsvName);
        }

        int report[2], hold[2];
        QVERIFY(::pipe(report) == 0 && ::pipe(hold) == 0);
        const pid_t pid = ::fork();
        QVERIFY(pid >= 0);
        if (pid == 0) {  // child: export, reporting progress; halfway it stops and waits to die
            ::close(report[0]);
            ::close(hold[1]);
            try {
                Store store{Workspace(ws)};
                ExportOptions opts;
                opts.overwrite = overwrite;
                opts.progress = [&](std::int64_t done, std::int64_t total) {
                    write_id(report[1], done);
                    if (done == total / 2) {
                        char c;
                        (void)::read(hold[0], &c, 1);  // blocks until killed
                    }
                    return true;
                };
                export_dataset(store, target, opts);
            } catch (...) {
                ::_exit(2);
            }
            ::_exit(0);
        }
        ::close(report[1]);
        ::close(hold[0]);
        std::int64_t done = 0;
        while (done < kImages / 2 && read_id(report[0], done)) {
        }
        QCOMPARE(done, std::int64_t(kImages / 2));
        ::kill(pid, SIGKILL);
        int status = 0;
        ::waitpid(pid, &status, 0);
        ::close(report[0]);
        ::close(hold[1]);
        QVERIFY(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

        if (overwrite) {
            QCOMPARE(kto::test::read_file(target / kDatasetCsvName), old_csv);
            verify_complete_dataset(target, 10);
        } else {
            QVERIFY(!fs::exists(target));
        }
        // The half-built folder is hidden beside the target, and the next export clears it.
        std::size_t hidden = 0;
        for (const auto& e : fs::directory_iterator(parent)) {
            if (e.path().filename().string().front() == '.') ++hidden;
        }
        QCOMPARE(hidden, std::size_t(1));
        Store store{Workspace(ws)};
        ExportOptions again;
        again.overwrite = true;
        export_dataset(store, target, again);
        verify_complete_dataset(target, kImages);
        std::vector<std::string> names;
        for (const auto& e : fs::directory_iterator(parent)) names.push_back(e.path().filename().string());
        QCOMPARE(names, std::vector<std::string>{"dataset"});
    }
};

QTEST_GUILESS_MAIN(TestCrash)
#include "test_crash.moc"
