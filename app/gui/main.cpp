// kto-studio: the desktop app. main() only: arguments and wiring.
#include <QApplication>
#include <QCommandLineParser>

#include "core/common/runtime.h"
#include "ui/app/main_window.h"

int main(int argc, char** argv) {
    QApplication app(argc, argv);
    QApplication::setApplicationName("kto-studio");
    QApplication::setOrganizationName("kto-studio");
    QApplication::setApplicationVersion(KTO_VERSION);

    QCommandLineParser parser;
    parser.setApplicationDescription("KTO Studio: align text-to-image models with your likes and dislikes");
    parser.addHelpOption();
    parser.addVersionOption();
    parser.process(app);

    kto::configure_torch_threads();
    kto::ui::MainWindow window;
    window.show();
    return app.exec();
}
