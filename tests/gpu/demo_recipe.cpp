// Demo-model recipe trials on a GPU server (issue 5): trains the demo model with the given
// train-demo options on a device, then scores it as `demo-eval` does (200 held-out prompts,
// 20 DDIM steps) at CFG 5 and 3. A plain program on kto_core, so the headless core build
// (KTO_CORE_ONLY, docs/GPU.md) builds it where no Qt is. A recipe found here is then trained on
// the CPU with `kto-studio-cli train-demo`, which is what ships.
//
//   demo_recipe --out DIR [--device cuda] [--threads N] [--vae-from DIR] [--init-from DIR] [--vae-steps N]
//               [--vae-kl-weight X] [--vae-palette-weight X] [--decoder-steps N] [--decoder-gain-jitter X]
//               [--decoder-validation-prompts N]
//               [--unet-steps N] [--unet-batch N] [--unet-lr X] [--unet-lr-floor X]
//               [--unet-channels 32,64] [--unet-layers N] [--unet-plain-levels N] [--unet-heads N]
//               [--unet-shape-weight X] [--attention-loss-weight X] [--attention-words LIST] [--min-snr-gamma X] [--text-width N] [--text-layers N]
//               [--two-shape-share X] [--ema-decay X] [--offset-noise X] [--zero-terminal-snr 0|1]
//               [--reading-order 0|1] [--cache-images N] [--prompts N] [--seed N] [--reconstruct 0|1]
//
// --reconstruct 1 scores the VAE round trip of the prompts' own renders (demo-eval --reconstruct) once,
// instead of generations at two CFG scales: the colour and class ceiling a VAE phase leaves the UNet.
//
// Prints "RESULT <out> cfg <g> colour <%> background <%> class <%> size <%> position <%> ... one-shape
// colours <right>/<n> two-shape both <right>/<n>" lines.
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "core/common/error.h"
#include "core/train/demo_model.h"

namespace {

std::vector<int> parse_int_list(const std::string& s) {
    std::vector<int> out;
    std::stringstream ss(s);
    for (std::string item; std::getline(ss, item, ',');) out.push_back(std::stoi(item));
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    std::map<std::string, std::string> a;
    for (int i = 1; i < argc; ++i) {
        const std::string k = argv[i];
        if (k.rfind("--", 0) != 0 || i + 1 >= argc) {
            std::fprintf(stderr, "demo_recipe: expected --option value pairs, got '%s'\n", k.c_str());
            return 2;
        }
        a[k.substr(2)] = argv[++i];
    }
    auto take = [&](const std::string& k, auto& field, auto parse) {
        auto it = a.find(k);
        if (it == a.end()) return;
        field = parse(it->second);
        a.erase(it);
    };
    auto as_int = [](const std::string& s) { return std::stoi(s); };
    auto as_double = [](const std::string& s) { return std::stod(s); };
    auto as_string = [](const std::string& s) { return s; };
    auto as_flag = [](const std::string& name) {
        return [name](const std::string& s) {
            if (s != "0" && s != "1") throw kto::Error("--" + name + " takes 0 or 1, not '" + s + "'");
            return s == "1";
        };
    };
    try {
        kto::DemoTrainOptions o;
        std::string device = "cuda";
        int prompts = 200;
        bool reconstruct = false;
        take("out", o.out_dir, as_string);
        take("device", device, as_string);
        take("threads", o.threads, as_int);
        take("vae-from", o.vae_from, as_string);
        take("init-from", o.init_from, as_string);
        take("vae-kl-weight", o.vae_kl_weight, as_double);
        take("vae-palette-weight", o.vae_palette_weight, as_double);
        take("decoder-steps", o.decoder_steps, as_int);
        take("decoder-gain-jitter", o.decoder_gain_jitter, as_double);
        take("decoder-validation-prompts", o.decoder_validation_prompts, as_int);
        take("vae-steps", o.vae_steps, as_int);
        take("unet-steps", o.unet_steps, as_int);
        take("unet-batch", o.unet_batch, as_int);
        take("unet-lr", o.unet_lr, as_double);
        take("unet-lr-floor", o.unet_lr_floor, as_double);
        take("unet-rounds", o.unet_rounds, as_int);
        take("unet-round-steps", o.unet_round_steps, as_int);
        take("unet-round-lr", o.unet_round_lr, as_double);
        take("unet-channels", o.unet_channels, parse_int_list);
        take("unet-plain-levels", o.unet_plain_levels, as_int);
        take("unet-layers", o.unet_layers, as_int);
        take("unet-heads", o.unet_heads, as_int);
        take("text-width", o.text_width, as_int);
        take("text-layers", o.text_layers, as_int);
        take("two-shape-share", o.two_shape_share, as_double);
        take("unet-shape-weight", o.unet_shape_weight, as_double);
        take("attention-loss-weight", o.attention_loss_weight, as_double);
        take("attention-words", o.attention_words, as_string);
        take("min-snr-gamma", o.min_snr_gamma, as_double);
        take("ema-decay", o.ema_decay, as_double);
        take("offset-noise", o.offset_noise, as_double);
        take("zero-terminal-snr", o.zero_terminal_snr, as_flag("zero-terminal-snr"));
        take("reading-order", o.reading_order, as_flag("reading-order"));
        take("cache-images", o.cache_images, as_int);
        take("seed", o.seed, [](const std::string& s) { return uint64_t(std::stoull(s)); });
        take("prompts", prompts, as_int);
        take("reconstruct", reconstruct, as_flag("reconstruct"));
        if (!a.empty()) {
            std::fprintf(stderr, "demo_recipe: unknown option --%s\n", a.begin()->first.c_str());
            return 2;
        }
        if (o.out_dir.empty()) {
            std::fprintf(stderr, "demo_recipe: --out DIR is required\n");
            return 2;
        }
        o.device = torch::Device(device);
        const auto t0 = std::chrono::steady_clock::now();
        std::string last;
        kto::train_demo_model(o, [&](const kto::DemoProgress& p) {
            if (p.phase != last || p.step == p.total || p.step % 1000 == 0)
                std::printf("%s %s %d/%d loss %.4f attention %.4f %.0f s\n", o.out_dir.c_str(), p.phase.c_str(),
                            p.step, p.total, p.loss, p.attention_loss, p.elapsed_s);
            std::fflush(stdout);
            last = p.phase;
            return true;
        });
        const double train_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        for (double cfg : {5.0, 3.0}) {
            if (reconstruct && cfg != 5.0) break;  // a round trip has no guidance: one score
            kto::DemoEvalOptions e;
            e.reconstruct = reconstruct;
            e.model_dir = o.out_dir;
            e.prompts = prompts;
            e.guidance = cfg;
            e.device = o.device;
            e.batch = 50;
            e.speed_runs = 0;
            e.threads = o.threads;
            e.reading_order = o.reading_order;  // prompts in the convention the model learned
            if (cfg == 5.0 && !reconstruct) e.grid_png = (std::filesystem::path(o.out_dir) / "grid.png").string();
            const kto::DemoEvalResult r = kto::evaluate_demo_model(e);
            // Where the colour misses are: one-shape prompts, and two-shape prompts with both right.
            int one = 0, one_right = 0, two = 0, two_right = 0;
            for (const kto::DemoEvalImage& d : r.details) {
                const auto& c = d.fidelity.colour;
                if (d.fidelity.cls.asked == 1) one += 1, one_right += c.right == c.asked;
                if (d.fidelity.cls.asked == 2) two += 1, two_right += c.right == c.asked;
            }
            std::printf("RESULT %s %s %.0f colour %.1f background %.1f class %.1f size %.1f position %.1f train_s %.0f "
                        "one-shape colours %d/%d two-shape both %d/%d\n",
                        o.out_dir.c_str(), reconstruct ? "round-trip" : "cfg", reconstruct ? 0.0 : cfg, 100 * r.colour_right, 100 * r.background_right, 100 * r.class_right,
                        100 * r.size_right, 100 * r.position_right, train_s, one_right, one, two_right, two);
            std::fflush(stdout);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "demo_recipe: %s\n", e.what());
        return 1;
    }
    return 0;
}
