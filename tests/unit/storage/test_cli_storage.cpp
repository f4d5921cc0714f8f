// The label-store commands of kto-studio-cli (import, export, label, stats, list), run as a user
// would: exit status, stdout, and a message on stderr for every failure.
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QTemporaryDir>
#include <QtTest>

#include <SQLiteCpp/Database.h>

#include "storage/dataset/dataset_export.h"
#include "storage_fixtures.h"
#include "tests/support/test_paths.h"

namespace fs = std::filesystem;

namespace {

struct Run {
    int code = -1;
    QString out;
    QString err;
};

Run cli(const QStringList& args, const QProcessEnvironment& env = QProcessEnvironment::systemEnvironment()) {
    QProcess p;
    p.setProcessEnvironment(env);
    p.start(QString::fromStdString(kto::test::cli_path()), args);
    Run r;
    if (!p.waitForFinished(60000)) {
        r.err = "did not finish: " + p.errorString();
        return r;
    }
    r.code = p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1;
    r.out = QString::fromUtf8(p.readAllStandardOutput());
    r.err = QString::fromUtf8(p.readAllStandardError());
    return r;
}

QJsonObject json_of(const QString& line) {
    QJsonParseError e;
    const auto doc = QJsonDocument::fromJson(line.toUtf8(), &e);
    if (e.error != QJsonParseError::NoError) qWarning() << "bad JSON:" << line << e.errorString();
    return doc.object();
}

}  // namespace

class TestCliStorage : public QObject {
    Q_OBJECT
    QTemporaryDir tmp_;
    QString ws_;
    fs::path dataset_;

private slots:
    void initTestCase() {
        if (!fs::exists(kto::test::cli_path())) {
            QFAIL(qPrintable("kto-studio-cli is not built (" + QString::fromStdString(kto::test::cli_path()) +
                             "); build the kto-studio-cli target"));
        }
        ws_ = QString::fromStdString(kto::test::temp_path(tmp_, "ws").string());
        dataset_ = kto::test::temp_path(tmp_, "dataset");
        kto::test::write_file(dataset_ / "train/a.png", kto::test::tiny_png(1));
        kto::test::write_file(dataset_ / "train/b.png", kto::test::tiny_png(2));
        fs::copy_file(fs::path(kto::test::test_data_dir()) / "csv/valid/bom_crlf_trainer_columns.csv",
                      dataset_ / kto::storage::kDatasetCsvName);
    }

    void importPrintsCounts() {
        const Run r = cli({"import", "--workspace", ws_, "--from", QString::fromStdString(dataset_.string())});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        QVERIFY2(r.out.contains("imported 3 of 3 rows") && r.out.contains("2 liked, 1 disliked") &&
                     r.out.contains("skipped 0"),
                 qPrintable(r.out));
    }

    void statsJson() {
        const Run r = cli({"stats", "--workspace", ws_, "--json"});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        QCOMPARE(r.out.trimmed().count('\n'), 0);  // one object
        const QJsonObject j = json_of(r.out);
        QCOMPARE(j["images"].toInt(), 3);
        QCOMPARE(j["liked"].toInt(), 2);
        QCOMPARE(j["disliked"].toInt(), 1);
        QCOMPARE(j["unlabeled"].toInt(), 0);
        const Run human = cli({"stats", "--workspace", ws_});
        QVERIFY(human.code == 0 && human.out.contains("images     3"));
    }

    void listJsonAndFilters() {
        Run r = cli({"list", "--workspace", ws_, "--json"});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        const QStringList lines = r.out.trimmed().split('\n');
        QCOMPARE(lines.size(), 3);
        const QJsonObject first = json_of(lines[0]);
        QCOMPARE(first["id"].toInt(), 1);
        QCOMPARE(first["prompt"].toString(), QString("a cat,\r\non two lines"));
        QCOMPARE(first["label"].toString(), QString("liked"));
        QVERIFY(first["file"].toString().endsWith("/train/a.png"));
        r = cli({"list", "--workspace", ws_, "--json", "--label", "disliked"});
        QCOMPARE(r.out.trimmed().split('\n').size(), 1);
        QCOMPARE(json_of(r.out.trimmed())["prompt"].toString(), QString("a dog"));
        r = cli({"list", "--workspace", ws_, "--json", "--prompt", "CAT", "--limit", "1"});
        QCOMPARE(r.out.trimmed().split('\n').size(), 1);
        r = cli({"list", "--workspace", ws_, "--json", "--since", "2999-01-01"});
        QVERIFY(r.code == 0 && r.out.trimmed().isEmpty());
        r = cli({"list", "--workspace", ws_, "--json", "--model", "no such model"});
        QVERIFY(r.code == 0 && r.out.trimmed().isEmpty());
        r = cli({"list", "--workspace", ws_, "--since", "last tuesday"});
        QVERIFY(r.code != 0 && r.err.contains("--since"));
        r = cli({"list", "--workspace", ws_, "--label", "lovely"});
        QVERIFY(r.code != 0 && !r.err.isEmpty());
    }

    void labelChangesAndErrors() {
        Run r = cli({"label", "--workspace", ws_, "--image", "1", "--dislike"});
        QVERIFY2(r.code == 0 && r.out.contains("image 1: disliked"), qPrintable(r.out + r.err));
        QCOMPARE(json_of(cli({"stats", "--workspace", ws_, "--json"}).out)["disliked"].toInt(), 2);
        r = cli({"label", "--workspace", ws_, "--image", "1", "--undo"});
        QVERIFY2(r.code == 0 && r.out.contains("image 1: liked"), qPrintable(r.out + r.err));
        r = cli({"label", "--workspace", ws_, "--image", "2", "--clear"});
        QVERIFY(r.code == 0 && r.out.contains("unlabeled"));
        r = cli({"label", "--workspace", ws_, "--image", "2", "--undo"});
        QVERIFY(r.code == 0 && r.out.contains("disliked"));
        r = cli({"label", "--workspace", ws_, "--image", "999", "--like"});
        QVERIFY(r.code != 0);
        QVERIFY2(r.err.contains("image 999 does not exist"), qPrintable(r.err));
        r = cli({"label", "--workspace", ws_, "--image", "1"});
        QVERIFY(r.code != 0 && !r.err.isEmpty());
        r = cli({"label", "--workspace", ws_, "--image", "1", "--like", "--dislike"});
        QVERIFY(r.code != 0 && !r.err.isEmpty());
    }

    void exportAndOverwrite() {
        const QString target = QString::fromStdString(kto::test::temp_path(tmp_, "out").string());
        Run r = cli({"export", "--workspace", ws_, "--to", target});
        QVERIFY2(r.code == 0 && r.out.contains("exported 3 images"), qPrintable(r.out + r.err));
        QVERIFY(fs::exists(fs::path(target.toStdString()) / kto::storage::kDatasetCsvName));
        r = cli({"export", "--workspace", ws_, "--to", target});
        QVERIFY(r.code != 0);
        QVERIFY2(r.err.contains("--overwrite"), qPrintable(r.err));
        r = cli({"export", "--workspace", ws_, "--to", target, "--overwrite", "--label", "liked"});
        QVERIFY2(r.code == 0 && r.out.contains("exported 2 images"), qPrintable(r.out + r.err));
    }

    void importErrorsImportNothing() {
        const fs::path bad = kto::test::temp_path(tmp_, "bad");
        kto::test::write_file(bad / "train/a.png", kto::test::tiny_png(1));
        fs::copy_file(fs::path(kto::test::test_data_dir()) / "csv/malformed/bad_label.csv",
                      bad / kto::storage::kDatasetCsvName);
        Run r = cli({"import", "--workspace", ws_, "--from", QString::fromStdString(bad.string())});
        QVERIFY(r.code != 0);
        QVERIFY2(r.err.contains("line 3") && r.err.contains("maybe"), qPrintable(r.err));
        QCOMPARE(json_of(cli({"stats", "--workspace", ws_, "--json"}).out)["images"].toInt(), 3);
        r = cli({"import", "--workspace", ws_});
        QVERIFY(r.code != 0 && r.err.contains("--from"));
    }

    void defaultWorkspaceFromXdg() {
        QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
        const fs::path xdg = kto::test::temp_path(tmp_, "xdg");
        env.insert("XDG_DATA_HOME", QString::fromStdString(xdg.string()));
        const Run r = cli({"stats", "--json"}, env);
        QVERIFY2(r.code == 0, qPrintable(r.err));
        QCOMPARE(json_of(r.out)["workspace"].toString(),
                 QString::fromStdString((xdg / "kto-studio/workspace").string()));
        QVERIFY(fs::exists(xdg / "kto-studio/workspace/studio.sqlite3"));
    }

    void newerDatabaseIsReported() {
        const fs::path ws = kto::test::temp_path(tmp_, "newer");
        QVERIFY(cli({"stats", "--workspace", QString::fromStdString(ws.string())}).code == 0);
        {
            SQLite::Database db((ws / "studio.sqlite3").string(), SQLite::OPEN_READWRITE);
            db.exec("PRAGMA user_version = 42");  // as if a later KTO Studio had written it
        }
        const Run r = cli({"stats", "--workspace", QString::fromStdString(ws.string())});
        QVERIFY(r.code != 0);
        QVERIFY2(r.err.contains("newer") && r.err.contains("42"), qPrintable(r.err));
    }
};

QTEST_GUILESS_MAIN(TestCliStorage)
#include "test_cli_storage.moc"
