#pragma once
// On-disk cache of what the frozen VAE and text encoder make of the training data, so that a second
// run over the same data does no VAE or text-encoder work. Entries are safetensors files:
//   <dir>/latents/<sha256(image sha256, VAE identity, resolution)>.safetensors
//       mean, std: [2, C, h, w] - index 0 the image as cropped, index 1 its horizontal mirror. Both
//       are encoded up front (flip p=0.5 then costs nothing per step and stays exact: the VAE is not
//       mirror-symmetric, so flipping latents would not equal encoding the flipped image).
//   <dir>/text/<sha256(text-encoder identity, caption)>.safetensors
//       embedding: [77, D] last hidden state (no attention mask, as the reference trainer feeds it).
// The latent distribution is stored (not a sample), so z0 is drawn afresh each step (KTO.md: z0 =
// latent_dist.sample() * scaling_factor). One LatentCache is used from one thread at a time.
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/train/dataset.h"

namespace kto {

// What the cache calls on a miss. The identities name the exact weights (e.g. a hash of the weights
// file and config), so a different VAE or text encoder never reuses another's entries.
struct LatentEncoders {
    std::string vae_identity;
    std::string text_identity;
    // images [N,3,R,R] in [-1,1] -> latent distribution (mean, std), each [N,C,R/8,R/8], unscaled.
    std::function<std::pair<torch::Tensor, torch::Tensor>(const torch::Tensor&)> encode_images;
    // captions -> [N,77,D]
    std::function<torch::Tensor(const std::vector<std::string>&)> encode_text;
};

struct ImageLatents {
    torch::Tensor mean;  // [2,C,h,w]: unflipped, flipped
    torch::Tensor std;
};

struct LatentCacheStats {
    int64_t image_hits = 0;
    int64_t image_misses = 0;  // images encoded by the VAE
    int64_t text_hits = 0;
    int64_t text_misses = 0;   // captions encoded by the text encoder
    int64_t vae_calls = 0;     // encode_images invocations
    int64_t text_calls = 0;    // encode_text invocations
};

class LatentCache {
public:
    explicit LatentCache(std::string dir);  // created on first write

    // Latents of each record's image (decoded, cropped to `resolution`, encoded in batches of
    // `batch_size`, stored). A record whose image is missing or cannot be decoded is skipped and
    // listed in `skipped` with the reason; its result entry is left undefined. `progress(done, total)`
    // returning false cancels (throws kto::Cancelled).
    std::vector<ImageLatents> image_latents(const std::vector<TrainRecord>& records, int resolution,
                                            const LatentEncoders& encoders, std::vector<SkippedImage>& skipped,
                                            int batch_size = 8,
                                            const std::function<bool(size_t, size_t)>& progress = {});

    // Text embeddings [77, D] of `captions` (duplicates encoded once).
    std::vector<torch::Tensor> text_embeddings(const std::vector<std::string>& captions,
                                               const LatentEncoders& encoders, int batch_size = 16);

    const LatentCacheStats& stats() const { return stats_; }
    const std::string& dir() const { return dir_; }

private:
    std::string dir_;
    LatentCacheStats stats_;
};

// Identity of a model component folder: sha256 over its config.json and weight files' content.
std::string component_identity(const std::string& component_dir);

}  // namespace kto
