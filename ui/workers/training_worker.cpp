// libtorch before any Qt header: Qt's `slots` macro breaks torch/csrc/jit/api/object.h.
#include <torch/torch.h>

#include "ui/workers/training_worker.h"

#include "ui/workers/generation_worker.h"

#include <QCoreApplication>
#include <QDateTime>
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QProcessEnvironment>
#include <QSaveFile>
#include <QStandardPaths>
#include <QThread>
#include <cmath>

#include "core/common/error.h"
#include "core/train/dataset.h"
#include "core/train/dist_launcher.h"
#include "core/train/distributed.h"
#include "core/train/trainer.h"
#include "storage/store/store.h"
#include "storage/store/workspace.h"

namespace kto::ui {

namespace {

QByteArray to_bytes(const nlohmann::json& j) { return QByteArray::fromStdString(j.dump()); }

nlohmann::json preset_json(TrainOptions o) {
    auto j = o.to_json();
    j.erase("beta");       // the objective's default (1000 KTO, 5000 DPO) follows the objective
    j.erase("cache_dir");  // the workspace's shared latent cache
    return j;
}

void write_file(const QString& path, const QByteArray& bytes) {
    QSaveFile f(path);
    if (!f.open(QIODevice::WriteOnly) || f.write(bytes) != bytes.size() || !f.commit())
        throw Error(path.toStdString() + ": cannot write (" + f.errorString().toStdString() + ")");
}

// run.json: what the job's config.json does not say (status, times, the base model as picked).
void write_run_status(const TrainingRequest& r, const QString& status, const QString& started,
                      const TrainingOutcome* outcome) {
    QJsonObject o{{"status", status},
                  {"model", r.model_path},
                  {"model_name", r.model_name},
                  {"preset", r.preset},
                  {"started", started}};
    if (outcome) {
        o["finished"] = QDateTime::currentDateTime().toString(Qt::ISODate);
        o["steps_done"] = outcome->steps_done;
        o["final_checkpoint"] = outcome->final_checkpoint;
        if (!outcome->error.isEmpty()) o["error"] = outcome->error;
    }
    write_file(r.run_dir + "/run.json", QJsonDocument(o).toJson());
}

std::vector<TrainRecord> labelled_records(const QString& workspace) {
    if (!QFile::exists(workspace + "/studio.sqlite3"))
        throw Error(workspace.toStdString() + ": not a workspace (no studio.sqlite3)");
    storage::Store store{storage::Workspace(workspace.toStdString())};
    storage::ImageQuery q;
    q.label = storage::LabelFilter::Labeled;
    std::vector<TrainRecord> out;
    for (const auto& img : store.query_images(q))
        if (img.label != storage::Label::None)
            out.push_back({img.path.string(), img.prompt, img.label == storage::Label::Like});
    return out;
}

// kto-studio-cli, which runs the other ranks of a multi-process run: $KTO_CLI, else beside this
// executable, else on PATH.
QString find_cli() {
    const QString env = qEnvironmentVariable("KTO_CLI");
    if (!env.isEmpty() && QFileInfo(env).isExecutable()) return env;
    const QString beside = QCoreApplication::applicationDirPath() + "/kto-studio-cli";
    if (QFileInfo(beside).isExecutable()) return beside;
    return QStandardPaths::findExecutable("kto-studio-cli");
}

QString log_tail(const QString& path, int lines) {
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly)) return {};
    const QStringList all = QString::fromUtf8(f.readAll()).split('\n', Qt::SkipEmptyParts);
    return all.mid(std::max(0, static_cast<int>(all.size()) - lines)).join("\n");
}

// Ranks 1..N-1 of a data-parallel run started from the app: kto-studio-cli processes on this
// machine, as torchrun would start them (RANK, WORLD_SIZE, MASTER_ADDR/PORT), training on the same
// snapshot of records and options; this process is rank 0 (it alone writes the run folder and
// reports steps and previews). Their output goes to <run>/worker-<rank>.log.
class LocalWorkerGroup {
public:
    LocalWorkerGroup(const TrainingRequest& request, const TrainRequest& job, int workers)
        : workers_(workers), run_dir_(request.run_dir) {
        const QString cli = find_cli();
        if (cli.isEmpty())
            throw Error("a multi-process run needs kto-studio-cli (beside the app, on PATH or named by KTO_CLI); "
                        "it was not found: install it or train with 1 process");
        const QString records = run_dir_ + "/records.json", options = run_dir_ + "/options.json";
        write_records_file(records.toStdString(), job.records);
        write_file(options, QByteArray::fromStdString(job.options.to_json().dump(1)));
        port_ = find_free_port();
        const int cores = std::max(1, QThread::idealThreadCount());
        for (int rank = 1; rank < workers_; ++rank) {
            auto p = std::make_unique<QProcess>();
            QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
            env.insert("RANK", QString::number(rank));
            env.insert("LOCAL_RANK", QString::number(rank));
            env.insert("WORLD_SIZE", QString::number(workers_));
            env.insert("LOCAL_WORLD_SIZE", QString::number(workers_));
            env.insert("MASTER_ADDR", "127.0.0.1");
            env.insert("MASTER_PORT", QString::number(port_));
            if (!env.contains("KTO_THREADS")) env.insert("KTO_THREADS", QString::number(std::max(1, cores / workers_)));
            p->setProcessEnvironment(env);
            const QString log = run_dir_ + QString("/worker-%1.log").arg(rank);
            p->setStandardOutputFile(log);
            p->setStandardErrorFile(log, QIODevice::Append);
            QStringList args{"train", "--model", request.model_path, "--records", records, "--options", options,
                             "--out", request.run_dir};
            if (request.resume) args << "--resume";
            p->start(cli, args);
            if (!p->waitForStarted(30000))
                throw Error(cli.toStdString() + ": cannot start worker " + std::to_string(rank) + ": " +
                            p->errorString().toStdString());
            processes_.push_back(std::move(p));
        }
    }
    ~LocalWorkerGroup() { stop(); }

    // Rank 0's side of the rendezvous (blocks until every worker has joined, or times out).
    std::shared_ptr<DistributedContext> connect(torch::Device device) {
        DistributedOptions d;
        d.rank = 0;
        d.local_rank = 0;
        d.world_size = workers_;
        d.master_addr = "127.0.0.1";
        d.master_port = port_;
        try {
            return std::make_shared<DistributedContext>(d, device);
        } catch (const Error& e) {
            throw Error(e.what() + workers_report());
        }
    }

    // After rank 0's run: workers of a finished run end by themselves; anything else is stopped.
    // Returns what went wrong with them, in words (empty when nothing did).
    std::string finish(bool rank0_finished) {
        std::string problems;
        for (size_t i = 0; i < processes_.size(); ++i) {
            auto& p = processes_[i];
            if (rank0_finished) p->waitForFinished(120000);
            if (p->state() != QProcess::NotRunning) {
                p->terminate();
                if (!p->waitForFinished(5000)) {
                    p->kill();
                    p->waitForFinished(5000);
                }
                continue;
            }
            if (rank0_finished && (p->exitStatus() != QProcess::NormalExit || p->exitCode() != 0))
                problems += "worker " + std::to_string(i + 1) + " ended with status " + std::to_string(p->exitCode());
        }
        if (!problems.empty()) problems += workers_report();
        return problems;
    }

private:
    void stop() {
        for (auto& p : processes_)
            if (p->state() != QProcess::NotRunning) {
                p->kill();
                p->waitForFinished(5000);
            }
    }
    std::string workers_report() const {
        std::string out;
        for (int rank = 1; rank < workers_; ++rank) {
            const QString tail = log_tail(run_dir_ + QString("/worker-%1.log").arg(rank), 4);
            if (!tail.isEmpty()) out += "\n[worker " + std::to_string(rank) + "] " + tail.toStdString();
        }
        return out;
    }

    int workers_;
    QString run_dir_;
    int port_ = 0;
    std::vector<std::unique_ptr<QProcess>> processes_;
};

QImage to_qimage(const torch::Tensor& rgb) {
    const auto t = rgb.to(torch::kCPU).to(torch::kUInt8).contiguous();
    const int h = static_cast<int>(t.size(0)), w = static_cast<int>(t.size(1));
    return QImage(t.data_ptr<uint8_t>(), w, h, w * 3, QImage::Format_RGB888).copy();
}

TrainingStep to_step(const StepMetrics& m) {
    TrainingStep s;
    s.step = m.step;
    s.total_steps = m.total_steps;
    s.loss = m.loss;
    s.reward_margin = m.reward_margin;
    s.kl = m.kl;
    s.grad_norm = m.grad_norm;
    s.lr = m.lr;
    s.samples_per_second = m.samples_per_second;
    s.eta_seconds = m.eta_seconds;
    s.elapsed_seconds = m.elapsed_seconds;
    return s;
}

}  // namespace

QVector<TrainingPreset> builtinTrainingPresets() {
    QVector<TrainingPreset> out;

    TrainOptions demo = train_preset("demo");
    demo.device = "cpu";
    demo.probe_prompts = {"a large red circle on a blue background", "a small yellow square on a green background"};
    out.push_back({"demo-cpu", QObject::tr("Demo model on CPU"),
                   QObject::tr("The built-in 64x64 demo model: a few hundred steps, minutes on a CPU"),
                   to_bytes(preset_json(demo))});

    // SD 1.5 at 512 px. LoRA: fp32 adapters on an fp16-autocast UNet with recomputed activations fit
    // in 12 GB at micro-batch 1; 8 accumulated micro-batches keep the reference run's batch of 8.
    TrainOptions lora = train_preset("sd15");
    lora.lora.enabled = true;
    lora.lora.rank = 8;
    lora.lora.alpha = 8;
    lora.learning_rate = 1e-5;  // adapters start at zero and need a larger step than full weights
    lora.batch_size = 1;
    lora.grad_accumulation = 8;
    lora.steps = 2000;
    lora.device = "cuda";
    lora.mixed_precision = MixedPrecision::fp16;
    lora.gradient_checkpointing = true;
    lora.checkpoint_every = 250;
    lora.preview_every = 250;
    lora.preview_steps = 25;
    lora.probe_prompts = {"a photo of a cat sitting on a windowsill", "a watercolor painting of a lighthouse at dawn"};
    lora.probe_seeds = {0, 1};
    out.push_back({"sd15-lora-12gb", QObject::tr("SD 1.5 LoRA (12 GB GPU)"),
                   QObject::tr("Stable Diffusion 1.5, rank-8 LoRA adapters, fp16 autocast, gradient checkpointing"),
                   to_bytes(preset_json(lora))});

    // Full UNet: fp32 weights + AdamW moments + an fp16 frozen reference need about 16 GB before
    // activations; micro-batch 2 x 4 accumulated = the reference run's batch of 8.
    TrainOptions full = train_preset("sd15");
    full.batch_size = 2;
    full.grad_accumulation = 4;
    full.steps = 2000;
    full.device = "cuda";
    full.mixed_precision = MixedPrecision::fp16;
    full.gradient_checkpointing = true;
    full.checkpoint_every = 500;
    full.keep_last = 2;  // a full checkpoint with optimizer state is about 10 GB
    full.preview_every = 250;
    full.preview_steps = 25;
    full.probe_prompts = lora.probe_prompts;
    full.probe_seeds = {0, 1};
    out.push_back({"sd15-full-24gb", QObject::tr("SD 1.5 full fine-tune (24 GB+ GPU)"),
                   QObject::tr("Stable Diffusion 1.5, the whole UNet (the paper's recipe), fp16 autocast"),
                   to_bytes(preset_json(full))});
    return out;
}

QString checkTrainingOptions(const QByteArray& options_json) {
    try {
        TrainOptions::from_json(nlohmann::json::parse(options_json.toStdString())).validate();
        return {};
    } catch (const nlohmann::json::exception& e) {
        return QObject::tr("training options: %1").arg(QString::fromUtf8(e.what()));
    } catch (const std::exception& e) {
        return QString::fromStdString(e.what());
    }
}

TrainingWorker::TrainingWorker(QObject* parent) : QObject(parent) {
    qRegisterMetaType<kto::ui::TrainingRequest>();
    qRegisterMetaType<kto::ui::TrainingStep>();
    qRegisterMetaType<kto::ui::PreviewTiles>();
    qRegisterMetaType<kto::ui::TrainingOutcome>();
}

TrainingWorker::~TrainingWorker() = default;

void TrainingWorker::pause() {
    if (multi_process_) return;  // the other ranks would time out waiting in a collective
    pause_ = true;
    std::lock_guard<std::mutex> lock(mutex_);
    if (job_) job_->pause();
}

void TrainingWorker::resume() {
    pause_ = false;
    std::lock_guard<std::mutex> lock(mutex_);
    if (job_) job_->resume();
}

void TrainingWorker::cancel() {
    cancel_ = true;
    std::lock_guard<std::mutex> lock(mutex_);
    if (job_) job_->cancel();
}

TrainingWorker::State TrainingWorker::state() const {
    if (!running_) return State::Idle;
    std::lock_guard<std::mutex> lock(mutex_);
    return job_ && job_->state() == TrainingJob::State::paused ? State::Paused : State::Running;
}

void TrainingWorker::start(const TrainingRequest& request) {
    running_ = true;  // a cancel or pause sent before this slot ran is kept
    multi_process_ = request.workers > 1;
    TrainingOutcome outcome;
    const QString started_at = QDateTime::currentDateTime().toString(Qt::ISODate);
    bool folder_ready = false;
    std::unique_ptr<LocalWorkerGroup> group;  // ranks 1..N-1 of a multi-process run
    try {
        if (!QDir().mkpath(request.run_dir))
            throw Error(request.run_dir.toStdString() + ": cannot create the run folder");
        write_file(request.run_dir + "/base_model.txt", request.model_path.toUtf8() + "\n");
        write_run_status(request, "running", started_at, nullptr);
        folder_ready = true;
        emit started(request.run_dir);

        TrainRequest req;
        req.model_dir = request.model_path.toStdString();
        req.out_dir = request.run_dir.toStdString();
        req.resume = request.resume;
        req.options = TrainOptions::from_json(nlohmann::json::parse(request.options_json.toStdString()));
        emit message(tr("Reading the labels of %1").arg(QDir::toNativeSeparators(request.workspace)));
        req.records = labelled_records(request.workspace);
        size_t liked = 0;
        for (const auto& r : req.records) liked += r.desirable ? 1 : 0;
        emit message(tr("%1 labelled images: %2 liked, %3 disliked")
                         .arg(req.records.size())
                         .arg(liked)
                         .arg(req.records.size() - liked));

        TrainCallbacks cb;
        cb.on_message = [this](const std::string& m) { emit message(QString::fromStdString(m)); };
        cb.on_step = [this](const StepMetrics& m) { emit stepDone(to_step(m)); };
        cb.on_checkpoint = [this](int64_t step, const std::string& dir) {
            emit checkpointSaved(step, QString::fromStdString(dir));
        };
        cb.on_preview = [this](int64_t step, const std::vector<PreviewImage>& images) {
            PreviewTiles tiles;
            tiles.reserve(static_cast<int>(images.size()));
            for (const auto& p : images)
                tiles.push_back({QString::fromStdString(p.prompt), p.seed, QString::fromStdString(p.path),
                                 to_qimage(p.image)});
            emit previewReady(step, tiles);
        };
        if (req.options.device.rfind("cuda", 0) == 0) {
            setTrainingHoldsGpu(true);  // generation and comparisons render on the CPU meanwhile
            emit message(tr("Training on the GPU: the Generate and Compare areas render on the CPU until it ends."));
        }
        if (request.workers > 1) {
            emit message(tr("Starting %1 more worker processes (a data-parallel run of %2; their output: "
                            "worker-N.log in the run folder)")
                             .arg(request.workers - 1)
                             .arg(request.workers));
            if (req.options.device.rfind("cuda", 0) == 0) req.options.device = "cuda:0";  // rank r: cuda:r
            group = std::make_unique<LocalWorkerGroup>(request, req, request.workers);
            req.distributed = group->connect(torch::Device(req.options.device));
        }
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (cancel_) throw Cancelled();
            job_ = std::make_unique<TrainingJob>(std::move(req), std::move(cb));
            if (pause_ && request.workers <= 1) job_->pause();
        }
        const TrainResult r = job_->run();
        outcome.cancelled = r.cancelled;
        outcome.steps_done = r.steps_done;
        outcome.final_checkpoint = QString::fromStdString(r.final_checkpoint);
        if (group) {
            const std::string problems = group->finish(!r.cancelled);
            if (!problems.empty()) emit message(QString::fromStdString(problems));
        }
    } catch (const Cancelled&) {
        outcome.cancelled = true;
    } catch (const nlohmann::json::exception& e) {
        outcome.error = tr("training options: %1").arg(QString::fromUtf8(e.what()));
    } catch (const std::exception& e) {
        outcome.error = QString::fromStdString(e.what());
    }
    {
        std::unique_ptr<TrainingJob> done;
        std::lock_guard<std::mutex> lock(mutex_);
        done = std::move(job_);  // destroyed here, on the thread that ran it
    }
    if (group) group->finish(false);  // a failed or cancelled run: the other ranks are stopped
    group.reset();
    setTrainingHoldsGpu(false);
    if (folder_ready) {
        const QString status = !outcome.error.isEmpty() ? "failed" : outcome.cancelled ? "cancelled" : "finished";
        try {
            write_run_status(request, status, started_at, &outcome);
        } catch (const std::exception& e) {
            emit message(QString::fromStdString(e.what()));
        }
    }
    cancel_ = false;
    pause_ = false;
    multi_process_ = false;
    running_ = false;
    emit finished(outcome);
}

}  // namespace kto::ui
