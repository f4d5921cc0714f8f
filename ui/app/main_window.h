#pragma once
// The main window: one area per step of the loop (Generate, Rate, Gallery, Train, Compare).
#include <QMainWindow>

class QTabWidget;

namespace kto::ui {

class MainWindow : public QMainWindow {
    Q_OBJECT
public:
    explicit MainWindow(QWidget* parent = nullptr);

    QTabWidget* areas() const { return areas_; }

private:
    QTabWidget* areas_ = nullptr;
};

}  // namespace kto::ui
