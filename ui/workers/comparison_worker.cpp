// libtorch before any Qt header: Qt's `slots` macro breaks torch/csrc/jit/api/object.h.
#include <torch/torch.h>

#include "ui/workers/comparison_worker.h"

#include "ui/generate/model_catalog.h"
#include "ui/workers/generation_worker.h"

#include "core/common/error.h"
#include "core/common/runtime.h"
#include "core/compare/comparison.h"

namespace kto::ui {

ComparisonWorker::ComparisonWorker(QObject* parent) : QObject(parent) {
    qRegisterMetaType<kto::ui::ComparisonRequest>();
    qRegisterMetaType<kto::ui::ComparisonSession>();
    qRegisterMetaType<kto::ui::ComparisonCells>();
}

void ComparisonWorker::render(const ComparisonRequest& request) {
    cancel_.store(false);
    ComparisonSession session = request.session;
    ComparisonCells cells;
    bool cancelled = false;
    QString error;
    try {
        auto side = [](const ComparisonSide& s) {
            const std::string checkpoint = s.unet_path.toStdString();
            return isLoraFile(s.unet_path) ? CompareSide{s.model_path.toStdString(), {}, checkpoint, s.name.toStdString()}
                                           : CompareSide{s.model_path.toStdString(), checkpoint, {}, s.name.toStdString()};
        };
        std::vector<std::string> prompts;
        for (const QString& p : session.prompts) prompts.push_back(p.toStdString());
        std::vector<uint64_t> seeds;
        for (qint64 s : session.seeds) seeds.push_back(static_cast<uint64_t>(s));
        CompareSettings settings;
        settings.steps = session.steps;
        settings.cfg = session.cfg;
        settings.sampler = session.sampler.toStdString();
        settings.width = session.width;
        settings.height = session.height;
        QString note;
        const bool cuda = deviceForInference(request.device, &note) == "cuda";
        if (!note.isEmpty()) emit progress(request.id, 0, 0, note);
        if (cuda && !torch::cuda::is_available())
            throw Error("CUDA was chosen in Settings but libtorch finds no CUDA device; choose CPU");
        settings.device = cuda ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
        // Both sides in one dtype: the one side A's model runs in (a fine-tune has its base's size).
        settings.dtype = default_model_dtype(session.a.model_path.toStdString(), cuda);

        const int total = static_cast<int>(2 * prompts.size() * seeds.size());
        int done = 0;
        CompareCallbacks cb;
        cb.should_cancel = [this] { return cancel_.load(); };
        cb.on_image_start = [&](int s, int index, int count) {
            emit progress(request.id, done, total,
                          tr("Rendering %1 (%2 of %3 to render)…").arg(s == 0 ? "A" : "B").arg(index + 1).arg(count));
        };
        cb.on_image = [&](int s, size_t cell, const std::string& path, bool) {
            ++done;
            emit imageReady(request.id, s, static_cast<int>(cell), QImage(QString::fromStdString(path)));
            emit progress(request.id, done, total, tr("%1 of %2 images").arg(done).arg(total));
        };
        const ComparisonResult r = render_comparison(side(session.a), side(session.b), prompts, seeds, settings,
                                                     request.cache_dir.toStdString(), cb);
        session.sampler = QString::fromStdString(r.sampler);
        session.width = r.width;
        session.height = r.height;
        for (const auto& c : r.cells)
            cells.push_back({QString::fromStdString(c.prompt), static_cast<qint64>(c.seed),
                             QString::fromStdString(c.image_a), QString::fromStdString(c.image_b)});
    } catch (const Cancelled&) {
        cancelled = true;
    } catch (const std::exception& e) {
        error = QString::fromStdString(e.what());
    }
    emit finished(request.id, session, cancelled || !error.isEmpty() ? ComparisonCells{} : cells, cancelled, error);
}

}  // namespace kto::ui
