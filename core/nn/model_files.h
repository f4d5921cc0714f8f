#pragma once
// Small file helpers for core/nn (component loading itself uses core/io/model_folder.h and
// core/io/state_dict.h).
#include <nlohmann/json.hpp>

#include <string>

namespace kto::nn_files {

// Writes `json` to `path` atomically (temporary file + rename).
void write_json_atomic(const std::string& path, const nlohmann::json& json);

}  // namespace kto::nn_files
