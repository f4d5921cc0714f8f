#include "core/compare/comparison.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "core/common/error.h"
#include "core/common/image_decode.h"
#include "core/common/png_text.h"
#include "core/common/sha256.h"
#include "core/io/model_folder.h"
#include "core/sampling/scheduler_config.h"

namespace kto {
namespace fs = std::filesystem;

namespace {

std::string absolute_or_empty(const std::string& p) {
    if (p.empty()) return {};
    std::error_code ec;
    const fs::path a = fs::weakly_canonical(fs::absolute(p), ec);
    return ec ? fs::absolute(p).lexically_normal().string() : a.string();
}

// "<path> <size> <mtime>" for a file, or for each config/weights file under a folder (sorted).
void describe_files(const std::string& path, std::ostringstream& out) {
    std::error_code ec;
    auto one = [&](const fs::path& f) {
        const auto size = fs::file_size(f, ec);
        const auto mtime = fs::last_write_time(f, ec).time_since_epoch().count();
        out << f.string() << ' ' << size << ' ' << mtime << '\n';
    };
    if (fs::is_regular_file(path, ec)) {
        one(path);
        return;
    }
    if (!fs::is_directory(path, ec)) {
        out << path << " missing\n";
        return;
    }
    std::vector<fs::path> files;
    for (auto it = fs::recursive_directory_iterator(path, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
        if (!it->is_regular_file(ec)) continue;
        const std::string ext = it->path().extension().string();
        if (ext == ".json" || ext == ".safetensors" || ext == ".txt") files.push_back(it->path());
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) one(f);
}

void check_side(const CompareSide& s, const char* which) {
    if (s.model.empty()) throw Error(std::string("comparison side ") + which + ": no model given");
    if (!s.unet_dir.empty() && !s.lora_path.empty())
        throw Error(std::string("comparison side ") + which + ": give a replacement UNet or a LoRA, not both");
    std::error_code ec;
    if (!fs::exists(s.model, ec)) throw Error(s.model + ": no such model folder or checkpoint file");
    if (!s.unet_dir.empty() && !fs::is_directory(s.unet_dir, ec))
        throw Error(s.unet_dir + ": no such UNet folder");
    if (!s.lora_path.empty() && !fs::is_regular_file(s.lora_path, ec))
        throw Error(s.lora_path + ": no such LoRA file");
}

ModelBundle load_side(const CompareSide& s, const CompareSettings& settings) {
    ModelBundleOptions o;
    o.device = settings.device;
    o.dtype = settings.dtype;
    o.unet_dir = s.unet_dir;
    o.lora_path = s.lora_path;
    return ModelBundle::load(s.model, o);
}

// The sampler and size a side would use by default, read from its configs without loading weights
// (folders only; a single-file checkpoint must be loaded to know them).
struct Defaults {
    std::string sampler;
    int size = 0;
};
std::optional<Defaults> folder_defaults(const CompareSide& s) {
    std::error_code ec;
    if (!fs::is_directory(s.model, ec)) return std::nullopt;
    Defaults d;
    d.sampler = default_sampler_for(
        SchedulerConfig::from_file(component_dir(s.model, "scheduler") + "/scheduler_config.json"));
    const std::string unet = s.unet_dir.empty() ? component_dir(s.model, "unet") : s.unet_dir;
    const nlohmann::json uc = read_json_file(unet + "/config.json");
    const nlohmann::json vc = read_json_file(component_dir(s.model, "vae") + "/config.json");
    const int sample = uc.value("sample_size", 64);
    const auto blocks = vc.value("block_out_channels", std::vector<int>{128, 256, 512, 512});
    d.size = sample * (1 << (static_cast<int>(blocks.size()) - 1));
    return d;
}

std::string format_seed(uint64_t seed) { return std::to_string(seed); }

}  // namespace

std::string side_identity(const CompareSide& side) {
    std::ostringstream out;
    out << "model " << absolute_or_empty(side.model) << '\n';
    describe_files(absolute_or_empty(side.model), out);
    if (!side.unet_dir.empty()) {
        out << "unet " << absolute_or_empty(side.unet_dir) << '\n';
        describe_files(absolute_or_empty(side.unet_dir), out);
    }
    if (!side.lora_path.empty()) {
        out << "lora " << absolute_or_empty(side.lora_path) << '\n';
        describe_files(absolute_or_empty(side.lora_path), out);
    }
    return out.str();
}

std::string comparison_cache_key(const std::string& identity, const std::string& prompt, uint64_t seed,
                                 const CompareSettings& settings, const std::string& sampler, int width,
                                 int height) {
    Sha256 h;
    // Length-prefixed fields: no two different inputs concatenate to the same text.
    auto field = [&h](const std::string& s) {
        h.update(std::to_string(s.size()) + ":");
        h.update(s);
    };
    char cfg[32];
    std::snprintf(cfg, sizeof cfg, "%.17g", settings.cfg);
    field("kto-compare-v1");
    field(identity);
    field(prompt);
    field(settings.negative_prompt);
    field(format_seed(seed));
    field(std::to_string(settings.steps));
    field(cfg);
    field(sampler);
    field(std::to_string(width) + "x" + std::to_string(height));
    field(settings.device.str());
    field(std::string(c10::toString(settings.dtype)));
    return h.hex_digest();
}

std::string side_display_name(const CompareSide& side) {
    if (!side.name.empty()) return side.name;
    auto base = fs::path(side.model).lexically_normal();
    if (base.filename().empty()) base = base.parent_path();
    std::string n = base.stem().string();
    if (!side.unet_dir.empty()) {
        auto u = fs::path(side.unet_dir).lexically_normal();
        if (u.filename().empty()) u = u.parent_path();
        // ".../step-200/unet" reads better as "step-200" than as "unet".
        if (u.filename() == "unet" && u.has_parent_path()) u = u.parent_path();
        n += "+" + u.filename().string();
    }
    if (!side.lora_path.empty()) n += "+lora:" + fs::path(side.lora_path).stem().string();
    return n;
}

ComparisonResult render_comparison(const CompareSide& a, const CompareSide& b,
                                   const std::vector<std::string>& prompts, const std::vector<uint64_t>& seeds,
                                   const CompareSettings& settings, const std::string& cache_dir,
                                   const CompareCallbacks& cb) {
    if (prompts.empty()) throw Error("comparison: no prompts given");
    for (const auto& p : prompts)
        if (p.empty()) throw Error("comparison: a prompt is empty");
    if (seeds.empty()) throw Error("comparison: no seeds given");
    if (settings.steps < 1) throw Error("comparison: steps must be at least 1");
    if ((settings.width % 8) != 0 || (settings.height % 8) != 0 || settings.width < 0 || settings.height < 0)
        throw Error("comparison: width and height must be multiples of 8");
    if (cache_dir.empty()) throw Error("comparison: no cache folder given");
    check_side(a, "A");
    check_side(b, "B");
    fs::create_directories(cache_dir);

    // Settings both sides share: side A decides the sampler and the native size.
    std::optional<ModelBundle> loaded_a;
    std::string sampler = settings.sampler;
    int width = settings.width, height = settings.height;
    if (sampler.empty() || width == 0 || height == 0) {
        auto d = folder_defaults(a);
        if (!d) {
            loaded_a = load_side(a, settings);
            d = Defaults{loaded_a->default_sampler(),
                         static_cast<int>(loaded_a->unet->config().sample_size) * loaded_a->vae_scale_factor()};
        }
        if (sampler.empty()) sampler = d->sampler;
        if (width == 0) width = d->size;
        if (height == 0) height = d->size;
    }

    ComparisonResult result;
    result.sampler = sampler;
    result.width = width;
    result.height = height;
    for (const auto& p : prompts)
        for (uint64_t s : seeds) result.cells.push_back({p, s, {}, {}});

    // What each side still has to render.
    const CompareSide* sides[2] = {&a, &b};
    std::vector<size_t> todo[2];
    for (int side = 0; side < 2; ++side) {
        const std::string identity = side_identity(*sides[side]);
        for (size_t i = 0; i < result.cells.size(); ++i) {
            auto& cell = result.cells[i];
            const std::string key =
                comparison_cache_key(identity, cell.prompt, cell.seed, settings, sampler, width, height);
            const std::string path = (fs::path(cache_dir) / key.substr(0, 2) / (key + ".png")).string();
            (side == 0 ? cell.image_a : cell.image_b) = path;
            std::error_code ec;
            if (fs::is_regular_file(path, ec)) {
                ++result.cached;
                if (cb.on_image) cb.on_image(side, i, path, true);
            } else {
                todo[side].push_back(i);
            }
        }
    }

    const int total = static_cast<int>(todo[0].size() + todo[1].size());
    int index = 0;
    for (int side = 0; side < 2; ++side) {
        if (todo[side].empty()) continue;
        // One side's model in memory at a time (two SD 1.5 sets would double the footprint).
        ModelBundle bundle = side == 0 && loaded_a ? std::move(*loaded_a) : load_side(*sides[side], settings);
        loaded_a.reset();
        const std::string model_name = side_display_name(*sides[side]);
        for (size_t i : todo[side]) {
            const auto& cell = result.cells[i];
            if (cb.should_cancel && cb.should_cancel()) throw Cancelled();
            if (cb.on_image_start) cb.on_image_start(side, index, total);
            GenerateOptions o;
            o.prompts = {cell.prompt};
            if (!settings.negative_prompt.empty()) o.negative_prompts = {settings.negative_prompt};
            o.seed = cell.seed;
            o.steps = settings.steps;
            o.cfg = settings.cfg;
            o.sampler = sampler;
            o.width = width;
            o.height = height;
            o.on_progress = cb.on_step;
            o.should_cancel = cb.should_cancel;
            o.on_warning = cb.on_warning;
            const GenerateResult r = generate(bundle, o);
            const RgbImage& im = r.rgb.at(0);

            GenerationParameters p;
            p.prompt = cell.prompt;
            p.negative_prompt = settings.negative_prompt;
            p.steps = settings.steps;
            p.sampler = r.sampler;
            p.cfg_scale = settings.cfg;
            p.seed = cell.seed;
            p.width = width;
            p.height = height;
            p.model = model_name;
            const std::string& path = side == 0 ? cell.image_a : cell.image_b;
            fs::create_directories(fs::path(path).parent_path());
            write_file_atomic(path, encode_png(im.pixels.data(), im.width, im.height, 3,
                                               {{"parameters", format_generation_parameters(p)}}));
            ++result.rendered;
            ++index;
            if (cb.on_image) cb.on_image(side, i, path, false);
        }
    }
    return result;
}

RgbImage comparison_grid(const ComparisonResult& result, int gap) {
    if (result.cells.empty()) throw Error("comparison grid: no images");
    gap = std::max(0, gap);
    std::vector<std::pair<RgbImage, RgbImage>> rows;
    int cell_w = 0, cell_h = 0;
    for (const auto& c : result.cells) {
        rows.emplace_back(read_image_rgb8(c.image_a), read_image_rgb8(c.image_b));
        cell_w = std::max({cell_w, rows.back().first.width, rows.back().second.width});
        cell_h = std::max({cell_h, rows.back().first.height, rows.back().second.height});
    }
    RgbImage grid;
    grid.width = 2 * cell_w + 3 * gap;
    grid.height = static_cast<int>(rows.size()) * (cell_h + gap) + gap;
    grid.pixels.assign(static_cast<size_t>(grid.width) * static_cast<size_t>(grid.height) * 3, 40);
    auto blit = [&grid](const RgbImage& im, int x0, int y0) {
        for (int y = 0; y < im.height; ++y)
            std::copy_n(im.pixels.begin() + static_cast<std::ptrdiff_t>(y) * im.width * 3, im.width * 3,
                        grid.pixels.begin() + (static_cast<std::ptrdiff_t>(y0 + y) * grid.width + x0) * 3);
    };
    for (size_t r = 0; r < rows.size(); ++r) {
        const int y = gap + static_cast<int>(r) * (cell_h + gap);
        blit(rows[r].first, gap, y);
        blit(rows[r].second, 2 * gap + cell_w, y);
    }
    return grid;
}

std::vector<std::string> read_prompt_file(const std::string& path) {
    std::error_code ec;
    if (!fs::exists(path, ec)) throw Error(path + ": prompts file not found");
    if (!fs::is_regular_file(path, ec)) throw Error(path + ": not a regular file");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot read the prompts file");
    std::vector<std::string> prompts;
    std::string line;
    while (std::getline(in, line)) {
        const auto first = line.find_first_not_of(" \t\r\n\f\v");
        if (first == std::string::npos) continue;
        const auto last = line.find_last_not_of(" \t\r\n\f\v");
        line = line.substr(first, last - first + 1);
        if (line[0] == '#') continue;
        prompts.push_back(line);
    }
    if (prompts.empty())
        throw Error(path + ": no prompts in the file (one prompt a line; blank lines and lines starting "
                           "with # are skipped)");
    return prompts;
}

}  // namespace kto
