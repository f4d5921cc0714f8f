#include "core/train/latent_cache.h"

#include <algorithm>
#include <filesystem>
#include <map>

#include "core/common/error.h"
#include "core/io/safetensors.h"
#include "core/common/sha256.h"

namespace fs = std::filesystem;

namespace kto {

namespace {

bool valid_entry(const TensorMap& t, std::initializer_list<const char*> names) {
    for (const char* n : names)
        if (!t.count(n) || !t.at(n).defined()) return false;
    return true;
}

}  // namespace

LatentCache::LatentCache(std::string dir) : dir_(std::move(dir)) {}

std::vector<ImageLatents> LatentCache::image_latents(const std::vector<TrainRecord>& records,
                                                     int resolution, const LatentEncoders& encoders,
                                                     std::vector<SkippedImage>& skipped, int batch_size,
                                                     const std::function<bool(size_t, size_t)>& progress) {
    if (encoders.vae_identity.empty()) throw Error("latent cache: the VAE identity is empty");
    std::vector<ImageLatents> out(records.size());
    const fs::path folder = fs::path(dir_) / "latents";

    // Pass 1: hash every image and look it up; the misses are decoded and queued for the VAE.
    struct Pending {
        std::vector<size_t> indices;  // records sharing this image content
        fs::path file;
        torch::Tensor pixels;  // [3,R,R]
    };
    std::map<std::string, Pending> pending;  // by cache key
    std::map<std::string, ImageLatents> loaded;
    std::vector<std::string> keys(records.size());
    const size_t total = records.size() * 2;  // hashing/decoding, then encoding
    for (size_t i = 0; i < records.size(); ++i) {
        if (progress && !progress(i, total)) throw Cancelled();
        const auto& path = records[i].image_path;
        std::string image_hash;
        try {
            if (!fs::exists(path)) throw Error(path + ": image file not found");
            image_hash = sha256_file_hex(path);
        } catch (const Error& e) {
            skipped.push_back({path, e.what()});
            continue;
        }
        const std::string key = sha256_hex(image_hash + "\n" + encoders.vae_identity + "\n" +
                                           std::to_string(resolution));
        keys[i] = key;
        if (loaded.count(key)) {
            out[i] = loaded[key];
            ++stats_.image_hits;
            continue;
        }
        if (pending.count(key)) {
            pending[key].indices.push_back(i);
            continue;
        }
        const fs::path file = folder / (key + ".safetensors");
        if (fs::exists(file)) {
            try {
                const auto t = load_safetensors(file.string());
                if (valid_entry(t, {"mean", "std"}) && t.at("mean").dim() == 4 && t.at("mean").size(0) == 2) {
                    ImageLatents l{t.at("mean").clone(), t.at("std").clone()};
                    loaded[key] = l;
                    out[i] = l;
                    ++stats_.image_hits;
                    continue;
                }
            } catch (const Error&) {
                // A damaged entry (e.g. a crash while another tool wrote it) is recomputed below.
            }
        }
        try {
            Pending p;
            p.indices.push_back(i);
            p.file = file;
            p.pixels = load_training_image(path, resolution);
            pending.emplace(key, std::move(p));
        } catch (const Error& e) {
            skipped.push_back({path, e.what()});
        }
    }

    // Pass 2: encode the misses in batches, each image with its mirror.
    std::vector<std::string> todo;
    for (const auto& [key, p] : pending) todo.push_back(key);
    if (!todo.empty() && !encoders.encode_images)
        throw Error("latent cache: images need encoding but no VAE encoder was given");
    const size_t step = static_cast<size_t>(std::max(1, batch_size));
    for (size_t start = 0; start < todo.size(); start += step) {
        const size_t end = std::min(todo.size(), start + step);
        std::vector<torch::Tensor> batch;
        for (size_t k = start; k < end; ++k) {
            const auto& px = pending[todo[k]].pixels;
            batch.push_back(px);
            batch.push_back(px.flip({2}));
        }
        torch::Tensor mean, std;
        {
            torch::NoGradGuard no_grad;
            std::tie(mean, std) = encoders.encode_images(torch::stack(batch));
        }
        ++stats_.vae_calls;
        mean = mean.detach().to(torch::kCPU, torch::kFloat);
        std = std.detach().to(torch::kCPU, torch::kFloat);
        fs::create_directories(folder);
        for (size_t k = start; k < end; ++k) {
            const int64_t j = static_cast<int64_t>(2 * (k - start));
            ImageLatents l{mean.narrow(0, j, 2).clone(), std.narrow(0, j, 2).clone()};
            auto& p = pending[todo[k]];
            write_safetensors(p.file.string(), {{"mean", l.mean}, {"std", l.std}},
                              {{"vae", encoders.vae_identity}, {"resolution", std::to_string(resolution)}});
            for (size_t idx : p.indices) out[idx] = l;
            ++stats_.image_misses;
            stats_.image_hits += static_cast<int64_t>(p.indices.size()) - 1;
            p.pixels = torch::Tensor();
        }
        if (progress && !progress(records.size() + records.size() * end / todo.size(), total))
            throw Cancelled();
    }
    return out;
}

std::vector<torch::Tensor> LatentCache::text_embeddings(const std::vector<std::string>& captions,
                                                        const LatentEncoders& encoders, int batch_size) {
    if (encoders.text_identity.empty()) throw Error("latent cache: the text-encoder identity is empty");
    const fs::path folder = fs::path(dir_) / "text";
    std::map<std::string, torch::Tensor> by_caption;
    std::vector<std::string> todo;
    for (const auto& c : captions) {
        if (by_caption.count(c) || std::find(todo.begin(), todo.end(), c) != todo.end()) continue;
        const fs::path file = folder / (sha256_hex(encoders.text_identity + "\n" + c) + ".safetensors");
        if (fs::exists(file)) {
            try {
                const auto t = load_safetensors(file.string());
                if (valid_entry(t, {"embedding"}) && t.at("embedding").dim() == 2) {
                    by_caption[c] = t.at("embedding").clone();
                    ++stats_.text_hits;
                    continue;
                }
            } catch (const Error&) {
                // Damaged entry: recomputed below.
            }
        }
        todo.push_back(c);
    }
    if (!todo.empty() && !encoders.encode_text)
        throw Error("latent cache: captions need encoding but no text encoder was given");
    const size_t step = static_cast<size_t>(std::max(1, batch_size));
    for (size_t start = 0; start < todo.size(); start += step) {
        const size_t end = std::min(todo.size(), start + step);
        std::vector<std::string> batch(todo.begin() + static_cast<std::ptrdiff_t>(start),
                                       todo.begin() + static_cast<std::ptrdiff_t>(end));
        torch::Tensor emb;
        {
            torch::NoGradGuard no_grad;
            emb = encoders.encode_text(batch).detach().to(torch::kCPU, torch::kFloat);
        }
        ++stats_.text_calls;
        fs::create_directories(folder);
        for (size_t k = 0; k < batch.size(); ++k) {
            auto e = emb[static_cast<int64_t>(k)].clone();
            const fs::path file =
                folder / (sha256_hex(encoders.text_identity + "\n" + batch[k]) + ".safetensors");
            write_safetensors(file.string(), {{"embedding", e}}, {{"text_encoder", encoders.text_identity}});
            by_caption[batch[k]] = e;
            ++stats_.text_misses;
        }
    }
    std::vector<torch::Tensor> out;
    out.reserve(captions.size());
    for (const auto& c : captions) out.push_back(by_caption.at(c));
    return out;
}

std::string component_identity(const std::string& component_dir) {
    const fs::path dir(component_dir);
    if (!fs::is_directory(dir)) throw Error(component_dir + ": model component folder not found");
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir)) {
        const auto name = e.path().filename().string();
        if (!e.is_regular_file()) continue;
        if (name == "config.json" || (name.size() > 12 && name.substr(name.size() - 12) == ".safetensors"))
            files.push_back(e.path());
    }
    if (files.empty()) throw Error(component_dir + ": no config.json or .safetensors weights to identify");
    std::sort(files.begin(), files.end());
    Sha256 h;
    for (const auto& f : files) {
        h.update(f.filename().string() + "\n" + sha256_file_hex(f.string()) + "\n");
    }
    return h.hex_digest();
}

}  // namespace kto
