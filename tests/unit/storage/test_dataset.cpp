// Dataset export/import: byte-exact CSV for nasty captions, round trip, crash-safe target
// handling, lazy hashing, path-escape rejection, malformed CSVs that import nothing.
#include <QTemporaryDir>
#include <QtTest>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <unistd.h>

#include "core/common/error.h"
#include "storage/dataset/csv.h"
#include "storage/dataset/dataset_export.h"
#include "storage/dataset/dataset_import.h"
#include "storage/store/sha256.h"
#include "storage/store/store.h"
#include "storage_fixtures.h"
#include "tests/support/test_paths.h"

using namespace kto::storage;
namespace fs = std::filesystem;
using kto::test::read_file;
using kto::test::tiny_png;
using kto::test::write_file;

namespace {

const fs::path kCsvFixtures = fs::path(kto::test::test_data_dir()) / "csv";

// Captions a CSV writer gets wrong: commas, quotes, line breaks, edge spaces, emoji, CJK.
const std::vector<std::string> kNastyCaptions = {
    "a plain caption",
    "a cat, on a mat",
    "say \"cheese\"",
    "line one\nline two",
    "  leading and trailing  ",
    "emoji 🐱🎨 party",
    "猫が好き 中文 한국어",
    "crlf\r\ninside",
    "'single' quotes, \"double\" quotes and a comma",
    "",
    "\"",
};

std::vector<std::vector<std::string>> read_csv(const fs::path& file) {
    CsvReader r(file);
    std::vector<std::vector<std::string>> rows;
    std::vector<std::string> f;
    while (r.next(f)) rows.push_back(f);
    return rows;
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const kto::Error& e) {
        return e.what();
    }
    return "";
}

std::vector<std::string> entries(const fs::path& dir) {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace

class TestDataset : public QObject {
    Q_OBJECT
    QTemporaryDir tmp_;
    int n_ = 0;

    fs::path fresh(const std::string& stem = "d") {
        return kto::test::temp_path(tmp_, stem + std::to_string(n_++));
    }

    // A workspace with the nasty captions, alternately liked and disliked, plus one unlabeled.
    std::unique_ptr<Store> nasty_store() {
        StoreOptions opts;
        opts.clock = kto::test::stepping_clock();
        auto store = std::make_unique<Store>(Workspace(fresh("ws")), opts);
        const auto model = store->ensure_model("demo, v1", "/models/demo");
        for (std::size_t i = 0; i < kNastyCaptions.size(); ++i) {
            GenerationInput g;
            g.prompt = kNastyCaptions[i];
            g.seed = 1000 + static_cast<std::int64_t>(i);
            g.steps = 20;
            g.cfg = i % 2 ? 7.5 : 3.0;
            g.sampler = "euler_ancestral";
            g.width = g.height = 64;
            g.model_id = model;
            ImageInput im;
            im.encoded = tiny_png(static_cast<unsigned char>(i));
            const auto id = store->add_generation(g, {im}).image_ids[0];
            store->set_label(id, i % 2 ? Label::Dislike : Label::Like);
        }
        kto::test::add_images(*store, "never labelled", 1, 200);
        return store;
    }

    // A dataset folder with the fixture CSV and images train/a.png, train/b.png.
    fs::path dataset_with(const fs::path& csv_fixture) {
        const fs::path d = fresh("dataset");
        write_file(d / "train/a.png", tiny_png(1));
        write_file(d / "train/b.png", tiny_png(2));
        fs::copy_file(csv_fixture, d / kDatasetCsvName);
        return d;
    }

private slots:
    void exportIsByteExact() {
        auto store = nasty_store();
        const fs::path target = fresh("export");
        std::vector<std::pair<std::int64_t, std::int64_t>> progress;
        ExportOptions opts;
        opts.progress = [&](std::int64_t done, std::int64_t total) {
            progress.emplace_back(done, total);
            return true;
        };
        const ExportResult r = export_dataset(*store, target, opts);
        QCOMPARE(r.images, std::int64_t(kNastyCaptions.size()));
        QCOMPARE(r.liked, std::int64_t(6));
        QCOMPARE(r.disliked, std::int64_t(5));
        QCOMPARE(r.files, r.images);
        QCOMPARE(progress.size(), kNastyCaptions.size());
        QCOMPARE(progress.back(), std::make_pair(r.images, r.images));

        const std::string csv = read_file(target / kDatasetCsvName);
        const std::string golden = read_file(kCsvFixtures / "nasty_export.csv");
        if (csv != golden) {
            const fs::path actual = fs::temp_directory_path() / "kto_nasty_export.actual.csv";
            write_file(actual, csv);
            QFAIL(qPrintable("export differs from tests/data/csv/nasty_export.csv; actual output: " +
                             QString::fromStdString(actual.string())));
        }
        // Spot checks that do not depend on the fixture.
        QVERIFY(csv.rfind("file_path,caption,label,file_name,split,seed,model,sampler,steps,cfg\n", 0) == 0);
        QVERIFY(csv.find(",\"a cat, on a mat\",exclusive_lose,") != std::string::npos);
        QVERIFY(csv.find(",\"say \"\"cheese\"\"\",exclusive_win,") != std::string::npos);
        QVERIFY(csv.find(",\"  leading and trailing  \",") != std::string::npos);
        QVERIFY(csv.find(",\"demo, v1\",euler_ancestral,20,7.5\n") != std::string::npos);
        QVERIFY(csv.find("\r\n") == csv.find("crlf\r\ninside") + 4);  // only inside the caption

        // Every row's file exists under train/, named by its SHA-256, and file_name/split repeat.
        const auto rows = read_csv(target / kDatasetCsvName);
        QCOMPARE(rows.size(), kNastyCaptions.size() + 1);
        for (std::size_t i = 1; i < rows.size(); ++i) {
            QCOMPARE(rows[i][1], kNastyCaptions[i - 1]);
            QCOMPARE(rows[i][3], rows[i][0]);
            QCOMPARE(rows[i][4], rows[i][2]);
            const std::string bytes = read_file(target / rows[i][0]);
            QCOMPARE(bytes, tiny_png(static_cast<unsigned char>(i - 1)));
            QCOMPARE(rows[i][0], "train/" + sha256_hex(bytes) + ".png");
        }
        QCOMPARE(entries(target), (std::vector<std::string>{"train", kDatasetCsvName}));
    }

    void roundTrip() {
        auto store = nasty_store();
        const fs::path exported = fresh("export");
        export_dataset(*store, exported);

        Store imported_store{Workspace(fresh("ws"))};
        const ImportReport rep = import_dataset(imported_store, exported);
        QCOMPARE(rep.rows, std::int64_t(kNastyCaptions.size()));
        QCOMPARE(rep.imported, rep.rows);
        QCOMPARE(rep.skipped, std::int64_t(0));
        QCOMPARE(rep.liked, std::int64_t(6));
        QCOMPARE(rep.disliked, std::int64_t(5));

        const auto originals = store->query_images([] {
            ImageQuery q;
            q.label = LabelFilter::Labeled;
            return q;
        }());
        const auto copies = imported_store.query_images({});
        QCOMPARE(copies.size(), originals.size());
        for (std::size_t i = 0; i < copies.size(); ++i) {
            QCOMPARE(copies[i].prompt, originals[i].prompt);
            QCOMPARE(copies[i].label, originals[i].label);
            QCOMPARE(copies[i].seed, originals[i].seed);
            QCOMPARE(copies[i].sampler, originals[i].sampler);
            QCOMPARE(copies[i].steps, originals[i].steps);
            QCOMPARE(copies[i].cfg, originals[i].cfg);
            QCOMPARE(copies[i].model_name, "imported:" + exported.filename().string());
            QVERIFY(copies[i].path.is_absolute());
            QCOMPARE(copies[i].path.parent_path(), exported / "train");
            QVERIFY(!copies[i].sha256);  // hashed lazily
            QCOMPARE(copies[i].byte_size, originals[i].byte_size);
            const auto h = imported_store.label_history(copies[i].id);
            QCOMPARE(h.size(), std::size_t(1));  // the label it came with
            QVERIFY(h[0].imported);
            QCOMPARE(h[0].value, originals[i].label);
            QVERIFY(!h[0].undone_at);
        }
        // An imported label is not a change made here: nothing to undo until the image is relabelled,
        // and undoing the relabel brings the imported label back.
        const std::int64_t first = copies[0].id;
        const Label imported = copies[0].label;
        QVERIFY_THROWS_EXCEPTION(kto::Error, imported_store.undo_label(first));
        const Label other = imported == Label::Like ? Label::Dislike : Label::Like;
        imported_store.set_label(first, other);
        QCOMPARE(imported_store.current_label(first), other);
        QCOMPARE(imported_store.label_history(first).size(), std::size_t(2));
        QCOMPARE(imported_store.undo_label(first), imported);
        QCOMPARE(imported_store.current_label(first), imported);
        imported_store.set_label(first, Label::None);  // clearing is a change too
        QCOMPARE(imported_store.counts().unlabeled, std::int64_t(1));
        QCOMPARE(imported_store.undo_label(first), imported);
        // Two rows per imported image: no history rows.
        QCOMPARE(imported_store.connection().execAndGet("SELECT COUNT(*) FROM labels WHERE undone_at IS NULL").getInt(), 0);

        // Exporting the import again gives the same CSV but for the model column.
        const fs::path again = fresh("export");
        export_dataset(imported_store, again);
        auto a = read_csv(exported / kDatasetCsvName), b = read_csv(again / kDatasetCsvName);
        QCOMPARE(b.size(), a.size());
        for (std::size_t i = 1; i < a.size(); ++i) {
            a[i][6].clear();
            b[i][6].clear();
        }
        QCOMPARE(b, a);
        // The export hashed the lazily imported files and kept the hashes.
        for (const auto& img : imported_store.query_images({})) {
            QCOMPARE(img.sha256.value(), sha256_hex(read_file(img.path)));
        }
    }

    void exportFiltersAndDedup() {
        QTemporaryDir dir;
        Store store{Workspace(fresh("ws"))};
        const auto a = kto::test::add_images(store, "same bytes", 1, 5);
        const auto b = kto::test::add_images(store, "same bytes again", 1, 5);
        const auto c = kto::test::add_images(store, "disliked", 1, 6);
        store.set_label(a[0], Label::Like);
        store.set_label(b[0], Label::Like);
        store.set_label(c[0], Label::Dislike);
        ExportOptions opts;
        opts.query.label = LabelFilter::Liked;
        const fs::path t = fresh("export");
        const ExportResult r = export_dataset(store, t, opts);
        QCOMPARE(r.images, std::int64_t(2));
        QCOMPARE(r.files, std::int64_t(1));  // identical images share a file
        QCOMPARE(entries(t / "train").size(), std::size_t(1));
        opts.query.label = LabelFilter::Unlabeled;
        QVERIFY_THROWS_EXCEPTION(kto::Error, export_dataset(store, fresh("export"), opts));
        opts.query = {};
        opts.query.prompt_contains = "disliked";
        QCOMPARE(export_dataset(store, fresh("export"), opts).disliked, std::int64_t(1));
    }

    // An existing non-empty target is refused unless overwriting; overwriting swaps complete
    // datasets; failures and cancels leave the target as it was and no staging folder behind.
    void targetHandling() {
        auto store = nasty_store();
        const fs::path parent = fresh("parent");
        const fs::path target = parent / "dataset";
        write_file(target / "keep.txt", "user file");
        QString e = QString::fromStdString(error_of([&] { export_dataset(*store, target); }));
        QVERIFY2(e.contains("not empty") && e.contains("--overwrite"), qPrintable(e));
        QCOMPARE(read_file(target / "keep.txt"), std::string("user file"));

        ExportOptions cancel;
        cancel.overwrite = true;
        cancel.progress = [](std::int64_t done, std::int64_t) { return done < 3; };
        QVERIFY_THROWS_EXCEPTION(kto::Cancelled, export_dataset(*store, target, cancel));
        QCOMPARE(entries(target), std::vector<std::string>{"keep.txt"});
        QCOMPARE(entries(parent), std::vector<std::string>{"dataset"});

        ExportOptions over;
        over.overwrite = true;
        export_dataset(*store, target, over);
        QCOMPARE(entries(target), (std::vector<std::string>{"train", kDatasetCsvName}));
        QCOMPARE(entries(parent), std::vector<std::string>{"dataset"});

        // An empty existing folder is fine without overwrite; a file in the way is not.
        const fs::path empty = parent / "empty";
        fs::create_directories(empty);
        export_dataset(*store, empty);
        QVERIFY(fs::exists(empty / kDatasetCsvName));
        write_file(parent / "a_file", "x");
        QVERIFY_THROWS_EXCEPTION(kto::Error, export_dataset(*store, parent / "a_file", over));

        // A missing source image aborts the export with its path; nothing appears.
        const auto victim = store->query_images({}).front();
        fs::remove(victim.path);
        e = QString::fromStdString(error_of([&] { export_dataset(*store, parent / "broken"); }));
        QVERIFY2(e.contains(QString::fromStdString(victim.path.string())), qPrintable(e));
        QVERIFY(!fs::exists(parent / "broken"));
        QCOMPARE(entries(parent), (std::vector<std::string>{"a_file", "dataset", "empty"}));

        // A staging folder left by a killed export (its process gone) is cleaned up.
        const fs::path stale = parent / ".dataset.kto-export-999999999-deadbeef";
        write_file(stale / "train_processed_v3.csv", "partial");
        fs::remove(parent / "a_file");
        store->set_label(victim.id, Label::None);
        export_dataset(*store, target, over);
        QVERIFY(!fs::exists(stale));
    }

    void importReadsTrainerSpellingBomCrlf() {
        for (auto [policy, liked, disliked, skipped] :
             {std::tuple{IntersectionPolicy::Like, 2, 1, 0}, std::tuple{IntersectionPolicy::Dislike, 1, 2, 0},
              std::tuple{IntersectionPolicy::Skip, 1, 1, 1}}) {
            const fs::path d = dataset_with(kCsvFixtures / "valid/bom_crlf_trainer_columns.csv");
            Store store{Workspace(fresh("ws"))};
            ImportOptions opts;
            opts.intersections = policy;
            const ImportReport r = import_dataset(store, d, opts);
            QCOMPARE(r.rows, std::int64_t(3));
            QCOMPARE(r.liked, std::int64_t(liked));
            QCOMPARE(r.disliked, std::int64_t(disliked));
            QCOMPARE(r.skipped, std::int64_t(skipped));
            const auto images = store.query_images({});
            QCOMPARE(images[0].prompt, std::string("a cat,\r\non two lines"));
            QCOMPARE(images[0].path, fs::canonical(d) / "train/a.png");
            QCOMPARE(images[1].path, fs::canonical(d) / "train/b.png");  // bare name under train/
            QCOMPARE(images[1].byte_size, std::int64_t(tiny_png(2).size()));
            QCOMPARE(store.ensure_image_hash(images[1].id), sha256_hex(tiny_png(2)));
            QCOMPARE(store.find_model("imported:" + d.filename().string())->id, r.model_id);
            // Foreign keys, off for the bulk insert, are enforced again; the rows are consistent.
            QCOMPARE(store.connection().execAndGet("PRAGMA foreign_keys").getInt(), 1);
            QCOMPARE(store.connection().execAndGet("SELECT COUNT(*) FROM pragma_foreign_key_check").getInt(), 0);
        }
    }

    void reimportAddsOnlyNewImages() {
        const fs::path d = dataset_with(kCsvFixtures / "valid/bom_crlf_trainer_columns.csv");
        Store store{Workspace(fresh("ws-reimport"))};
        const ImportReport first = import_dataset(store, d);
        QCOMPARE(first.imported, std::int64_t(3));
        const ImportReport again = import_dataset(store, d);
        QCOMPARE(again.rows, std::int64_t(3));
        QCOMPARE(again.imported, std::int64_t(0));
        QCOMPARE(again.skipped, std::int64_t(3));
        QCOMPARE(again.skipped_by_reason.at(kSkipAlreadyImported), std::int64_t(3));
        QCOMPARE(again.model_id, first.model_id);
        QCOMPARE(store.query_images({}).size(), size_t(3));
        // A labelled change made after the first import survives the second.
        const auto img = store.query_images({}).front();
        store.set_label(img.id, Label::Dislike);
        import_dataset(store, d);
        QCOMPARE(store.query_images({}).front().label, Label::Dislike);
    }

    void pathEscapesAreSkippedAndReported() {
        const fs::path d = dataset_with(kCsvFixtures / "valid/escapes.csv");
        const fs::path outside = fresh("outside");
        write_file(outside / "secret.png", tiny_png(9));
        write_file(outside / "c.png", tiny_png(8));
        write_file(d.parent_path() / "outside.png", tiny_png(7));
        fs::create_symlink(outside / "secret.png", d / "train/link_out.png");
        fs::create_symlink(outside, d / "train/dir_link_out");
        fs::create_symlink(d / "train/b.png", d / "train/link_in.png");
        fs::create_directories(d / "train/sub");

        Store store{Workspace(fresh("ws"))};
        const ImportReport r = import_dataset(store, d);
        QCOMPARE(r.rows, std::int64_t(9));
        QCOMPARE(r.imported, std::int64_t(2));  // a.png and the link that stays inside
        QCOMPARE(r.skipped, std::int64_t(7));
        const std::map<std::string, std::int64_t> expected = {
            {kSkipAbsolute, 1}, {kSkipParent, 1}, {kSkipLinkOut, 2},
            {kSkipMissing, 1},  {kSkipNotAFile, 1}, {kSkipEmptyPath, 1}};
        QCOMPARE(r.skipped_by_reason, expected);
        QCOMPARE(r.skipped_rows.size(), std::size_t(7));
        const std::vector<std::pair<std::int64_t, const char*>> lines = {
            {3, kSkipAbsolute}, {4, kSkipParent}, {5, kSkipLinkOut}, {6, kSkipLinkOut},
            {7, kSkipMissing},  {8, kSkipNotAFile}, {10, kSkipEmptyPath}};
        for (std::size_t i = 0; i < lines.size(); ++i) {
            QCOMPARE(r.skipped_rows[i].line, lines[i].first);
            QVERIFY2(QString::fromStdString(r.skipped_rows[i].reason).endsWith(lines[i].second),
                     r.skipped_rows[i].reason.c_str());
        }
        for (const auto& img : store.query_images({})) {
            QVERIFY2(img.path.string().rfind(fs::canonical(d).string() + "/", 0) == 0, img.path.c_str());
        }
    }

    void malformedCsvsImportNothing_data() {
        QTest::addColumn<QString>("fixture");
        QTest::addColumn<QString>("expected");
        QTest::newRow("unterminated quote") << "unterminated_quote.csv" << "line 3: unterminated quoted field";
        QTest::newRow("wrong columns") << "wrong_columns.csv" << "line 1: missing column 'file_path' (or 'file_name') and 'label' (or 'split')";
        QTest::newRow("field count") << "field_count.csv" << "line 3: 4 fields, but the header has 3";
        QTest::newRow("bad label") << "bad_label.csv" << "line 3: label 'maybe' is not exclusive_win, exclusive_lose or intersections";
        QTest::newRow("empty file") << "empty.csv" << "line 1: empty file";
        QTest::newRow("bad seed") << "bad_seed.csv" << "line 3: seed 'twelve' is not a number";
        QTest::newRow("stray quote") << "stray_quote.csv" << "line 3: quote inside an unquoted field";
    }
    void malformedCsvsImportNothing() {
        QFETCH(QString, fixture);
        QFETCH(QString, expected);
        const fs::path d = dataset_with(kCsvFixtures / "malformed" / fixture.toStdString());
        Store store{Workspace(fresh("ws"))};
        const QString e = QString::fromStdString(error_of([&] { import_dataset(store, d); }));
        QVERIFY2(e.contains(expected), qPrintable(e));
        QVERIFY2(e.contains(kDatasetCsvName), qPrintable(e));  // names the file
        QCOMPARE(store.counts().images, std::int64_t(0));
        QCOMPARE(store.models().size(), std::size_t(0));
        QCOMPARE(store.connection().execAndGet("SELECT COUNT(*) FROM labels").getInt(), 0);
        QCOMPARE(store.connection().execAndGet("PRAGMA foreign_keys").getInt(), 1);  // back on after the rollback
        // The store is still usable afterwards.
        kto::test::add_images(store, "after a failed import", 1);
        QCOMPARE(store.counts().images, std::int64_t(1));
    }

    void importErrorsForMissingFolderOrCsv() {
        Store store{Workspace(fresh("ws"))};
        QVERIFY_THROWS_EXCEPTION(kto::Error, import_dataset(store, fresh("nope")));
        const fs::path d = fresh("dataset");
        fs::create_directories(d);
        const QString e = QString::fromStdString(error_of([&] { import_dataset(store, d); }));
        QVERIFY2(e.contains("no train_processed_v3.csv"), qPrintable(e));
    }

    // The import reads and writes on two threads, in batches: an error many batches in still
    // rolls everything back, and rows, skips and their order come out as from one thread.
    void importErrorDeepInALargeFileImportsNothing() {
        const fs::path d = fresh("dataset");
        write_file(d / "train/a.png", tiny_png(1));
        std::string csv = "file_path,caption,label\n";
        for (int i = 0; i < 30000; ++i) {
            const std::string path = i % 1000 == 7 ? "train/missing.png" : "train/a.png";
            csv += path + ",row " + std::to_string(i) + (i == 25000 ? ",maybe\n" : ",exclusive_lose\n");
        }
        write_file(d / kDatasetCsvName, csv);
        Store store{Workspace(fresh("ws"))};
        const QString e = QString::fromStdString(error_of([&] { import_dataset(store, d); }));
        QVERIFY2(e.contains("line 25002: label 'maybe'"), qPrintable(e));
        QCOMPARE(store.counts().images, std::int64_t(0));
        QCOMPARE(store.connection().execAndGet("SELECT COUNT(*) FROM generations").getInt(), 0);
        QCOMPARE(store.connection().execAndGet("PRAGMA foreign_keys").getInt(), 1);

        std::string fixed = csv;
        fixed.replace(fixed.find(",maybe\n"), 7, ",exclusive_win\n");
        write_file(d / kDatasetCsvName, fixed);
        ImportOptions opts;
        opts.max_listed_skips = 5;
        const ImportReport r = import_dataset(store, d, opts);
        QCOMPARE(r.rows, std::int64_t(30000));
        QCOMPARE(r.skipped, std::int64_t(30));
        QCOMPARE(r.imported, std::int64_t(29970));
        QCOMPARE(r.liked, std::int64_t(1));
        QCOMPARE(r.disliked, std::int64_t(29969));
        QCOMPARE(r.skipped_rows.size(), std::size_t(5));
        QCOMPARE(r.skipped_rows[0].line, std::int64_t(9));     // row 7: the header is line 1
        QCOMPARE(r.skipped_rows[4].line, std::int64_t(4009));
        // Rows keep the CSV's order: image ids follow the rows.
        SQLite::Statement q(store.connection(),
                            "SELECT g.prompt FROM images i JOIN generations g ON g.id = i.generation_id "
                            "ORDER BY i.id LIMIT 3 OFFSET 7");
        std::vector<std::string> prompts;
        while (q.executeStep()) prompts.push_back(q.getColumn(0).getString());
        QCOMPARE(prompts, (std::vector<std::string>{"row 8", "row 9", "row 10"}));
        QCOMPARE(store.connection().execAndGet("SELECT label FROM images i JOIN generations g ON "
                                               "g.id = i.generation_id WHERE g.prompt = 'row 25000'").getInt(), 1);
    }

    // Cancelling through the progress callback imports nothing.
    void importCancelImportsNothing() {
        const fs::path d = fresh("dataset");
        write_file(d / "train/a.png", tiny_png(1));
        std::string csv = "file_path,caption,label\n";
        for (int i = 0; i < 20000; ++i) csv += "train/a.png,row " + std::to_string(i) + ",exclusive_win\n";
        write_file(d / kDatasetCsvName, csv);
        Store store{Workspace(fresh("ws"))};
        ImportOptions opts;
        int calls = 0;
        opts.progress = [&](std::uint64_t done, std::uint64_t total) {
            ++calls;
            return done < total / 2;
        };
        QVERIFY_THROWS_EXCEPTION(kto::Cancelled, import_dataset(store, d, opts));
        QVERIFY(calls >= 1);
        QCOMPARE(store.counts().images, std::int64_t(0));
        opts.progress = nullptr;
        QCOMPARE(import_dataset(store, d, opts).imported, std::int64_t(20000));
        QCOMPARE(store.counts().liked, std::int64_t(20000));
        // One file named by 20,000 rows is copied and hashed once, and every row gets its hash.
        const ExportResult r = export_dataset(store, fresh("export"));
        QCOMPARE(r.images, std::int64_t(20000));
        QCOMPARE(r.files, std::int64_t(1));
        ImageQuery unhashed;
        unhashed.limit = 1;
        unhashed.newest_first = true;
        QCOMPARE(store.query_images(unhashed).front().sha256.value(), sha256_hex(tiny_png(1)));
    }
};

QTEST_GUILESS_MAIN(TestDataset)
#include "test_dataset.moc"
