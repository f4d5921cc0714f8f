// `kto-studio-cli tensors` and `inspect` on the tiny-sd reference model, compared with the goldens.
#include <QDir>
#include <QFile>
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

    // `--component scheduler` for every sampler against golden/scheduler.safetensors (sd15 group),
    // each from its fully resolved config as stored in scheduler_configs.json.
    void schedulerComponentMatchesGolden() {
        QFile f(QString::fromStdString(ref + "/golden/scheduler_configs.json"));
        QVERIFY(f.open(QIODevice::ReadOnly));
        // The file holds "lambda_min_clipped": -Infinity (Python's json), which QJsonDocument rejects;
        // -1e308 clips nothing either, so the resolved configs keep their meaning.
        const auto text = f.readAll().replace("-Infinity", "-1e308");
        const auto schedulers = QJsonDocument::fromJson(text).object().value("schedulers").toObject();
        auto g = kto::load_safetensors(ref + "/golden/scheduler.safetensors");
        const QStringList names = {"ddpm", "ddim", "pndm", "euler", "euler_karras", "euler_ancestral", "dpmpp_2m",
                                   "dpmpp_2m_karras"};
        int compared = 0;
        for (const auto& name : names) {
            const auto key = "sd15." + name;
            QVERIFY2(schedulers.contains(key), qPrintable(key));
            const auto cfg_path = tmp.path() + "/" + name + "_scheduler_config.json";
            QFile cf(cfg_path);
            QVERIFY(cf.open(QIODevice::WriteOnly));
            cf.write(QJsonDocument(schedulers.value(key).toObject().value("config").toObject()).toJson());
            cf.close();
            for (int n : {10, 20}) {
                const auto prefix = QString("%1.n%2.").arg(key).arg(n).toStdString();
                if (!g.count(prefix + "timesteps")) continue;
                const auto out = tmp.path() + "/" + name + ".safetensors";
                auto [rc, so, se] = cli({"tensors", "--component", "scheduler", "--scheduler-config", cfg_path,
                                         "--sampler", name, "--steps", QString::number(n), "--out", out});
                QVERIFY2(rc == 0, qPrintable(se));
                auto r = kto::load_safetensors(out.toStdString());
                const auto& gt = g.at(prefix + "timesteps");
                QCOMPARE(r.at("timesteps").scalar_type(), gt.scalar_type() == torch::kInt64 ? torch::kInt64 : torch::kFloat32);
                if (gt.scalar_type() == torch::kInt64)
                    QVERIFY2(torch::equal(r.at("timesteps"), gt), prefix.c_str());
                else
                    KTO_COMPARE_TENSORS(r.at("timesteps"), gt.to(torch::kFloat32), 1e-4, prefix + "timesteps");
                if (g.count(prefix + "init_noise_sigma"))
                    KTO_COMPARE_TENSORS(r.at("init_noise_sigma"), g.at(prefix + "init_noise_sigma"), 1e-4,
                                        prefix + "init_noise_sigma");
                if (g.count(prefix + "sigmas")) {
                    QVERIFY2(r.count("sigmas"), (prefix + "sigmas missing").c_str());
                    KTO_COMPARE_TENSORS(r.at("sigmas"), g.at(prefix + "sigmas"), 1e-4, prefix + "sigmas");
                }
                ++compared;
            }
        }
        QVERIFY(compared >= 8);
        // No --model is needed; a missing config is an error that names the option.
        auto [rc, so, se] = cli({"tensors", "--component", "scheduler", "--sampler", "ddim", "--steps", "10", "--out",
                                 tmp.path() + "/x.safetensors"});
        QCOMPARE(rc, 1);
        QVERIFY2(se.contains("--scheduler-config"), qPrintable(se));
    }

    // `--component pipeline`: the DDIM and Euler 4-step runs of golden/tiny-sd/pipeline.safetensors.
    void pipelineComponentMatchesGolden() {
        auto g = kto::load_safetensors(ref + "/golden/tiny-sd/pipeline.safetensors");
        const auto model = QString::fromStdString(ref + "/tiny-sd");
        for (const QString run : {"ddim", "euler"}) {
            const auto r = run.toStdString();
            const auto in = tmp.path().toStdString() + "/pipe_in_" + r + ".safetensors";
            kto::write_safetensors(in, {{"init_latents", g.at(r + ".init_latents")}});
            const auto out = tmp.path() + "/pipe_out_" + run + ".safetensors";
            auto [rc, so, se] = cli({"tensors", "--model", model, "--component", "pipeline", "--inputs",
                                     QString::fromStdString(in), "--prompt", "a photograph of an astronaut riding a horse",
                                     "--steps", "4", "--cfg", "7", "--sampler", run, "--out", out});
            QVERIFY2(rc == 0, qPrintable(se));
            auto res = kto::load_safetensors(out.toStdString());
            KTO_COMPARE_TENSORS(res.at("latents"), g.at(r + ".step3.latents"), 2e-4, r + " latents");
            KTO_COMPARE_TENSORS(res.at("image"), g.at(r + ".image"), 1e-4, r + " image");
        }
        // Batch rows must match the number of prompts.
        const auto in = tmp.path().toStdString() + "/pipe_bad.safetensors";
        kto::write_safetensors(in, {{"init_latents", torch::zeros({2, 4, 32, 32})}});
        auto [rc, so, se] = cli({"tensors", "--model", model, "--component", "pipeline", "--inputs",
                                 QString::fromStdString(in), "--prompt", "x", "--steps", "2", "--out",
                                 tmp.path() + "/x.safetensors"});
        QCOMPARE(rc, 1);
        QVERIFY2(se.contains("init_latents"), qPrintable(se));
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

    void inspectShardedWeights() {
        // The tiny UNet split into two shards with an index, as large checkpoints come.
        const auto all = kto::load_safetensors(ref + "/tiny-sd/unet/diffusion_pytorch_model.safetensors");
        const QString dir = tmp.path() + "/sharded-unet";
        QVERIFY(QDir().mkpath(dir));
        QFile::copy(QString::fromStdString(ref + "/tiny-sd/unet/config.json"), dir + "/config.json");
        kto::TensorMap a, b;
        QJsonObject map;
        int i = 0;
        for (const auto& [name, t] : all) {
            const bool first = i++ % 2 == 0;
            (first ? a : b)[name] = t;
            map.insert(QString::fromStdString(name), first ? "diffusion_pytorch_model-00001-of-00002.safetensors"
                                                           : "diffusion_pytorch_model-00002-of-00002.safetensors");
        }
        kto::write_safetensors((dir + "/diffusion_pytorch_model-00001-of-00002.safetensors").toStdString(), a);
        kto::write_safetensors((dir + "/diffusion_pytorch_model-00002-of-00002.safetensors").toStdString(), b);
        QFile idx(dir + "/diffusion_pytorch_model.safetensors.index.json");
        QVERIFY(idx.open(QIODevice::WriteOnly));
        idx.write(QJsonDocument(QJsonObject{{"metadata", QJsonObject{}}, {"weight_map", map}}).toJson());
        idx.close();
        auto [rc, so, se] = cli({"inspect", dir});
        QVERIFY2(rc == 0, qPrintable(se));
        QVERIFY2(so.contains("(2 shards)") && so.contains(QString(", %1 tensors").arg(all.size())), qPrintable(so));
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
