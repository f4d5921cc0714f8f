#pragma once
// The one long-lived generation engine of the app: lives on its own QThread, keeps the loaded
// ModelBundle between requests, and reports progress, cheap previews and finished images through
// queued signals (images as QImage). Thread-safety: call generate() through a queued connection;
// cancel() may be called from any thread (it only sets a flag checked between denoising steps).
#include <QImage>
#include <QObject>
#include <QString>
#include <atomic>
#include <memory>

#include "ui/workers/generation_request.h"

namespace kto::ui {

// True when libtorch sees a CUDA device (for the Settings dialog's device list).
bool cudaAvailable();
int cudaDeviceCount();  // 0 without CUDA

// The GPU is shared between the app's workers: while a training run uses CUDA it holds the GPU,
// and generation or comparison renders asked for CUDA run on the CPU meanwhile (they never compete
// with the run for GPU memory, which could end it out of memory) and say so. The training worker
// sets it; any thread may read it.
void setTrainingHoldsGpu(bool holds);
bool trainingHoldsGpu();
// The device ("cpu"/"cuda") a generation or comparison asked for `requested` runs on now; `note`
// receives a sentence for the status line when it differs.
QString deviceForInference(const QString& requested, QString* note);
// The built-in demo model's folder (core's find_demo_model()), empty when it is not installed.
QString demoModelFolder();

class GenerationWorker : public QObject {
    Q_OBJECT
public:
    explicit GenerationWorker(QObject* parent = nullptr);
    ~GenerationWorker() override;

    void cancel() { cancel_.store(true); }
    // Minimum time between two preview images (previews cost a VAE decode or a latent projection).
    void setPreviewInterval(int ms) { preview_interval_ms_ = ms; }

public slots:
    void generate(const kto::ui::GenerationRequest& request);
    void setThreads(int threads);
    void unload();  // frees the model (before the thread ends, so tensors die on their thread)

signals:
    void status(const QString& text);
    void progress(quint64 id, int image, int count, int step, int steps);
    void preview(quint64 id, int image, const QImage& image_preview);
    void imageReady(const kto::ui::GenerationRequest& request, int image, qint64 seed, const QImage& result);
    void finished(quint64 id, bool cancelled, const QString& error);

private:
    struct Loaded;
    std::unique_ptr<Loaded> loaded_;
    std::atomic<bool> cancel_{false};
    int preview_interval_ms_ = 150;
};

}  // namespace kto::ui
