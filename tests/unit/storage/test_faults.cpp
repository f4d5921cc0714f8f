// Fault survival of the label store and the dataset export (issue 9), beside test_crash.cpp (which
// SIGKILLs a label burst and an export):
//   - disk full during an export, simulated with RLIMIT_FSIZE in a child process: a clear error,
//     the earlier dataset under the target name intact, no staging folder left behind;
//   - a read-only workspace opens read-only: queries and exports work, writes fail saying why;
//   - two processes writing one workspace at the same time (from a fresh folder, so they also race
//     on creating the database): both finish, nothing is lost, the database is intact.
#include <QTemporaryDir>
#include <QtTest>

#include <SQLiteCpp/Database.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "storage/dataset/dataset_export.h"
#include "storage/dataset/dataset_import.h"
#include "storage/store/store.h"
#include "storage_fixtures.h"

using namespace kto::storage;
namespace fs = std::filesystem;

namespace {

// Runs `body` in a forked child; returns its exit status and what it wrote to the pipe.
template <class F>
std::pair<int, std::string> in_child(F&& body) {
    int fds[2];
    if (::pipe(fds) != 0) return {-1, "pipe failed"};
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::close(fds[0]);
        int code = 0;
        std::string message;
        try {
            body();
        } catch (const kto::Error& e) {
            code = 1;
            message = e.what();
        } catch (const std::exception& e) {
            code = 2;
            message = std::string("not a kto::Error: ") + e.what();
        }
        if (!message.empty() && ::write(fds[1], message.data(), message.size()) < 0) code = 3;
        ::_exit(code);
    }
    ::close(fds[1]);
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
    ::close(fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), out};
}

// `count` liked images in `ws` (imported in place from `dataset`); image i is `sizes(i)` bytes.
template <class Size>
void import_sized(const fs::path& ws, const fs::path& dataset, int count, Size sizes) {
    std::string csv = "file_path,caption,label\n";
    for (int i = 0; i < count; ++i) {
        std::string bytes = kto::test::tiny_png(static_cast<unsigned char>(i));
        bytes.resize(std::max<std::size_t>(bytes.size(), sizes(i)), static_cast<char>(i));
        kto::test::write_file(dataset / "train" / ("img" + std::to_string(i) + ".png"), bytes);
        csv += "train/img" + std::to_string(i) + ".png,prompt " + std::to_string(i) + ",exclusive_win\n";
    }
    kto::test::write_file(dataset / kDatasetCsvName, csv);
    Store store{Workspace(ws)};
    QCOMPARE(import_dataset(store, dataset).imported, std::int64_t(count));
}

std::vector<std::string> entries(const fs::path& dir) {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
}

}  // namespace

class TestFaults : public QObject {
    Q_OBJECT
    QTemporaryDir tmp_;

private slots:
    void diskFullDuringExportKeepsEarlierDataset() {
        const fs::path ws = kto::test::temp_path(tmp_, "full-ws");
        // Image 7 is 512 KiB; the others are small. The file-size limit below lets everything but
        // that image (and the first, small export) be written.
        import_sized(ws, kto::test::temp_path(tmp_, "full-data"), 12,
                     [](int i) { return i == 7 ? std::size_t(512 * 1024) : std::size_t(100); });
        const fs::path parent = kto::test::temp_path(tmp_, "full-out");
        const fs::path target = parent / "dataset";
        {
            Store store{Workspace(ws)};
            ExportOptions first;
            first.query.limit = 5;
            export_dataset(store, target, first);
        }
        const std::string old_csv = kto::test::read_file(target / kDatasetCsvName);
        const auto old_files = entries(target / kDatasetImageDir);
        const std::string db_before = kto::test::read_file(Workspace(ws).database_path());

        const auto [code, message] = in_child([&] {
            ::signal(SIGXFSZ, SIG_IGN);  // as on a full disk: write() fails (EFBIG) instead
            const rlimit limit{256 * 1024, 256 * 1024};
            if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) throw kto::Error("setrlimit failed");
            Store store{Workspace(ws)};
            ExportOptions all;
            all.overwrite = true;
            export_dataset(store, target, all);
        });
        QCOMPARE(code, 1);  // a kto::Error, not a crash or another exception
        QVERIFY2(message.find("img7.png") != std::string::npos || message.find("File too large") != std::string::npos,
                 message.c_str());
        QVERIFY2(message.find("File too large") != std::string::npos, message.c_str());

        // The earlier dataset is untouched and nothing half-built is left beside it.
        QCOMPARE(kto::test::read_file(target / kDatasetCsvName), old_csv);
        QCOMPARE(entries(target / kDatasetImageDir), old_files);
        QCOMPARE(entries(parent), std::vector<std::string>{"dataset"});
        Store store{Workspace(ws)};
        QCOMPARE(store.connection().execAndGet("PRAGMA integrity_check").getString(), std::string("ok"));
        QCOMPARE(store.counts().liked, std::int64_t(12));
        (void)db_before;

        // With space again, the same export succeeds.
        ExportOptions all;
        all.overwrite = true;
        QCOMPARE(export_dataset(store, target, all).images, std::int64_t(12));
    }

    void readOnlyWorkspaceOpensReadOnly() {
        const fs::path ws = kto::test::temp_path(tmp_, "ro-ws");
        import_sized(ws, kto::test::temp_path(tmp_, "ro-data"), 3, [](int) { return std::size_t(100); });
        {
            Store store{Workspace(ws)};
            store.set_label(1, Label::Dislike);
        }
        const std::string db_before = kto::test::read_file(Workspace(ws).database_path());
        // Readable by everyone, writable by no one; the export target and an empty workspace
        // folder beside it are writable / read-only respectively.
        const fs::path out = kto::test::temp_path(tmp_, "ro-out");
        const fs::path empty = kto::test::temp_path(tmp_, "ro-empty");
        fs::create_directories(out);
        fs::create_directories(empty / "images");
        fs::create_directories(empty / "runs");
        const auto rx = fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read |
                        fs::perms::group_exec | fs::perms::others_read | fs::perms::others_exec;
        fs::permissions(kto::test::temp_path(tmp_), rx | fs::perms::owner_write);
        for (const auto& d : {ws, ws / "images", ws / "runs", empty}) fs::permissions(d, rx);
        for (const auto& e : fs::recursive_directory_iterator(ws))
            if (e.is_regular_file()) fs::permissions(e.path(), fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read);
        fs::permissions(out, fs::perms::all);

        // In a child that, when the tests run as root, becomes `nobody` (root ignores permissions).
        const auto [code, message] = in_child([&] {
            if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0))
                throw std::runtime_error("cannot drop root privileges");
            auto need = [](bool ok, const std::string& what) {
                if (!ok) throw std::runtime_error("check failed: " + what);
            };
            Store store{Workspace(ws)};
            need(store.read_only(), "opened read-only");
            need(store.read_only_message().find("read-only") != std::string::npos, store.read_only_message());
            need(store.counts().images == 3, "counts");
            need(store.current_label(1) == Label::Dislike, "label 1 reads back");
            need(export_dataset(store, out / "dataset").images == 3, "export from a read-only workspace");
            std::string msg;
            try {
                store.set_label(2, Label::Dislike);
            } catch (const kto::Error& e) {
                msg = e.what();
            }
            need(msg.find("read-only") != std::string::npos && msg.find(ws.string()) != std::string::npos,
                 "write refused with a clear message, got: " + msg);
            need(store.current_label(2) == Label::Like, "refused write changed nothing");
            msg.clear();
            try {
                Store s{Workspace(empty)};
            } catch (const kto::Error& e) {
                msg = e.what();
            }
            need(msg.find("read-only") != std::string::npos && msg.find("writable workspace") != std::string::npos,
                 "empty read-only folder refused with advice, got: " + msg);
        });
        for (const auto& d : {ws, ws / "images", ws / "runs", empty}) fs::permissions(d, fs::perms::owner_all);
        fs::permissions(ws / "studio.sqlite3", fs::perms::owner_write, fs::perm_options::add);
        QVERIFY2(code == 0, message.c_str());
        QCOMPARE(kto::test::read_file(Workspace(ws).database_path()), db_before);
    }

    void twoProcessesOnOneWorkspace() {
        const fs::path ws = kto::test::temp_path(tmp_, "two-ws");  // created by the racing children
        constexpr int kEach = 150;
        int go[2];
        QVERIFY(::pipe(go) == 0);
        std::vector<pid_t> pids;
        for (int who = 0; who < 2; ++who) {
            const pid_t pid = ::fork();
            QVERIFY(pid >= 0);
            if (pid == 0) {
                ::close(go[1]);
                char c;
                (void)::read(go[0], &c, 1);  // both start together
                try {
                    Store store{Workspace(ws)};
                    const std::int64_t model = store.ensure_model("racer");
                    for (int i = 0; i < kEach; ++i) {
                        GenerationInput g;
                        g.prompt = "process " + std::to_string(who) + " image " + std::to_string(i);
                        g.seed = i;
                        g.steps = 1;
                        g.sampler = "euler";
                        g.width = g.height = 1;
                        g.model_id = model;
                        ImageInput img;
                        img.encoded = kto::test::tiny_png(static_cast<unsigned char>(i)) + std::to_string(who);
                        const auto added = store.add_generation(g, {img});
                        store.set_label(added.image_ids.at(0), i % 2 ? Label::Like : Label::Dislike);
                    }
                } catch (const std::exception& e) {
                    std::fprintf(stderr, "writer %d: %s\n", who, e.what());
                    ::_exit(1);
                }
                ::_exit(0);
            }
            pids.push_back(pid);
        }
        ::close(go[0]);
        ::close(go[1]);  // EOF releases both
        for (pid_t pid : pids) {
            int status = 0;
            ::waitpid(pid, &status, 0);
            QVERIFY2(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a writer failed (see stderr)");
        }
        Store store{Workspace(ws)};
        QCOMPARE(store.connection().execAndGet("PRAGMA integrity_check").getString(), std::string("ok"));
        const LabelCounts c = store.counts();
        QCOMPARE(c.images, std::int64_t(2 * kEach));
        QCOMPARE(c.liked, std::int64_t(kEach));
        QCOMPARE(c.disliked, std::int64_t(kEach));
        QCOMPARE(store.models().size(), std::size_t(1));
        // Every image file is there and content-addressed (its name is its hash).
        for (const auto& img : store.query_images({})) {
            QVERIFY2(fs::is_regular_file(store.workspace().resolve(img.file)), img.file.c_str());
        }
    }
};

QTEST_GUILESS_MAIN(TestFaults)
#include "test_faults.moc"
