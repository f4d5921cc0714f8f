// `kto-studio-cli compare`: the same prompts x seeds through the base model (side A) and a
// fine-tune of it (side B: --unet DIR or --lora FILE), a side-by-side grid PNG and compare.json.
// Images are cached (default OUT/.cache), so running it again with the same inputs is instant.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "app/cli/command.h"
#include "app/cli/sampling_options.h"
#include "core/common/error.h"
#include "core/common/png_text.h"
#include "core/compare/comparison.h"

namespace fs = std::filesystem;

namespace kto::cli {
namespace {

struct CompareArgs {
    std::string model;
    std::string model_b;
    std::string unet;
    std::string lora;
    std::string prompts;
    std::string seeds;
    int64_t seed_start = 0;
    std::string out;
    std::string cache;
    int steps = 20;
    double cfg = 7.5;
    std::string sampler;
    std::string size;
    std::string negative;
    std::string device = "cpu";
    std::string dtype;
};

// --seeds: a count N (seeds seed_start .. seed_start+N-1) or an explicit list "3,7,42".
std::vector<uint64_t> parse_seeds(const std::string& text, int64_t start) {
    auto bad = [&text](const std::string& why) {
        return Error("--seeds: " + why + " (got '" + text + "'; expected a count such as 4, or a list such as 1,7,42)");
    };
    if (text.empty()) throw bad("empty");
    std::vector<uint64_t> out;
    auto number = [&](const std::string& s) -> uint64_t {
        if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos) throw bad("not a non-negative integer");
        try {
            return std::stoull(s);
        } catch (const std::exception&) {
            throw bad("out of range");
        }
    };
    if (text.find(',') == std::string::npos) {
        const uint64_t n = number(text);
        if (n == 0) throw bad("at least one seed is needed");
        if (n > 10000) throw bad("more than 10000 seeds");
        for (uint64_t i = 0; i < n; ++i) out.push_back(static_cast<uint64_t>(start) + i);
        return out;
    }
    size_t from = 0;
    while (from <= text.size()) {
        const size_t comma = std::min(text.find(',', from), text.size());
        out.push_back(number(text.substr(from, comma - from)));
        from = comma + 1;
    }
    return out;
}

std::string relative_to(const std::string& path, const std::string& dir) {
    return fs::relative(fs::absolute(path), fs::absolute(dir)).generic_string();
}

int run_compare(const CompareArgs& a) {
    std::string model = a.model;
    if (model.empty()) {
        model = find_demo_model();
        if (model.empty())
            throw Error("no built-in demo model found (resources/models/kto-demo); pass --model DIR");
    }
    if (a.out.empty()) throw Error("--out is required");
    const auto prompts = read_prompt_file(a.prompts);
    const auto seeds = parse_seeds(a.seeds, a.seed_start);

    CompareSettings settings;
    settings.device = parse_device(a.device);
    settings.dtype = parse_dtype(a.dtype, settings.device, model);
    settings.steps = a.steps;
    settings.cfg = a.cfg;
    settings.sampler = a.sampler;
    settings.negative_prompt = a.negative;
    if (!a.size.empty()) std::tie(settings.width, settings.height) = parse_size(a.size);

    CompareSide side_a{model, {}, {}, {}};
    CompareSide side_b{a.model_b.empty() ? model : a.model_b, a.unet, a.lora, {}};
    if (a.model_b.empty() && a.unet.empty() && a.lora.empty())
        throw Error("nothing to compare: side B needs --unet DIR, --lora FILE or --model-b DIR");

    fs::create_directories(a.out);
    const std::string cache = a.cache.empty() ? (fs::path(a.out) / ".cache").string() : a.cache;
    CompareCallbacks cb;
    cb.on_image_start = [&](int side, int index, int total) {
        std::cerr << "\rrendering " << (side == 0 ? "A" : "B") << " " << index + 1 << "/" << total << std::flush;
    };
    cb.on_warning = [](const std::string& w) { std::cerr << "\nwarning: " << w << "\n"; };
    const ComparisonResult r = render_comparison(side_a, side_b, prompts, seeds, settings, cache, cb);
    if (r.rendered > 0) std::cerr << "\n";
    std::cerr << r.rendered << " image(s) rendered, " << r.cached << " from the cache\n";

    // Stable names next to compare.json (copies of the cached files, so OUT stands alone).
    nlohmann::json cells = nlohmann::json::array();
    for (size_t i = 0; i < r.cells.size(); ++i) {
        const auto& c = r.cells[i];
        char stem[64];
        std::snprintf(stem, sizeof stem, "p%03zu-s%llu", i / seeds.size(), static_cast<unsigned long long>(c.seed));
        const fs::path pa = fs::path(a.out) / "a" / (std::string(stem) + ".png");
        const fs::path pb = fs::path(a.out) / "b" / (std::string(stem) + ".png");
        fs::create_directories(pa.parent_path());
        fs::create_directories(pb.parent_path());
        fs::copy_file(c.image_a, pa, fs::copy_options::overwrite_existing);
        fs::copy_file(c.image_b, pb, fs::copy_options::overwrite_existing);
        cells.push_back({{"prompt", c.prompt},
                         {"seed", c.seed},
                         {"a", relative_to(pa.string(), a.out)},
                         {"b", relative_to(pb.string(), a.out)}});
    }
    const RgbImage grid = comparison_grid(r);
    const std::string grid_path = (fs::path(a.out) / "grid.png").string();
    write_file_atomic(grid_path, encode_png(grid.pixels.data(), grid.width, grid.height, 3));

    nlohmann::json j = {
        {"a", {{"name", side_display_name(side_a)}, {"model", fs::absolute(side_a.model).string()}}},
        {"b",
         {{"name", side_display_name(side_b)},
          {"model", fs::absolute(side_b.model).string()},
          {"unet", side_b.unet_dir.empty() ? "" : fs::absolute(side_b.unet_dir).string()},
          {"lora", side_b.lora_path.empty() ? "" : fs::absolute(side_b.lora_path).string()}}},
        {"settings",
         {{"steps", settings.steps},
          {"cfg", settings.cfg},
          {"sampler", r.sampler},
          {"width", r.width},
          {"height", r.height},
          {"negative_prompt", settings.negative_prompt}}},
        {"grid", "grid.png"},
        {"cells", cells},
    };
    const std::string text = j.dump(2) + "\n";
    const std::string json_path = (fs::path(a.out) / "compare.json").string();
    write_file_atomic(json_path, std::vector<uint8_t>(text.begin(), text.end()));
    std::cout << grid_path << "\n" << json_path << "\n";
    return 0;
}

CommandRegistrar reg{
    {"compare", "Render prompts x seeds with a base model and a fine-tune: side-by-side grid and compare.json",
     [](CLI::App& sub) -> std::function<int()> {
         auto a = std::make_shared<CompareArgs>();
         sub.add_option("--model", a->model, "Base model folder or .safetensors checkpoint: side A (default: the demo model)");
         auto* unet = sub.add_option("--unet", a->unet, "Side B: this UNet folder on the base model (a fine-tune)");
         auto* lora = sub.add_option("--lora", a->lora, "Side B: these LoRA weights on the base model");
         unet->excludes(lora);
         sub.add_option("--model-b", a->model_b, "Side B's model, when it is another model than --model");
         sub.add_option("--prompts", a->prompts, "Text file: one prompt a line (# comments, blank lines skipped)")
             ->required();
         sub.add_option("--seeds", a->seeds, "How many seeds (N: seeds from --seed-start), or a list like 1,7,42")
             ->required();
         sub.add_option("--seed-start", a->seed_start, "First seed when --seeds is a count (default 0)")
             ->check(CLI::NonNegativeNumber);
         sub.add_option("--out", a->out, "Output folder: grid.png, compare.json, a/ and b/ images")->required();
         sub.add_option("--cache", a->cache, "Image cache folder (default OUT/.cache)");
         sub.add_option("--steps", a->steps, "Denoising steps (default 20)")->check(CLI::Range(1, 1000));
         sub.add_option("--cfg", a->cfg, "Guidance scale (default 7.5)");
         sub.add_option("--sampler", a->sampler, "Sampler: " + sampler_list() + " (default: the base model's)");
         sub.add_option("--size", a->size, "WIDTHxHEIGHT in pixels, multiples of 8 (default: the model's)");
         sub.add_option("--negative", a->negative, "Negative prompt for every prompt");
         sub.add_option("--device", a->device, "cpu (default), cuda or cuda:N");
         sub.add_option("--dtype", a->dtype, "fp32, fp16 or bf16 (default: fp16 on CUDA; on the CPU fp32 for a small UNet such as the demo model's, else bf16 where it has AMX or AVX512-BF16, else fp32; KTO_CPU_DTYPE=fp32 or bf16 sets the CPU default)");
         return [a] { return run_compare(*a); };
     }}};

}  // namespace
}  // namespace kto::cli
