// kto-test-labels: slow
// The shipped demo model loads and draws what easy prompts ask for (the background, and some of
// the shape colours, read back by the shapes scorer). Slow label: 20-step generations take about a minute on a busy 2-core CPU.
#include <QtTest>

#include <filesystem>

#include "core/shapes/renderer.h"
#include "core/shapes/scorer.h"
#include "core/train/demo_model.h"
#include "tests/support/test_paths.h"

using namespace kto::shapes;

class TestDemoModel : public QObject {
    Q_OBJECT
private slots:
    void shippedModelDrawsEasyPrompts() {
        const std::string dir = kto::test::demo_model_dir();
        QVERIFY2(std::filesystem::exists(dir + "/model_index.json"), dir.c_str());
        const std::vector<std::string> prompts = {"a large red circle on a blue background",
                                                  "a large yellow square on a black background",
                                                  "a large white star on a green background"};
        const torch::Tensor images = kto::demo_generate(dir, prompts, {1, 2, 3}, 20, 5.0);
        QCOMPARE(images.size(0), int64_t(3));
        QCOMPARE(images.size(2), int64_t(64));
        QCOMPARE(images.size(3), int64_t(64));
        // What the model card measures on 200 prompts: the background is right in all of them,
        // the shape's colour in four of five (more often for large shapes, as here). So every
        // background must be right here, and at least 2 of the 3 shape colours.
        int right = 0, backgrounds = 0;
        for (int k = 0; k < 3; ++k) {
            const Fidelity f = fidelity(tensor_to_image(images[k]), prompts[size_t(k)]);
            right += f.colour.right + f.background.right;
            backgrounds += f.background.right;
            qInfo("%s: colour %d background %d class %d", prompts[size_t(k)].c_str(), f.colour.right,
                  f.background.right, f.cls.right);
        }
        QCOMPARE(backgrounds, 3);
        QVERIFY(right >= 5);  // of 6 colour + background checks
    }
};

QTEST_GUILESS_MAIN(TestDemoModel)
#include "test_demo_model.moc"
