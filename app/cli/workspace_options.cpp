#include "app/cli/workspace_options.h"

#include "storage/store/timestamps.h"

namespace kto::cli {

void add_workspace_option(CLI::App& sub, std::string& dir) {
    sub.add_option("--workspace", dir,
                   "Workspace folder (default: $XDG_DATA_HOME/kto-studio/workspace, else "
                   "~/.local/share/kto-studio/workspace)");
}

storage::Workspace open_workspace(const std::string& dir) {
    return storage::Workspace(dir.empty() ? storage::Workspace::default_location()
                                          : std::filesystem::path(dir));
}

void add_image_filters(CLI::App& sub, ImageFilterArgs& args) {
    sub.add_option("--label", args.label, "Only images with this label")
        ->check(CLI::IsMember({"liked", "disliked", "unlabeled", "labeled", "any"}));
    sub.add_option("--prompt", args.prompt, "Only prompts containing TEXT (case-insensitive)");
    sub.add_option("--model", args.model, "Only images from the model with this name");
    sub.add_option("--since", args.since, "Only images created on or after this UTC date/time (ISO-8601)");
    sub.add_option("--until", args.until, "Only images created on or before this UTC date/time (ISO-8601)");
    sub.add_option("--limit", args.limit, "At most N images")->check(CLI::NonNegativeNumber);
}

storage::ImageQuery to_query(const ImageFilterArgs& args) {
    storage::ImageQuery q;
    if (args.label == "liked") q.label = storage::LabelFilter::Liked;
    else if (args.label == "disliked") q.label = storage::LabelFilter::Disliked;
    else if (args.label == "unlabeled") q.label = storage::LabelFilter::Unlabeled;
    else if (args.label == "labeled") q.label = storage::LabelFilter::Labeled;
    q.prompt_contains = args.prompt;
    q.model_name = args.model;
    if (!args.since.empty()) q.since = storage::iso_bound(args.since, false, "--since");
    if (!args.until.empty()) q.until = storage::iso_bound(args.until, true, "--until");
    q.limit = args.limit;
    return q;
}

}  // namespace kto::cli
