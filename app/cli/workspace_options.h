#pragma once
// Options shared by the label-store commands: `--workspace DIR` and the image filters
// (--label, --prompt, --model, --since, --until, --limit).
#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>

#include "storage/store/records.h"
#include "storage/store/workspace.h"

namespace kto::cli {

// Adds `--workspace DIR` (default: storage::Workspace::default_location()).
void add_workspace_option(CLI::App& sub, std::string& dir);
// Opens the workspace named by the option (or the default one).
storage::Workspace open_workspace(const std::string& dir);

struct ImageFilterArgs {
    std::string label;  // liked | disliked | unlabeled | labeled | any
    std::string prompt;
    std::string model;
    std::string since;
    std::string until;
    std::int64_t limit = -1;
};

void add_image_filters(CLI::App& sub, ImageFilterArgs& args);
// Throws kto::Error for a malformed date.
storage::ImageQuery to_query(const ImageFilterArgs& args);

}  // namespace kto::cli
