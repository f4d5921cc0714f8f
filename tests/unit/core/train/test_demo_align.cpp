// Prompt-fidelity alignment of the demo model (train-demo --align-rounds / --align-only): a round
// renders prompts with the folder's model, labels them with the shapes scorer and fine-tunes the
// UNet with the trainer; only the UNet changes, the folder stays loadable, the same seed gives
// the same weights, and bad options are refused before any work.
#include <QtTest>
#include <torch/torch.h>

#include <filesystem>
#include <string>
#include <vector>

#include "core/common/error.h"
#include "core/io/safetensors.h"
#include "core/train/demo_model.h"
#include "tests/support/error_check.h"
#include "tests/support/test_paths.h"

namespace fs = std::filesystem;

namespace {

const char* kUnetWeights = "unet/diffusion_pytorch_model.safetensors";

kto::DemoAlignOptions small_round(const fs::path& dir) {
    kto::DemoAlignOptions o;
    o.model_dir = dir.string();
    o.prompts = 16;
    o.steps = 2;
    o.batch = 2;
    o.threads = 1;
    return o;
}

}  // namespace

class TestDemoAlign : public QObject {
    Q_OBJECT
private slots:
    void roundTunesOnlyTheUnetDeterministically() {
        QTemporaryDir tmp;
        const fs::path root(tmp.path().toStdString());
        const fs::path shipped(kto::test::demo_model_dir());
        std::vector<kto::TensorMap> unets;
        for (const char* copy : {"a", "b"}) {
            const fs::path dir = root / copy;
            fs::copy(shipped, dir, fs::copy_options::recursive);
            std::vector<std::string> phases;
            const auto rounds = kto::align_demo_model(small_round(dir), [&](const kto::DemoProgress& p) {
                if (phases.empty() || phases.back() != p.phase) phases.push_back(p.phase);
                return true;
            });
            QCOMPARE(phases, (std::vector<std::string>{"align-render", "align-train"}));
            QCOMPARE(rounds.size(), size_t(1));
            QCOMPARE(rounds[0].images, 16);
            QVERIFY(rounds[0].liked > 0 && rounds[0].liked < 16);
            QVERIFY(rounds[0].colour_right > 0.3);  // the shipped model draws most colours right
            QVERIFY(!fs::exists(root / (std::string(copy) + ".align-work")));  // its scratch folder is gone
            for (const char* same : {"vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"}) {
                const auto a = kto::load_safetensors((shipped / same).string());
                const auto b = kto::load_safetensors((dir / same).string());
                for (const auto& [name, t] : a) QVERIFY2(torch::equal(t, b.at(name)), name.c_str());
            }
            unets.push_back(kto::load_safetensors((dir / kUnetWeights).string()));
            QCOMPARE(unets.back().begin()->second.scalar_type(), torch::kHalf);  // the folder stays fp16
        }
        const auto before = kto::load_safetensors((shipped / kUnetWeights).string());
        QCOMPARE(unets[0].size(), before.size());
        int changed = 0;
        for (const auto& [name, t] : before) {
            changed += !torch::equal(unets[0].at(name), t);
            QVERIFY2(torch::equal(unets[0].at(name), unets[1].at(name)), name.c_str());
        }
        QVERIFY(changed > 0);
        // The tuned folder still generates.
        const torch::Tensor img = kto::demo_generate((root / "a").string(), {"a red circle on a blue background"}, {1}, 4);
        QCOMPARE(img.sizes(), (torch::IntArrayRef{1, 3, 64, 64}));
        QVERIFY(torch::isfinite(img).all().item<bool>());
    }

    void cancelStopsBeforeTheFolderChanges() {
        QTemporaryDir tmp;
        const fs::path dir = fs::path(tmp.path().toStdString()) / "m";
        fs::copy(kto::test::demo_model_dir(), dir, fs::copy_options::recursive);
        QVERIFY_THROWS_EXCEPTION(kto::Cancelled,
                                 kto::align_demo_model(small_round(dir), [](const kto::DemoProgress&) { return false; }));
        const auto before = kto::load_safetensors((fs::path(kto::test::demo_model_dir()) / kUnetWeights).string());
        const auto after = kto::load_safetensors((dir / kUnetWeights).string());
        for (const auto& [name, t] : before) QVERIFY2(torch::equal(t, after.at(name)), name.c_str());
    }

    void badOptionsAreRefused() {
        QTemporaryDir tmp;
        const fs::path dir(tmp.path().toStdString());
        auto refused = [&](auto change, const std::string& phrase) {
            kto::DemoAlignOptions o = small_round(fs::path(kto::test::demo_model_dir()));
            change(o);
            kto::test::expect_error([&] { kto::align_demo_model(o); }, phrase);
        };
        refused([](kto::DemoAlignOptions& o) { o.rounds = 0; }, "rounds");
        refused([](kto::DemoAlignOptions& o) { o.prompts = -1; }, "prompts");
        refused([](kto::DemoAlignOptions& o) { o.lr = 0; }, "--align-lr");
        refused([](kto::DemoAlignOptions& o) { o.beta = -1; }, "--align-beta");
        refused([](kto::DemoAlignOptions& o) { o.guidance = 0.5; }, "guidance");
        refused([](kto::DemoAlignOptions& o) { o.objective = "ppo"; }, "ppo");
        refused([&](kto::DemoAlignOptions& o) { o.model_dir = dir.string(); }, "not a demo model folder");
    }
};

QTEST_GUILESS_MAIN(TestDemoAlign)
#include "test_demo_align.moc"
