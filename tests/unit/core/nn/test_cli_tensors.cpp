// `kto-studio-cli tensors` and `inspect` on the tiny-sd reference model, compared with the goldens.
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QtTest/QtTest>
#include <torch/torch.h>

#include "core/io/safetensors.h"
#include "tests/support/tensor_check.h"
#include "tests/support/test_paths.h"

class TestCliTensors : public QObject {
    Q_OBJECT
    QTemporaryDir tmp;
    std::string ref;

    // Runs the CLI; returns {exit code, stdout, stderr}.
    std::tuple<int, QString, QString> cli(const QStringList& args) {
        QProcess p;
        p.start(QString::fromStdString(kto::test::cli_path()), args);
        if (!p.waitForFinished(300000)) return {-1, {}, "timeout"};
        return {p.exitCode(), QString::fromUtf8(p.readAllStandardOutput()), QString::fromUtf8(p.readAllStandardError())};
    }

private slots:
    void initTestCase() {
        QVERIFY(tmp.isValid());
        ref = kto::test::reference_dir();
    }

    void unetMatchesGolden() {
        auto g = kto::load_safetensors(ref + "/golden/tiny-sd/unet.safetensors");
        const auto in = tmp.path().toStdString() + "/unet_in.safetensors";
        const auto out = tmp.path() + "/unet_out.safetensors";
        kto::write_safetensors(in, {{"sample", g.at("sample")},
                                    {"timestep", g.at("cases.t_per_sample.timestep")},
                                    {"encoder_hidden_states", g.at("encoder_hidden_states")}});
        auto [rc, so, se] = cli({"tensors", "--model", QString::fromStdString(ref + "/tiny-sd"), "--component", "unet",
                                 "--inputs", QString::fromStdString(in), "--out", out});
        QVERIFY2(rc == 0, qPrintable(se));
        auto result = kto::load_safetensors(out.toStdString());
        QCOMPARE(int(result.size()), 1);
        KTO_COMPARE_TENSORS(result.at("out"), g.at("cases.t_per_sample.out"), 1e-4, "cli tensors unet t_per_sample");
    }

    void vaeMatchesGolden() {
        auto g = kto::load_safetensors(ref + "/golden/tiny-sd/vae.safetensors");
        const auto in = tmp.path().toStdString() + "/vae_in.safetensors";
        kto::write_safetensors(in, {{"latents", g.at("nonsquare.decoder_in")}, {"image", g.at("nonsquare.image")}});
        const auto model = QString::fromStdString(ref + "/tiny-sd");
        auto [rc, so, se] = cli({"tensors", "--model", model, "--component", "vae_decode", "--inputs",
                                 QString::fromStdString(in), "--out", tmp.path() + "/dec.safetensors"});
        QVERIFY2(rc == 0, qPrintable(se));
        KTO_COMPARE_TENSORS(kto::load_safetensors((tmp.path() + "/dec.safetensors").toStdString()).at("decoded"),
                            g.at("nonsquare.decoder_out"), 1e-4, "cli tensors vae_decode nonsquare");
        auto [rc2, so2, se2] = cli({"tensors", "--model", model, "--component", "vae_encode", "--inputs",
                                    QString::fromStdString(in), "--out", tmp.path() + "/enc.safetensors"});
        QVERIFY2(rc2 == 0, qPrintable(se2));
        auto enc = kto::load_safetensors((tmp.path() + "/enc.safetensors").toStdString());
        KTO_COMPARE_TENSORS(enc.at("latent_dist.mean"), g.at("nonsquare.latent_dist.mean"), 1e-4, "cli vae_encode mean");
        KTO_COMPARE_TENSORS(enc.at("latent_dist.logvar"), g.at("nonsquare.latent_dist.logvar"), 1e-4, "cli vae_encode logvar");
    }

    void tokenizerAndTextEncoderMatchGolden() {
        // Prompts: the "prompt" fields of tokenizer_prompts.json, as a plain JSON array.
        QFile f(QString::fromStdString(ref + "/golden/tiny-sd/tokenizer_prompts.json"));
        QVERIFY(f.open(QIODevice::ReadOnly));
        QJsonArray prompts;
        for (const auto& p : QJsonDocument::fromJson(f.readAll()).object().value("prompts").toArray())
            prompts.append(p.toObject().value("prompt"));
        QCOMPARE(prompts.size(), 21);
        const auto prompts_path = tmp.path() + "/prompts.json";
        QFile pf(prompts_path);
        QVERIFY(pf.open(QIODevice::WriteOnly));
        pf.write(QJsonDocument(prompts).toJson());
        pf.close();
        const auto model = QString::fromStdString(ref + "/tiny-sd");
        auto [rc, so, se] = cli({"tensors", "--model", model, "--component", "tokenizer", "--prompts", prompts_path,
                                 "--out", tmp.path() + "/tok.safetensors"});
        QVERIFY2(rc == 0, qPrintable(se));
        auto tok = kto::load_safetensors((tmp.path() + "/tok.safetensors").toStdString());
        auto gt = kto::load_safetensors(ref + "/golden/tiny-sd/tokenizer.safetensors");
        QCOMPARE(tok.at("input_ids").scalar_type(), torch::kInt64);
        QVERIFY(torch::equal(tok.at("input_ids"), gt.at("input_ids")));
        QVERIFY(torch::equal(tok.at("attention_mask"), gt.at("attention_mask")));

        auto [rc2, so2, se2] = cli({"tensors", "--model", model, "--component", "text_encoder", "--inputs",
                                    tmp.path() + "/tok.safetensors", "--out", tmp.path() + "/te.safetensors"});
        QVERIFY2(rc2 == 0, qPrintable(se2));
        auto te = kto::load_safetensors((tmp.path() + "/te.safetensors").toStdString());
        auto gte = kto::load_safetensors(ref + "/golden/tiny-sd/text_encoder.safetensors");
        KTO_COMPARE_TENSORS(te.at("last_hidden_state"), gte.at("last_hidden_state"), 1e-4, "cli text_encoder last_hidden_state");
        KTO_COMPARE_TENSORS(te.at("pooler_output"), gte.at("pooler_output"), 1e-4, "cli text_encoder pooler_output");
    }

    void errorsAreReported() {
        const auto model = QString::fromStdString(ref + "/tiny-sd");
        auto [rc, so, se] = cli({"tensors", "--model", model, "--component", "nope", "--out", tmp.path() + "/x.safetensors"});
        QCOMPARE(rc, 1);
        QVERIFY2(se.contains("unknown component 'nope'"), qPrintable(se));
        const auto in = tmp.path().toStdString() + "/partial.safetensors";
        kto::write_safetensors(in, {{"sample", torch::zeros({1, 4, 8, 8})}});
        auto [rc2, so2, se2] = cli({"tensors", "--model", model, "--component", "unet", "--inputs",
                                    QString::fromStdString(in), "--out", tmp.path() + "/x.safetensors"});
        QCOMPARE(rc2, 1);
        QVERIFY2(se2.contains("missing input tensor 'timestep'"), qPrintable(se2));
    }

    void inspectKeysListsSd15UNet() {
        // The reference key file holds the config under "config": extract it.
        QFile f(QString::fromStdString(ref + "/state_dict_keys/sd15_unet.json"));
        QVERIFY(f.open(QIODevice::ReadOnly));
        const auto doc = QJsonDocument::fromJson(f.readAll()).object();
        const auto cfg_path = tmp.path() + "/sd15_unet_config.json";
        QFile cfg(cfg_path);
        QVERIFY(cfg.open(QIODevice::WriteOnly));
        cfg.write(QJsonDocument(doc.value("config").toObject()).toJson());
        cfg.close();
        auto [rc, so, se] = cli({"inspect", "--config", cfg_path, "--component", "unet", "--keys"});
        QVERIFY2(rc == 0, qPrintable(se));
        const auto lines = so.split('\n', Qt::SkipEmptyParts);
        QCOMPARE(lines.size(), doc.value("num_tensors").toInt());
        QVERIFY(lines.contains("conv_in.weight [320,4,3,3]"));
        QVERIFY(lines.contains("up_blocks.3.attentions.2.transformer_blocks.0.ff.net.0.proj.weight [2560,320]"));
        auto sorted = lines;
        sorted.sort();
        QCOMPARE(lines, sorted);
    }

    void inspectModelFolder() {
        auto [rc, so, se] = cli({"inspect", QString::fromStdString(ref + "/tiny-sd")});
        QVERIFY2(rc == 0, qPrintable(se));
        QVERIFY2(so.contains("UNet2DConditionModel"), qPrintable(so));
        QVERIFY2(so.contains("AutoencoderKL"), qPrintable(so));
        QVERIFY2(so.contains("F32x"), qPrintable(so));
    }
};

QTEST_GUILESS_MAIN(TestCliTensors)
#include "test_cli_tensors.moc"
