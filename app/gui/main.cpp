// kto-studio: the desktop app. main() only: arguments and wiring.
#include <QApplication>
#include <QCommandLineParser>
#include <QFileInfo>

#include "core/common/runtime.h"
#include "ui/app/main_window.h"
#include "ui/workers/generation_worker.h"

int main(int argc, char** argv) {
    QApplication app(argc, argv);
    QApplication::setApplicationName("kto-studio");
    QApplication::setOrganizationName("kto-studio");
    QApplication::setApplicationVersion(KTO_VERSION);

    QCommandLineParser parser;
    parser.setApplicationDescription("KTO Studio: align text-to-image models with your likes and dislikes");
    parser.addHelpOption();
    parser.addVersionOption();
    QCommandLineOption workspace({"w", "workspace"}, "Use the workspace folder DIR for this run.", "DIR");
    QCommandLineOption model({"m", "model"}, "Add the diffusers model folder DIR and select it.", "DIR");
    parser.addOption(workspace);
    parser.addOption(model);
    parser.process(app);

    kto::ui::StartupOptions options;
    options.workspace = parser.value(workspace);
    options.model = parser.value(model);
    options.demo_model = kto::ui::demoModelFolder();
    if (!options.model.isEmpty() && !QFileInfo::exists(options.model + "/model_index.json")) {
        qCritical("kto-studio: --model %s: no model_index.json there; pass a diffusers model folder",
                  qPrintable(options.model));
        return 2;
    }

    kto::configure_torch_threads();
    kto::ui::MainWindow window(options);
    window.show();
    return app.exec();
}
