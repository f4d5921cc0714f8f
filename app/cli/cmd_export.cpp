// `kto-studio-cli export --to DIR`: writes the labelled images as a Diffusion-KTO training set
// (train_processed_v3.csv + train/), atomically.
#include <iostream>

#include "app/cli/command.h"
#include "app/cli/workspace_options.h"
#include "storage/dataset/dataset_export.h"
#include "storage/store/store.h"

namespace {

struct ExportArgs {
    std::string workspace;
    std::string to;
    bool overwrite = false;
    kto::cli::ImageFilterArgs filters;
};

int run_export(const ExportArgs& a) {
    kto::storage::Store store(kto::cli::open_workspace(a.workspace));
    kto::storage::ExportOptions opts;
    opts.query = kto::cli::to_query(a.filters);
    opts.overwrite = a.overwrite;
    const auto r = kto::storage::export_dataset(store, a.to, opts);
    std::cout << "exported " << r.images << " images (" << r.liked << " liked, " << r.disliked
              << " disliked, " << r.files << " files) to " << r.csv.parent_path().string() << "\n";
    return 0;
}

kto::cli::CommandRegistrar reg{
    {"export", "Export labelled images as train_processed_v3.csv + train/ for KTO fine-tuning",
     [](CLI::App& sub) -> std::function<int()> {
         auto args = std::make_shared<ExportArgs>();
         kto::cli::add_workspace_option(sub, args->workspace);
         sub.add_option("--to", args->to, "Target folder (new or empty unless --overwrite)")->required();
         sub.add_flag("--overwrite", args->overwrite, "Replace an existing dataset in the target folder");
         kto::cli::add_image_filters(sub, args->filters);
         return [args] { return run_export(*args); };
     }}};

}  // namespace
