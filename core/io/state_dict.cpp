#include "core/io/state_dict.h"

#include <sstream>

#include "core/common/error.h"

namespace kto {
namespace {

// Lists at most this many names per category; a full-model mismatch would otherwise print
// hundreds of lines.
constexpr size_t kMaxListed = 40;

void append_list(std::ostringstream& os, const char* what, const std::vector<std::string>& items) {
    if (items.empty()) return;
    os << "\n  " << items.size() << " " << what << ":";
    for (size_t i = 0; i < items.size() && i < kMaxListed; ++i) os << "\n    " << items[i];
    if (items.size() > kMaxListed) os << "\n    ... and " << (items.size() - kMaxListed) << " more";
}

}  // namespace

std::string shape_string(const std::vector<int64_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
    return s + "]";
}

void load_state_dict_strict(torch::nn::Module& module, const TensorMap& tensors,
                            const std::string& source, const StateDictLoadOptions& options) {
    std::map<std::string, torch::Tensor> targets;
    for (const auto& p : module.named_parameters(true)) targets.emplace(p.key(), p.value());
    for (const auto& b : module.named_buffers(true)) targets.emplace(b.key(), b.value());

    std::map<std::string, const torch::Tensor*> by_module_name;
    std::vector<std::string> unexpected, wrong_shape, missing, duplicate;
    for (const auto& [file_name, t] : tensors) {
        auto r = options.renames.find(file_name);
        const std::string name = r == options.renames.end() ? file_name : r->second;
        auto target = targets.find(name);
        if (target == targets.end()) {
            if (!options.ignore.count(name)) unexpected.push_back(file_name);
            continue;
        }
        if (!by_module_name.emplace(name, &t).second) {
            duplicate.push_back(file_name + " (also stored under another name for " + name + ")");
            continue;
        }
        if (t.sizes() != target->second.sizes())
            wrong_shape.push_back(file_name + ": checkpoint " + shape_string(t.sizes().vec()) +
                                  ", model " + shape_string(target->second.sizes().vec()));
    }
    for (const auto& [name, t] : targets)
        if (!by_module_name.count(name) && !options.ignore.count(name)) missing.push_back(name);

    if (!unexpected.empty() || !wrong_shape.empty() || !missing.empty() || !duplicate.empty()) {
        std::ostringstream os;
        os << source << ": the weights do not match the model";
        append_list(os, "missing from the checkpoint", missing);
        append_list(os, "unexpected in the checkpoint", unexpected);
        append_list(os, "with the wrong shape", wrong_shape);
        append_list(os, "stored twice", duplicate);
        throw Error(os.str());
    }

    torch::NoGradGuard no_grad;
    for (const auto& [name, t] : by_module_name) targets.at(name).copy_(*t);
}

std::vector<std::pair<std::string, std::vector<int64_t>>> named_parameter_shapes(
    const torch::nn::Module& module) {
    std::map<std::string, std::vector<int64_t>> all;
    for (const auto& p : module.named_parameters(true)) all[p.key()] = p.value().sizes().vec();
    for (const auto& b : module.named_buffers(true)) all[b.key()] = b.value().sizes().vec();
    return {all.begin(), all.end()};
}

}  // namespace kto
