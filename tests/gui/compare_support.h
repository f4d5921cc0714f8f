#pragma once
// A stand-in fine-tune for Compare tests, made without libtorch (GUI tests skip the torch header):
// runs/<run>/<step>/unet/ holding the demo model's UNet config and its safetensors weights with
// every F16/F32 value scaled by a deterministic factor in [1 - amount, 1 + amount], plus
// runs/<run>/base_model.txt naming the demo model, the layout the model catalog lists.
#include <QDir>
#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QString>
#include <QtEndian>
#include <QtMath>
#include <cstring>

namespace kto::test {

// Returns the unet/ folder written, or an empty string (with a warning) on failure.
inline QString make_tuned_checkpoint(const QString& runs_dir, const QString& run, const QString& step,
                                     const QString& demo_model, double amount = 0.3) {
    const QString run_dir = runs_dir + "/" + run;
    const QString unet = run_dir + "/" + step + "/unet";
    if (!QDir().mkpath(unet)) return {};
    QFile base(run_dir + "/base_model.txt");
    if (!base.open(QIODevice::WriteOnly)) return {};
    base.write(QDir(demo_model).absolutePath().toUtf8());
    base.close();
    if (!QFile::copy(demo_model + "/unet/config.json", unet + "/config.json")) return {};

    QFile in(demo_model + "/unet/diffusion_pytorch_model.safetensors");
    if (!in.open(QIODevice::ReadOnly)) return {};
    QByteArray bytes = in.readAll();
    if (bytes.size() < 8) return {};
    const quint64 header_len = qFromLittleEndian<quint64>(bytes.constData());
    const qsizetype data_start = static_cast<qsizetype>(8 + header_len);
    const QJsonObject header = QJsonDocument::fromJson(bytes.mid(8, static_cast<qsizetype>(header_len))).object();
    quint32 k = 1;
    for (auto it = header.begin(); it != header.end(); ++it) {
        if (it.key() == "__metadata__") continue;
        const QJsonObject t = it.value().toObject();
        const QString dtype = t["dtype"].toString();
        const auto offsets = t["data_offsets"].toArray();
        char* p = bytes.data() + data_start + offsets[0].toInteger();
        const qsizetype n = offsets[1].toInteger() - offsets[0].toInteger();
        auto factor = [&] {
            k = k * 1664525u + 1013904223u;  // LCG: deterministic, no global state
            return 1.0 + amount * (2.0 * (k >> 8) / double(1u << 24) - 1.0);
        };
        if (dtype == "F16") {
            for (qsizetype i = 0; i + 1 < n; i += 2) {
                qfloat16 v;
                std::memcpy(&v, p + i, 2);
                v = qfloat16(float(v) * float(factor()));
                std::memcpy(p + i, &v, 2);
            }
        } else if (dtype == "F32") {
            for (qsizetype i = 0; i + 3 < n; i += 4) {
                float v;
                std::memcpy(&v, p + i, 4);
                v = float(v * factor());
                std::memcpy(p + i, &v, 4);
            }
        }
    }
    QFile out(unet + "/diffusion_pytorch_model.safetensors");
    if (!out.open(QIODevice::WriteOnly) || out.write(bytes) != bytes.size()) return {};
    return unet;
}

}  // namespace kto::test
