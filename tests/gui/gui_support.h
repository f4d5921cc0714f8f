#pragma once
// Shared set-up for GUI tests: settings isolated in a temporary folder, and a workspace filled with
// small generated-looking images through the storage API.
#include <QBuffer>
#include <QCoreApplication>
#include <QImage>
#include <QPainter>
#include <QPolygon>
#include <QSettings>
#include <QStandardPaths>
#include <QString>
#include <string>

#include "storage/store/store.h"

namespace kto::test {

// Every test process writes its QSettings under `dir` only, never the user's configuration.
inline void isolate_settings(const QString& dir) {
    QStandardPaths::setTestModeEnabled(true);
    QCoreApplication::setOrganizationName("kto-studio-test");
    QCoreApplication::setApplicationName("kto-studio-test");
    QSettings::setDefaultFormat(QSettings::IniFormat);
    QSettings::setPath(QSettings::IniFormat, QSettings::UserScope, dir);
    QSettings().clear();
}

inline std::string png_bytes(const QImage& img) {
    QByteArray bytes;
    QBuffer buffer(&bytes);
    buffer.open(QIODevice::WriteOnly);
    img.save(&buffer, "PNG");
    return std::string(bytes.constData(), bytes.size());
}

// A 64x64 picture of "a <colour> <shape> on a <background> background", drawn with QPainter.
inline QImage shape_picture(int shape, const QColor& fg, const QColor& bg, int variant) {
    QImage img(64, 64, QImage::Format_RGB32);
    img.fill(bg);
    QPainter p(&img);
    p.setRenderHint(QPainter::Antialiasing);
    p.setPen(Qt::NoPen);
    p.setBrush(fg);
    const int s = 26 + (variant % 4) * 6, x = 32 - s / 2 + (variant % 3 - 1) * 6, y = 32 - s / 2 + (variant % 5 - 2) * 3;
    switch (shape) {
        case 0: p.drawEllipse(x, y, s, s); break;
        case 1: p.drawRect(x, y, s, s); break;
        default: p.drawPolygon(QPolygon({QPoint(x + s / 2, y), QPoint(x + s, y + s), QPoint(x, y + s)})); break;
    }
    return img;
}

// Adds `count` images spread over `prompts` prompts (one generation each), seeds 1000 + i.
inline void fill_workspace(const QString& dir, int count, int prompts = 4) {
    storage::Store store{storage::Workspace(dir.toStdString())};
    const std::int64_t model = store.ensure_model("kto-demo", "/models/kto-demo");
    const char* shapes[] = {"circle", "square", "triangle", "star", "ring", "cross"};
    const char* colours[] = {"red", "green", "yellow", "white"};
    const QColor fg[] = {QColor(220, 40, 40), QColor(40, 170, 60), QColor(240, 210, 40), QColor(245, 245, 245)};
    for (int i = 0; i < count; ++i) {
        const int k = i % prompts;
        storage::GenerationInput g;
        g.prompt = std::string("a large ") + colours[k % 4] + " " + shapes[k] + " on a blue background";
        g.seed = 1000 + i;
        g.steps = 20;
        g.cfg = 7.5;
        g.sampler = "euler";
        g.width = 64;
        g.height = 64;
        g.model_id = model;
        storage::ImageInput in;
        in.encoded = png_bytes(shape_picture(k % 3, fg[k % 4], QColor(40, 60, 170), i));
        store.add_generation(g, {in});
    }
}

}  // namespace kto::test
