#pragma once
// What the user chose in Settings, remembered between runs through QSettings.
#include <QString>
#include <QStringList>

namespace kto::ui {

struct GenerationDefaults {
    int steps = 20;              // denoising steps
    double cfg = 7.5;            // classifier-free guidance scale
    QString sampler = "euler";   // a name make_scheduler() accepts
    int width = 64;              // pixels; the demo model draws 64x64
    int height = 64;
    int images_per_prompt = 4;
    QString negative_prompt;
};

struct AppSettings {
    QString workspace;           // folder holding studio.sqlite3, images/, runs/
    QString device = "cpu";      // "cpu" or "cuda"
    int threads = 0;             // libtorch intra-op threads; 0 = all cores
    QString cpu_precision = "auto";  // "auto" (bf16 where the CPU has bf16 matrix units), "fp32", "bf16"
    GenerationDefaults defaults;
    QStringList model_folders;   // diffusers folders the user added
    QString last_model;          // the model picked last time (a folder path)

    static QString defaultWorkspace();  // <AppDataLocation>/workspace
    static AppSettings load();          // from QSettings, defaults where unset
    void save() const;
};

}  // namespace kto::ui
