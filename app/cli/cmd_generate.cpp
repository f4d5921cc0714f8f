// `kto-studio-cli generate`: text-to-image to PNG files carrying an A1111-style `parameters`
// chunk; with --workspace the generation and its images are also recorded in the label store.
#include <filesystem>
#include <iostream>
#include <memory>
#include <random>

#include "app/cli/command.h"
#include "app/cli/sampling_options.h"
#include "app/cli/workspace_options.h"
#include "core/common/error.h"
#include "core/common/png_text.h"
#include "core/pipeline/pipeline.h"
#include "storage/store/store.h"

namespace fs = std::filesystem;

namespace kto::cli {
namespace {

struct GenerateArgs {
    std::string model;
    std::vector<std::string> prompts;
    std::vector<std::string> negatives;
    int64_t seed = -1;
    int steps = 25;
    double cfg = 7.5;
    std::string sampler;
    std::string size;
    std::string out = "image.png";
    std::string unet;
    std::string lora;
    int batch = 1;
    std::string device = "cpu";
    std::string dtype;
    std::string workspace;
    bool use_workspace = false;
};

// FILE.png for one image, FILE-1.png ... FILE-N.png for several.
std::string output_name(const std::string& out, size_t index, size_t count) {
    if (count == 1) return out;
    fs::path p(out);
    const std::string ext = p.has_extension() ? p.extension().string() : ".png";
    return (p.parent_path() / (p.stem().string() + "-" + std::to_string(index + 1) + ext)).string();
}

int run_generate(const GenerateArgs& a) {
    std::string model = a.model;
    if (model.empty()) {
        model = find_demo_model();
        if (model.empty())
            throw Error("no built-in demo model found (resources/models/kto-demo); pass --model DIR with a diffusers "
                        "Stable Diffusion folder or a .safetensors checkpoint");
    }
    if (a.prompts.empty()) throw Error("--prompt is required");
    const torch::Device device = parse_device(a.device);

    ModelBundleOptions mo;
    mo.device = device;
    mo.dtype = parse_dtype(a.dtype, device, model);
    mo.unet_dir = a.unet;
    mo.lora_path = a.lora;
    auto bundle = ModelBundle::load(model, mo);

    GenerateOptions o;
    o.prompts = a.prompts;
    o.negative_prompts = a.negatives;
    o.seed = a.seed >= 0 ? static_cast<uint64_t>(a.seed) : (static_cast<uint64_t>(std::random_device{}()) & 0xffffffffu);
    o.steps = a.steps;
    o.cfg = a.cfg;
    o.sampler = a.sampler;
    o.images_per_prompt = a.batch;
    if (a.size.empty()) {
        const int s = static_cast<int>(bundle.unet->config().sample_size) * bundle.vae_scale_factor();
        o.width = o.height = s;
    } else {
        std::tie(o.width, o.height) = parse_size(a.size);
    }
    o.on_progress = [](int step, int total) {
        std::cerr << "\rstep " << step << "/" << total << std::flush;
        if (step == total) std::cerr << "\n";
    };
    o.on_warning = [](const std::string& w) { std::cerr << "warning: " << w << "\n"; };
    const auto result = generate(bundle, o);

    const std::string model_name = bundle.name + (a.unet.empty() ? "" : "+" + fs::path(a.unet).filename().string()) +
                                   (a.lora.empty() ? "" : "+lora:" + fs::path(a.lora).stem().string());
    std::vector<std::string> pngs;
    for (size_t i = 0; i < result.rgb.size(); ++i) {
        const size_t prompt_index = i / static_cast<size_t>(a.batch);
        GenerationParameters p;
        p.prompt = a.prompts[prompt_index];
        p.negative_prompt = a.negatives.empty() ? "" : a.negatives.size() == 1 ? a.negatives[0] : a.negatives[prompt_index];
        p.steps = a.steps;
        p.sampler = result.sampler;
        p.cfg_scale = a.cfg;
        p.seed = o.seed;
        p.width = o.width;
        p.height = o.height;
        p.model = model_name;
        if (result.rgb.size() > 1) p.extra["Batch index"] = std::to_string(i);
        const auto& im = result.rgb[i];
        auto png = encode_png(im.pixels.data(), im.width, im.height, 3,
                              {{"parameters", format_generation_parameters(p)}});
        const std::string path = output_name(a.out, i, result.rgb.size());
        write_file_atomic(path, png);
        std::cout << path << "\n";
        pngs.emplace_back(png.begin(), png.end());
    }

    if (a.use_workspace) {
        storage::Store store(open_workspace(a.workspace));
        const int64_t model_id = store.ensure_model(bundle.name, fs::absolute(model).string());
        for (size_t pi = 0; pi < a.prompts.size(); ++pi) {
            storage::GenerationInput g;
            g.prompt = a.prompts[pi];
            g.negative_prompt = a.negatives.empty() ? "" : a.negatives.size() == 1 ? a.negatives[0] : a.negatives[pi];
            g.seed = static_cast<int64_t>(o.seed);
            g.steps = a.steps;
            g.cfg = a.cfg;
            g.sampler = result.sampler;
            g.width = o.width;
            g.height = o.height;
            g.model_id = model_id;
            if (!a.unet.empty()) g.checkpoint = fs::absolute(a.unet).string();
            std::vector<storage::ImageInput> images;
            for (int k = 0; k < a.batch; ++k) {
                storage::ImageInput in;
                in.encoded = pngs[pi * static_cast<size_t>(a.batch) + static_cast<size_t>(k)];
                images.push_back(std::move(in));
            }
            const auto added = store.add_generation(g, images);
            std::cerr << "recorded generation " << added.generation_id << " (" << added.image_ids.size()
                      << " image(s)) in " << store.workspace().dir().string() << "\n";
        }
    }
    return 0;
}

CommandRegistrar reg{{"generate", "Generate images from a prompt and write PNGs (with their parameters)",
                      [](CLI::App& sub) -> std::function<int()> {
                          auto a = std::make_shared<GenerateArgs>();
                          sub.add_option("--model", a->model,
                                         "Diffusers model folder or .safetensors checkpoint (default: the demo model)");
                          sub.add_option("--prompt", a->prompts, "Prompt (repeat for several)")->required();
                          sub.add_option("--negative", a->negatives, "Negative prompt (one, or one per --prompt)");
                          sub.add_option("--seed", a->seed, "Seed (default: random, printed in the PNG)");
                          sub.add_option("--steps", a->steps, "Denoising steps (default 25)")->check(CLI::Range(1, 1000));
                          sub.add_option("--cfg", a->cfg, "Guidance scale (default 7.5)");
                          sub.add_option("--sampler", a->sampler, "Sampler: " + sampler_list() + " (default: the model's)");
                          sub.add_option("--size", a->size, "WIDTHxHEIGHT in pixels, multiples of 8 (default: the model's)");
                          sub.add_option("--out", a->out, "Output PNG (FILE-N.png when several images)");
                          sub.add_option("--unet", a->unet, "UNet folder replacing the model's (a fine-tune)");
                          sub.add_option("--lora", a->lora, "LoRA weights (.safetensors) applied to the UNet");
                          sub.add_option("--batch", a->batch, "Images per prompt (default 1)")->check(CLI::Range(1, 64));
                          sub.add_option("--device", a->device, "cpu (default), cuda or cuda:N");
                          sub.add_option("--dtype", a->dtype, "fp32, fp16 or bf16 (default: fp16 on CUDA; on the CPU fp32 for a small UNet such as the demo model's, else bf16 where it has AMX or AVX512-BF16, else fp32; KTO_CPU_DTYPE=fp32 or bf16 sets the CPU default)");
                          auto* ws = sub.add_option("--workspace", a->workspace,
                                                    "Also record the generation and images in this workspace");
                          return [a, ws] {
                              a->use_workspace = ws->count() > 0;
                              return run_generate(*a);
                          };
                      }}};

}  // namespace
}  // namespace kto::cli
