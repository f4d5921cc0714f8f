#pragma once
// Settings: workspace folder, device, threads and the Generate form's defaults.
#include <QDialog>

#include "ui/app/app_settings.h"

class QComboBox;
class QDoubleSpinBox;
class QLineEdit;
class QSpinBox;

namespace kto::ui {

class SettingsDialog : public QDialog {
    Q_OBJECT
public:
    // `cuda_available`: offer CUDA only where libtorch sees a GPU.
    SettingsDialog(const AppSettings& settings, bool cuda_available, QWidget* parent = nullptr);
    AppSettings settings() const;

    QLineEdit* workspaceEdit() const { return workspace_; }
    QComboBox* deviceBox() const { return device_; }
    QSpinBox* threadsBox() const { return threads_; }
    QComboBox* cpuPrecisionBox() const { return precision_; }

private:
    AppSettings base_;
    QLineEdit* workspace_;
    QComboBox* device_;
    QSpinBox* threads_;
    QComboBox* precision_;
    QSpinBox* steps_;
    QDoubleSpinBox* cfg_;
    QComboBox* sampler_;
    QSpinBox* width_;
    QSpinBox* height_;
    QSpinBox* count_;
    QLineEdit* negative_;
};

}  // namespace kto::ui
