// Scheduler parity against diffusers 0.25.1 (golden/scheduler.safetensors): timestep grids,
// sigmas, init_noise_sigma for 10/20/50 steps, and a full 10-step loop per scheduler.
#include <QtTest/QtTest>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <fstream>

#include "core/common/error.h"
#include "core/io/safetensors.h"
#include "core/sampling/scheduler.h"
#include "tests/support/tensor_check.h"
#include "tests/support/error_check.h"
#include "tests/support/test_paths.h"

using kto::SchedulerConfig;

using kto::test::expect_error;

class TestSchedulers : public QObject {
    Q_OBJECT

    kto::TensorMap golden_;
    SchedulerConfig base_;

    const torch::Tensor& g(const std::string& key) const {
        auto it = golden_.find(key);
        if (it == golden_.end()) throw std::runtime_error("golden tensor missing: " + key);
        return it->second;
    }
    bool has(const std::string& key) const { return golden_.count(key) > 0; }

private slots:
    void initTestCase() {
        const std::string dir = kto::test::reference_dir() + "/golden/";
        golden_ = kto::load_safetensors(dir + "scheduler.safetensors");
        std::ifstream in(dir + "scheduler_configs.json");
        std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        auto j = kto::parse_json_with_infinity(text, "scheduler_configs.json");
        // Python's -Infinity survives the round trip (DPM-Solver's lambda_min_clipped).
        QVERIFY(std::isinf(j["schedulers"]["sd15.dpmpp_2m"]["config"]["lambda_min_clipped"].get<double>()));
        const auto c = SchedulerConfig::from_json(
            kto::parse_json_with_infinity("{\"lambda_min_clipped\": -Infinity, \"_class_name\": \"x \\\"NaN\\\" Infinity\"}", "t"));
        QVERIFY(c.lambda_min_clipped && std::isinf(*c.lambda_min_clipped) && *c.lambda_min_clipped < 0);
        QCOMPARE(c.class_name, std::string("x \"NaN\" Infinity"));
        base_ = SchedulerConfig::from_json(j["base_configs"]["sd15"], "scheduler_configs.json");
    }

    void betasAndAlphasCumprod() {
        auto s = kto::make_scheduler("ddpm", base_);
        KTO_COMPARE_TENSORS(s->betas(), g("sd15.betas"), 1e-9, "sd15.betas");
        KTO_COMPARE_TENSORS(s->alphas_cumprod(), g("sd15.alphas_cumprod"), 1e-7, "sd15.alphas_cumprod");
    }

    void addNoiseAndVelocity() {
        auto s = kto::make_scheduler("ddpm", base_);
        const auto& x0 = g("sd15.ddpm.add_noise.original_samples");
        const auto& noise = g("sd15.ddpm.add_noise.noise");
        const auto& t = g("sd15.ddpm.add_noise.timesteps");
        KTO_COMPARE_TENSORS(s->add_noise(x0, noise, t), g("sd15.ddpm.add_noise.noisy_samples"), 1e-5,
                            "sd15.ddpm.add_noise");
        KTO_COMPARE_TENSORS(s->get_velocity(x0, noise, t), g("sd15.ddpm.get_velocity"), 1e-5,
                            "sd15.ddpm.get_velocity");
    }

    void grids_data() {
        QTest::addColumn<QString>("name");
        for (const auto& n : kto::sampler_names()) QTest::newRow(n.c_str()) << QString::fromStdString(n);
    }
    void grids() {
        QFETCH(QString, name);
        const std::string sname = name.toStdString();
        auto s = kto::make_scheduler(sname, base_);
        for (int n : {10, 20, 50}) {
            s->set_timesteps(n);
            const std::string p = "sd15." + sname + ".n" + std::to_string(n) + ".";
            const auto& ts = g(p + "timesteps");
            QCOMPARE(s->timesteps().scalar_type(), ts.scalar_type());
            KTO_COMPARE_TENSORS(s->timesteps(), ts, ts.scalar_type() == torch::kLong ? 0.0 : 1e-4, p + "timesteps");
            KTO_COMPARE_TENSORS(torch::tensor({s->init_noise_sigma()}), g(p + "init_noise_sigma"), 1e-5,
                                p + "init_noise_sigma");
            if (has(p + "sigmas"))
                KTO_COMPARE_TENSORS(s->sigmas(), g(p + "sigmas"), 1e-5, p + "sigmas");
        }
    }

    void loop_data() { grids_data(); }
    void loop() {
        QFETCH(QString, name);
        const std::string sname = name.toStdString();
        auto s = kto::make_scheduler(sname, base_);
        s->set_timesteps(10);
        const std::string p = "sd15." + sname + ".loop.";
        auto sample = g(p + "initial_sample");
        // initial_sample = randn * init_noise_sigma: its spread tells the sigma was applied.
        const double spread = sample.std().item<double>() / s->init_noise_sigma();
        QVERIFY2(spread > 0.5 && spread < 2.0, (p + "initial_sample spread " + std::to_string(spread)).c_str());
        double worst = 0.0;
        const int64_t steps = s->timesteps().size(0);
        for (int64_t k = 0; k < steps; ++k) {
            const std::string q = p + "k" + std::to_string(k) + ".";
            // Our own grid drives the loop; Karras timesteps may differ from diffusers' by one
            // float32 ulp (numpy's SIMD float32 log in _sigma_to_t), hence the tolerance.
            const double t = s->timesteps()[k].to(torch::kDouble).item<double>();
            QVERIFY2(std::abs(t - g(q + "timestep").to(torch::kDouble).item<double>()) <= 1e-4, (q + "timestep").c_str());
            KTO_COMPARE_TENSORS(sample, g(q + "sample"), 1e-4, q + "sample");
            auto scaled = s->scale_model_input(sample, t);
            KTO_COMPARE_TENSORS(scaled, g(q + "scaled_model_input"), 1e-4, q + "scaled_model_input");
            kto::StepNoise noise;
            if (has(q + "noise")) noise.noise = g(q + "noise");
            auto out = s->step(g(q + "model_output"), t, sample, noise);
            KTO_COMPARE_TENSORS(out.prev_sample, g(q + "prev_sample"), 1e-4, q + "prev_sample");
            worst = std::max(worst, (out.prev_sample - g(q + "prev_sample")).abs().max().item<double>());
            if (has(q + "pred_original_sample")) {
                QVERIFY(out.pred_original_sample.defined());
                KTO_COMPARE_TENSORS(out.pred_original_sample, g(q + "pred_original_sample"), 1e-4,
                                    q + "pred_original_sample");
            }
            sample = out.prev_sample;  // chain our own result: errors would accumulate
        }
        QVERIFY(!has(p + "k" + std::to_string(steps) + ".timestep"));
        std::printf("PARITY %-48s worst prev_sample error over the loop %g\n", (p + "*").c_str(), worst);
    }

    // The config's stated timestep_spacing wins over the class default (the pipeline goldens'
    // Euler run used the tiny-sd folder's "leading").
    void statedSpacingWins() {
        auto tiny = SchedulerConfig::from_file(kto::test::reference_dir() + "/tiny-sd/scheduler/scheduler_config.json");
        QCOMPARE(kto::default_sampler_for(tiny), std::string("pndm"));
        auto e = kto::make_scheduler("euler", tiny);
        e->set_timesteps(4);
        auto pipe = kto::load_safetensors(kto::test::reference_dir() + "/golden/tiny-sd/pipeline.safetensors");
        KTO_COMPARE_TENSORS(e->timesteps(), pipe.at("euler.timesteps"), 0.0, "tiny-sd euler timesteps (leading)");
        KTO_COMPARE_TENSORS(torch::tensor({e->init_noise_sigma()}), pipe.at("euler.init_noise_sigma"), 1e-5,
                            "tiny-sd euler init_noise_sigma");
        auto d = kto::make_scheduler("ddim", tiny);
        d->set_timesteps(4);
        KTO_COMPARE_TENSORS(d->timesteps(), pipe.at("ddim.timesteps"), 0.0, "tiny-sd ddim timesteps");
        // _use_default_values marks a key as unstated: the class default applies again.
        auto j = tiny.to_json();
        j["_use_default_values"] = {"timestep_spacing"};
        auto e2 = kto::make_scheduler("euler", SchedulerConfig::from_json(j));
        e2->set_timesteps(4);
        QCOMPARE(e2->timesteps()[0].item<float>(), 999.0f);
    }

    void otherSpacingsAndOptions() {
        SchedulerConfig c = base_;
        c.timestep_spacing = "trailing";
        auto d = kto::make_scheduler("ddim", c);
        d->set_timesteps(10);
        QCOMPARE(d->timesteps()[0].item<int64_t>(), int64_t(999));
        QCOMPARE(d->timesteps()[9].item<int64_t>(), int64_t(99));
        c.timestep_spacing = "linspace";
        auto p = kto::make_scheduler("pndm", c);
        p->set_timesteps(10);
        QCOMPARE(p->timesteps().size(0), int64_t(11));
        QCOMPARE(p->timesteps()[0].item<int64_t>(), int64_t(999));
        // PNDM with the Runge-Kutta warm-up runs end to end and stays finite.
        SchedulerConfig prk = base_;
        prk.skip_prk_steps = false;
        auto r = kto::make_scheduler("pndm", prk);
        r->set_timesteps(10);
        QCOMPARE(r->timesteps().size(0), int64_t(12 + 7));
        torch::manual_seed(1);
        auto x = torch::randn({1, 4, 8, 8});
        for (int64_t k = 0; k < r->timesteps().size(0); ++k)
            x = r->step(torch::randn({1, 4, 8, 8}) * 0.1, r->timesteps()[k].item<double>(), x).prev_sample;
        QVERIFY(torch::isfinite(x).all().item<bool>());
        // v-prediction and zero-terminal-SNR are accepted where diffusers accepts them.
        SchedulerConfig v = base_;
        v.prediction_type = "v_prediction";
        v.rescale_betas_zero_snr = true;
        v.timestep_spacing = "trailing";
        auto ev = kto::make_scheduler("euler", v);
        ev->set_timesteps(5);
        QVERIFY(std::abs(ev->alphas_cumprod()[-1].item<double>()) < 1e-6);
        auto y = ev->step(torch::zeros({1, 4, 2, 2}), ev->timesteps()[0].item<double>(), torch::ones({1, 4, 2, 2}));
        QVERIFY(torch::isfinite(y.prev_sample).all().item<bool>());
        // DPM-Solver++ takes zero-terminal-SNR configs as diffusers does (alphas_cumprod[-1] = 2^-24,
        // so the first sigma is 4096, not infinite) and samples from t = 999 to a finite result;
        // PNDM, which diffusers gives no such option, refuses them.
        auto dz = kto::make_scheduler("dpmpp_2m", v);
        QCOMPARE(dz->alphas_cumprod()[-1].item<double>(), std::pow(2.0, -24));
        dz->set_timesteps(10);
        QCOMPARE(dz->timesteps()[0].item<double>(), 999.0);
        auto z = torch::randn({1, 4, 4, 4});
        for (int64_t k = 0; k < dz->timesteps().size(0); ++k)
            z = dz->step(torch::randn({1, 4, 4, 4}) * 0.1, dz->timesteps()[k].item<double>(), z).prev_sample;
        QVERIFY(torch::isfinite(z).all().item<bool>());
        kto::test::expect_error([&] { kto::make_scheduler("pndm", v); }, "choose another sampler");
        // DPM-Solver++ of order 3 runs.
        SchedulerConfig o3 = base_;
        o3.solver_order = 3;
        auto dp = kto::make_scheduler("dpmpp_2m", o3);
        dp->set_timesteps(20);
        x = torch::randn({1, 4, 4, 4});
        for (int64_t k = 0; k < dp->timesteps().size(0); ++k)
            x = dp->step(torch::randn({1, 4, 4, 4}) * 0.1, dp->timesteps()[k].item<double>(), x).prev_sample;
        QVERIFY(torch::isfinite(x).all().item<bool>());
    }

    void ancestralSeedIsReproducible() {
        auto a = kto::make_scheduler("euler_ancestral", base_);
        auto b = kto::make_scheduler("euler_ancestral", base_);
        a->set_timesteps(5);
        b->set_timesteps(5);
        auto ga = kto::make_cpu_generator(42), gb = kto::make_cpu_generator(42);
        auto x = torch::ones({1, 4, 4, 4});
        kto::StepNoise na{&ga, {}}, nb{&gb, {}};
        auto ya = a->step(torch::zeros_like(x), a->timesteps()[0].item<double>(), x, na).prev_sample;
        auto yb = b->step(torch::zeros_like(x), b->timesteps()[0].item<double>(), x, nb).prev_sample;
        QVERIFY(torch::equal(ya, yb));
        // A CPU generator seeded 0 gives torch.manual_seed(0)'s first normals.
        auto g0 = kto::make_cpu_generator(0);
        auto z = kto::randn_on_cpu({3}, &g0);
        QVERIFY(std::abs(z[0].item<double>() - 1.5409961) < 1e-6);
        QVERIFY(std::abs(z[1].item<double>() - (-0.2934289)) < 1e-6);
    }

    void badInput() {
        expect_error([&] { kto::make_scheduler("lms", base_); }, "unknown sampler 'lms'");
        expect_error([&] { SchedulerConfig::from_json(nlohmann::json{{"beta_schedule", "cosine"}}, "x.json"); },
                     "x.json: 'beta_schedule': unsupported value 'cosine'");
        expect_error([&] { SchedulerConfig::from_json(nlohmann::json{{"steps_offset", "one"}}, "x.json"); },
                     "'steps_offset' must be an integer");
        expect_error([&] { SchedulerConfig::from_json(nlohmann::json{{"prediction_type", "flow"}}, "x.json"); },
                     "prediction_type");
        expect_error([&] { SchedulerConfig::from_json(nlohmann::json::array(), "x.json"); }, "JSON object");
        expect_error([&] { SchedulerConfig::from_file("/nonexistent/scheduler_config.json"); },
                     "/nonexistent/scheduler_config.json");
        auto s = kto::make_scheduler("ddim", base_);
        expect_error([&] { s->set_timesteps(0); }, "at least 1");
        expect_error([&] { s->set_timesteps(5000); }, "exceed");
        auto e = kto::make_scheduler("euler", base_);
        e->set_timesteps(10);
        expect_error([&] { e->scale_model_input(torch::zeros({1}), 123.5); }, "not one of the scheduler's timesteps");
        // An unknown class maps to a default sampler instead of failing.
        SchedulerConfig lms = base_;
        lms.class_name = "LMSDiscreteScheduler";
        QCOMPARE(kto::default_sampler_for(lms), std::string("euler"));
        SchedulerConfig ek = base_;
        ek.class_name = "EulerDiscreteScheduler";
        ek.use_karras_sigmas = true;
        QCOMPARE(kto::default_sampler_for(ek), std::string("euler_karras"));
    }

};

QTEST_GUILESS_MAIN(TestSchedulers)
#include "test_schedulers.moc"
