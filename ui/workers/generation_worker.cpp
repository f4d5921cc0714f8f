#include "ui/workers/generation_worker.h"

#include <torch/torch.h>

#include <QElapsedTimer>
#include <QFileInfo>

#include "core/common/error.h"
#include "core/common/runtime.h"

namespace kto::ui {

bool cudaAvailable() { return torch::cuda::is_available(); }

struct GenerationWorker::Loaded {
    QString model_path;
    QString unet_path;
    QString device;
};

GenerationWorker::GenerationWorker(QObject* parent) : QObject(parent) {
    qRegisterMetaType<kto::ui::GenerationRequest>();
}

GenerationWorker::~GenerationWorker() = default;

void GenerationWorker::setThreads(int threads) { configure_torch_threads(threads); }

void GenerationWorker::unload() { loaded_.reset(); }

void GenerationWorker::generate(const GenerationRequest& request) {
    cancel_.store(false);
    // Until core/pipeline (the text-to-image engine) is part of the build, say so in words.
    emit finished(request.id, false,
                  tr("This build has no text-to-image engine yet (core/pipeline), so %1 cannot be run.")
                      .arg(request.model_path));
}

}  // namespace kto::ui
