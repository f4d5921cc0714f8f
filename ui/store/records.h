#pragma once
// What the widgets see of the label store: plain values copied out of storage/ rows on the store
// threads, so item models and panels never hold a database handle.
#include <QDate>
#include <QDateTime>
#include <QMetaType>
#include <QString>
#include <QVector>

namespace kto::ui {

enum class Label { None = 0, Liked = 1, Disliked = 2 };

struct ImageRecord {
    qint64 image_id = 0;
    qint64 generation_id = 0;
    QString path;             // absolute path of the PNG
    QString prompt;
    QString negative_prompt;
    qint64 seed = 0;
    int steps = 0;
    double cfg = 0.0;
    QString sampler;
    int width = 0;
    int height = 0;
    QString model;            // the base model's name
    QString checkpoint;       // a fine-tuned checkpoint folder, empty for the base model
    QString source;           // "generated" or where it was imported from
    Label label = Label::None;
    QDateTime created;
};
using ImageRecords = QVector<ImageRecord>;

struct GalleryFilter {
    enum class LabelFilter { Any, Liked, Disliked, Unlabelled, Labelled };
    LabelFilter label = LabelFilter::Any;
    QString prompt_text;      // substring of the prompt, case-insensitive
    QString model;            // exact model/checkpoint; empty = any
    QDate from;               // inclusive; null = open
    QDate to;                 // inclusive; null = open
    bool operator==(const GalleryFilter& o) const {
        return label == o.label && prompt_text == o.prompt_text && model == o.model && from == o.from &&
               to == o.to;
    }
};

struct LabelCounts {
    qint64 total = 0;
    qint64 liked = 0;
    qint64 disliked = 0;
    qint64 unlabelled() const { return total - liked - disliked; }
};

}  // namespace kto::ui

Q_DECLARE_METATYPE(kto::ui::ImageRecord)
Q_DECLARE_METATYPE(kto::ui::ImageRecords)
Q_DECLARE_METATYPE(kto::ui::GalleryFilter)
Q_DECLARE_METATYPE(kto::ui::LabelCounts)
