#pragma once
// Live previews of a training run: the probe prompts x seeds rendered with the UNet's current
// weights (classifier-free guidance, the chosen sampler), written as PNGs and returned. Each image
// draws its noise from its own CPU generator seeded with the probe seed, so previews never touch
// the training random streams and the same probe at different steps starts from the same noise.
// Used from the training thread only.
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/nn/vae.h"
#include "core/train/trainer.h"

namespace kto {

class PreviewRenderer {
public:
    // Loads the VAE and encodes the probe prompts (and "") once.
    PreviewRenderer(const std::string& model_dir, torch::Device device, const TrainOptions& options);
    ~PreviewRenderer();
    // Renders every probe into `dir` (created) as p<prompt index>-s<seed>.png. `keep_going`
    // returning false between images stops early (throws kto::Cancelled).
    std::vector<PreviewImage> render(UNet2DConditionModelImpl& unet, const std::string& dir,
                                     const std::function<bool()>& keep_going = {});

private:
    std::string model_dir_;
    torch::Device device_;
    TrainOptions options_;
    AutoencoderKL vae_{nullptr};
    torch::Tensor cond_;    // [P,77,D]
    torch::Tensor uncond_;  // [1,77,D]
    std::shared_ptr<Scheduler> scheduler_;
};

}  // namespace kto
