// `kto-studio-cli taste-label --taste NAME`: labels a workspace's images with a scripted taste
// (core/shapes/taste.h: a synthetic rater that likes or dislikes from the pixels), so a whole
// generate -> label -> export -> train -> compare loop runs without a person (tests, demos,
// benchmarks). Only unlabelled images are touched unless --relabel is given; every change goes
// through the store like a click in the app (history, undo).
#include <iostream>

#include "app/cli/command.h"
#include "app/cli/workspace_options.h"
#include "core/common/error.h"
#include "core/common/image_decode.h"
#include "core/shapes/taste.h"
#include "storage/store/store.h"

namespace {

struct TasteLabelArgs {
    std::string workspace;
    std::string taste;
    kto::cli::ImageFilterArgs filters;
    bool relabel = false;
    bool dry_run = false;
};

int run_taste_label(TasteLabelArgs a) {
    namespace st = kto::storage;
    const auto taste = kto::shapes::make_taste(a.taste);
    st::Store store(kto::cli::open_workspace(a.workspace));
    if (a.filters.label.empty()) a.filters.label = a.relabel ? "any" : "unlabeled";
    const auto images = store.query_images(kto::cli::to_query(a.filters));
    int liked = 0, disliked = 0, unreadable = 0;
    for (const auto& img : images) {
        kto::shapes::Image pixels;
        try {
            const kto::RgbImage rgb = kto::read_image_rgb8(img.path.string());
            pixels.width = rgb.width;
            pixels.height = rgb.height;
            pixels.rgb = rgb.pixels;
        } catch (const kto::Error& e) {
            std::cerr << "skipped image " << img.id << ": " << e.what() << "\n";
            ++unreadable;
            continue;
        }
        bool like = false;
        try {
            like = taste->likes(pixels, img.prompt);
        } catch (const kto::Error& e) {  // e.g. a prompt outside the shapes grammar
            std::cerr << "skipped image " << img.id << ": " << e.what() << "\n";
            ++unreadable;
            continue;
        }
        (like ? liked : disliked)++;
        if (!a.dry_run) store.set_label(img.id, like ? st::Label::Like : st::Label::Dislike);
    }
    std::cout << taste->name() << ": " << liked << " liked, " << disliked << " disliked"
              << (unreadable ? ", " + std::to_string(unreadable) + " skipped" : std::string())
              << (a.dry_run ? " (dry run, nothing written)" : "") << "\n";
    if (liked + disliked > 0)
        std::cout << "like-rate " << double(liked) / double(liked + disliked) << "\n";
    return images.empty() || liked + disliked > 0 ? 0 : 1;
}

kto::cli::CommandRegistrar reg{
    {"taste-label", "Label images with a scripted taste (synthetic rater: tests, demos, benchmarks)",
     [](CLI::App& sub) -> std::function<int()> {
         auto a = std::make_shared<TasteLabelArgs>();
         kto::cli::add_workspace_option(sub, a->workspace);
         std::string names;
         for (const auto& n : kto::shapes::taste_names()) names += (names.empty() ? "" : ", ") + n;
         sub.add_option("--taste", a->taste, "Rater: " + names)->required();
         kto::cli::add_image_filters(sub, a->filters);
         sub.add_flag("--relabel", a->relabel, "Also relabel images that already have a label");
         sub.add_flag("--dry-run", a->dry_run, "Print the like-rate only; change nothing");
         return [a] { return run_taste_label(*a); };
     }}};

}  // namespace
