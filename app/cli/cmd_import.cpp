// `kto-studio-cli import --from DIR`: adds a Diffusion-KTO / Pick-a-Pic style dataset folder
// (train_processed_v3.csv + images) to the workspace and prints what was imported and skipped.
#include <iostream>

#include "app/cli/command.h"
#include "app/cli/workspace_options.h"
#include "storage/dataset/dataset_import.h"
#include "storage/store/store.h"

namespace {

struct ImportArgs {
    std::string workspace;
    std::string from;
    std::string intersections = "like";
};

int run_import(const ImportArgs& a) {
    kto::storage::Store store(kto::cli::open_workspace(a.workspace));
    kto::storage::ImportOptions opts;
    opts.intersections = a.intersections == "dislike" ? kto::storage::IntersectionPolicy::Dislike
                         : a.intersections == "skip"  ? kto::storage::IntersectionPolicy::Skip
                                                      : kto::storage::IntersectionPolicy::Like;
    const auto r = kto::storage::import_dataset(store, a.from, opts);
    std::cout << "imported " << r.imported << " of " << r.rows << " rows from "
              << r.dataset_dir.string() << " (" << r.liked << " liked, " << r.disliked
              << " disliked); skipped " << r.skipped << "\n";
    for (const auto& [reason, n] : r.skipped_by_reason) {
        std::cout << "  skipped " << n << ": " << reason << "\n";
    }
    for (const auto& s : r.skipped_rows) {
        std::cerr << "line " << s.line << ": skipped " << s.reason << "\n";
    }
    if (r.skipped > static_cast<std::int64_t>(r.skipped_rows.size())) {
        std::cerr << "... and " << (r.skipped - static_cast<std::int64_t>(r.skipped_rows.size()))
                  << " more skipped rows\n";
    }
    return 0;
}

kto::cli::CommandRegistrar reg{
    {"import", "Import a dataset folder (train_processed_v3.csv + images) into the workspace",
     [](CLI::App& sub) -> std::function<int()> {
         auto args = std::make_shared<ImportArgs>();
         kto::cli::add_workspace_option(sub, args->workspace);
         sub.add_option("--from", args->from, "Dataset folder holding train_processed_v3.csv")
             ->required();
         sub.add_option("--intersections", args->intersections,
                        "What rows labelled 'intersections' become (default: like)")
             ->check(CLI::IsMember({"like", "dislike", "skip"}));
         return [args] { return run_import(*args); };
     }}};

}  // namespace
