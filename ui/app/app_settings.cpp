#include "ui/app/app_settings.h"

#include <QSettings>
#include <QStandardPaths>

namespace kto::ui {

QString AppSettings::defaultWorkspace() {
    return QStandardPaths::writableLocation(QStandardPaths::AppDataLocation) + "/workspace";
}

AppSettings AppSettings::load() {
    QSettings s;
    AppSettings a;
    a.workspace = s.value("workspace", defaultWorkspace()).toString();
    a.device = s.value("device", a.device).toString();
    a.threads = s.value("threads", a.threads).toInt();
    a.cpu_precision = s.value("cpuPrecision", a.cpu_precision).toString();
    if (a.cpu_precision != "fp32" && a.cpu_precision != "bf16") a.cpu_precision = "auto";
    a.model_folders = s.value("modelFolders").toStringList();
    a.last_model = s.value("lastModel").toString();
    s.beginGroup("generation");
    GenerationDefaults& d = a.defaults;
    d.steps = s.value("steps", d.steps).toInt();
    d.cfg = s.value("cfg", d.cfg).toDouble();
    d.sampler = s.value("sampler", d.sampler).toString();
    d.width = s.value("width", d.width).toInt();
    d.height = s.value("height", d.height).toInt();
    d.images_per_prompt = s.value("imagesPerPrompt", d.images_per_prompt).toInt();
    d.negative_prompt = s.value("negativePrompt", d.negative_prompt).toString();
    s.endGroup();
    return a;
}

void AppSettings::save() const {
    QSettings s;
    s.setValue("workspace", workspace);
    s.setValue("device", device);
    s.setValue("threads", threads);
    s.setValue("cpuPrecision", cpu_precision);
    s.setValue("modelFolders", model_folders);
    s.setValue("lastModel", last_model);
    s.beginGroup("generation");
    s.setValue("steps", defaults.steps);
    s.setValue("cfg", defaults.cfg);
    s.setValue("sampler", defaults.sampler);
    s.setValue("width", defaults.width);
    s.setValue("height", defaults.height);
    s.setValue("imagesPerPrompt", defaults.images_per_prompt);
    s.setValue("negativePrompt", defaults.negative_prompt);
    s.endGroup();
}

}  // namespace kto::ui
