#pragma once
// Activation checkpointing for training: run a block without keeping its activations and
// recompute it during backward (libtorch 1.13 has no torch::utils::checkpoint in C++).
#include <torch/torch.h>

#include <functional>
#include <vector>

namespace kto {

using BlockFunction = std::function<torch::Tensor(const std::vector<torch::Tensor>&)>;

// Returns fn(inputs). When grad mode is on and `module` has trainable parameters or an input
// requires grad, the forward keeps only the inputs and backward recomputes fn to get gradients for
// the inputs and for `module`'s trainable parameters (and LoRA adapters reached through it, when
// `extra_params` lists them). fn must be deterministic (no dropout).
torch::Tensor checkpoint_call(torch::nn::Module& module, BlockFunction fn, const std::vector<torch::Tensor>& inputs,
                              const std::vector<torch::Tensor>& extra_params = {});

}  // namespace kto
