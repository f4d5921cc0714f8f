#pragma once
// Copying a checkpoint's tensors into a libtorch module whose parameter and buffer names equal
// the checkpoint's keys (diffusers/transformers state-dict names), strictly: a mismatch is an
// error listing every missing, unexpected and wrong-shape tensor, never silently random weights.
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/io/safetensors.h"

namespace kto {

struct StateDictLoadOptions {
    // Checkpoint names applied before matching: checkpoint name -> module name (e.g. old VAE
    // attention names "...attentions.0.query.weight" -> "...attentions.0.to_q.weight").
    std::map<std::string, std::string> renames;
    // Names (after renaming) that are neither "unexpected" when in the checkpoint only nor
    // "missing" when in the module only (e.g. "text_model.embeddings.position_ids").
    std::set<std::string> ignore;
};

// Copies tensors name-for-name into `module`'s parameters and buffers (recursively), converting
// dtype and device to the module's. Throws kto::Error naming `source` (usually the weights file)
// and listing all missing, unexpected and wrong-shape tensors; the module is left untouched
// when it throws.
void load_state_dict_strict(torch::nn::Module& module, const TensorMap& tensors,
                            const std::string& source, const StateDictLoadOptions& options = {});

// Every parameter and buffer `module` declares, as (name, shape), sorted by name: what
// `kto-studio-cli inspect --keys` prints and what the reference key lists are compared with.
std::vector<std::pair<std::string, std::vector<int64_t>>> named_parameter_shapes(
    const torch::nn::Module& module);

// "[a,b,c]" ("[]" for a scalar).
std::string shape_string(const std::vector<int64_t>& shape);

}  // namespace kto
