#pragma once
// One press of "Generate": everything needed to reproduce the images, carried to the worker
// thread and back with the results (it becomes the provenance stored with each image).
#include <QMetaType>
#include <QString>

namespace kto::ui {

struct GenerationRequest {
    quint64 id = 0;             // assigned by the panel, echoed in every progress signal
    QString model_path;         // diffusers folder (base model or checkpoint)
    QString model_name;         // what the picker showed ("kto-demo", "run 3 / step 200")
    QString unet_path;          // optional checkpoint on the base: a unet/ folder, or a LoRA .safetensors file
    QString device = "cpu";     // "cpu" or "cuda"
    QString prompt;
    QString negative_prompt;
    qint64 seed = 0;            // seed of the first image; image i uses seed + i
    int steps = 20;
    double cfg = 7.5;
    QString sampler = "euler";
    int width = 64;
    int height = 64;
    int count = 1;              // images per prompt
};

}  // namespace kto::ui

Q_DECLARE_METATYPE(kto::ui::GenerationRequest)
