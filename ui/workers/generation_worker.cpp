// libtorch before any Qt header: Qt's `slots` macro breaks torch/csrc/jit/api/object.h.
#include <torch/torch.h>

#include "ui/workers/generation_worker.h"

#include "ui/generate/model_catalog.h"

#include <QElapsedTimer>
#include <QFileInfo>

#include "core/common/error.h"
#include "core/common/runtime.h"
#include "core/pipeline/pipeline.h"

namespace kto::ui {

bool cudaAvailable() { return torch::cuda::is_available(); }

int cudaDeviceCount() { return cudaAvailable() ? static_cast<int>(torch::cuda::device_count()) : 0; }

namespace {
std::atomic<bool> g_training_holds_gpu{false};
}  // namespace

void setTrainingHoldsGpu(bool holds) { g_training_holds_gpu.store(holds); }
bool trainingHoldsGpu() { return g_training_holds_gpu.load(); }

QString deviceForInference(const QString& requested, QString* note) {
    if (requested == "cuda" && trainingHoldsGpu()) {
        if (note) *note = QObject::tr("A training run is using the GPU: rendering on the CPU until it ends.");
        return "cpu";
    }
    return requested;
}

QString demoModelFolder() { return QString::fromStdString(find_demo_model()); }

namespace {
QImage to_qimage(const RgbImage& rgb) {
    QImage view(rgb.pixels.data(), rgb.width, rgb.height, rgb.width * 3, QImage::Format_RGB888);
    return view.copy();  // own the pixels: the buffer dies with the core result
}
}  // namespace

struct GenerationWorker::Loaded {
    QString model_path;
    QString unet_path;
    QString device;
    ModelBundle bundle;
};

GenerationWorker::GenerationWorker(QObject* parent) : QObject(parent) {
    qRegisterMetaType<kto::ui::GenerationRequest>();
}

GenerationWorker::~GenerationWorker() = default;

void GenerationWorker::setThreads(int threads) { configure_torch_threads(threads); }

void GenerationWorker::unload() { loaded_.reset(); }

void GenerationWorker::generate(const GenerationRequest& request) {
    cancel_.store(false);
    bool cancelled = false;
    QString error;
    try {
        QString note;
        const QString device = deviceForInference(request.device, &note);
        if (!note.isEmpty()) emit status(note);
        // Settings' "Precision on the CPU" may have changed since the model was loaded.
        const torch::ScalarType dtype = default_model_dtype(request.model_path.toStdString(), device == "cuda");
        if (!loaded_ || loaded_->model_path != request.model_path || loaded_->unet_path != request.unet_path ||
            loaded_->device != device || loaded_->bundle.dtype != dtype) {
            loaded_.reset();  // free the old model before loading the next
            emit status(tr("Loading %1…").arg(request.model_name));
            ModelBundleOptions o;
            const bool cuda = device == "cuda";
            if (cuda && !torch::cuda::is_available())
                throw Error("CUDA was chosen in Settings but libtorch finds no CUDA device; choose CPU");
            o.device = cuda ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
            o.dtype = dtype;
            (isLoraFile(request.unet_path) ? o.lora_path : o.unet_dir) = request.unet_path.toStdString();
            auto loaded = std::make_unique<Loaded>(
                Loaded{request.model_path, request.unet_path, device,
                       ModelBundle::load(request.model_path.toStdString(), o)});
            loaded_ = std::move(loaded);
        }
        // One image per call with seed + i, so any image can be regenerated alone from its seed.
        for (int i = 0; i < request.count; ++i) {
            if (cancel_.load()) throw Cancelled();
            const qint64 seed = request.seed + i;
            GenerateOptions g;
            g.prompts = {request.prompt.toStdString()};
            g.negative_prompts = {request.negative_prompt.toStdString()};
            g.seed = static_cast<uint64_t>(seed);
            g.steps = request.steps;
            g.cfg = request.cfg;
            g.sampler = request.sampler.toStdString();
            g.width = request.width;
            g.height = request.height;
            g.images_per_prompt = 1;
            QElapsedTimer since_preview;
            since_preview.start();
            bool first_preview = true;
            g.on_progress = [&](int step, int total) { emit progress(request.id, i, request.count, step, total); };
            g.on_preview = [&](int step, int total, const std::vector<RgbImage>& previews) {
                // Previews are cheap but the GUI needs only a few a second.
                if (previews.empty() || (!first_preview && since_preview.elapsed() < preview_interval_ms_ && step < total))
                    return;
                first_preview = false;
                since_preview.restart();
                emit preview(request.id, i, to_qimage(previews.front()));
            };
            g.should_cancel = [this] { return cancel_.load(); };
            g.on_warning = [&](const std::string& w) { emit status(QString::fromStdString(w)); };
            const GenerateResult r = kto::generate(loaded_->bundle, g);
            if (r.rgb.empty()) throw Error("the pipeline returned no image");
            emit imageReady(request, i, seed, to_qimage(r.rgb.front()));
        }
    } catch (const Cancelled&) {
        cancelled = true;
    } catch (const std::exception& e) {
        error = QString::fromStdString(e.what());
    }
    emit finished(request.id, cancelled, error);
}

}  // namespace kto::ui
