#include "ui/app/main_window.h"

#include <QLabel>
#include <QStatusBar>
#include <QTabWidget>

namespace kto::ui {

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent) {
    setWindowTitle(tr("KTO Studio"));
    setObjectName("MainWindow");
    areas_ = new QTabWidget(this);
    areas_->setObjectName("areas");
    for (const QString& name : {tr("Generate"), tr("Rate"), tr("Gallery"), tr("Train"), tr("Compare")}) {
        auto* page = new QLabel(name, areas_);
        page->setAlignment(Qt::AlignCenter);
        areas_->addTab(page, name);
    }
    setCentralWidget(areas_);
    statusBar()->showMessage(tr("Ready"));
    resize(1200, 800);
}

}  // namespace kto::ui
