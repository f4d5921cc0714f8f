// `kto-studio-cli list [--json] [filters]`: the workspace's images with label and provenance.
#include <iostream>
#include <nlohmann/json.hpp>

#include "app/cli/command.h"
#include "app/cli/workspace_options.h"
#include "storage/store/store.h"

namespace {

struct ListArgs {
    std::string workspace;
    bool json = false;
    bool unlabeled_first = false;
    kto::cli::ImageFilterArgs filters;
};

int run_list(const ListArgs& a) {
    kto::storage::Store store(kto::cli::open_workspace(a.workspace));
    auto query = kto::cli::to_query(a.filters);
    query.unlabeled_first = a.unlabeled_first;
    if (!a.json) std::cout << "id\tlabel\tfile\tprompt\n";
    store.for_each_image(query, [&](const kto::storage::ImageRecord& r) {
        if (a.json) {
            nlohmann::json j = {{"id", r.id},
                                {"prompt", r.prompt},
                                {"label", kto::storage::label_name(r.label)},
                                {"file", r.path.string()},
                                {"model", r.model_name},
                                {"seed", r.seed},
                                {"sampler", r.sampler},
                                {"steps", r.steps},
                                {"cfg", r.cfg},
                                {"width", r.width},
                                {"height", r.height},
                                {"created_at", r.created_at}};
            j["sha256"] = r.sha256 ? nlohmann::json(*r.sha256) : nlohmann::json(nullptr);
            j["checkpoint"] = r.checkpoint ? nlohmann::json(*r.checkpoint) : nlohmann::json(nullptr);
            // Invalid UTF-8 in an imported caption is replaced rather than aborting the listing.
            std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
        } else {
            std::cout << r.id << "\t" << kto::storage::label_name(r.label) << "\t"
                      << r.path.string() << "\t" << r.prompt << "\n";
        }
        return static_cast<bool>(std::cout);
    });
    return 0;
}

kto::cli::CommandRegistrar reg{
    {"list", "List images with their label, file and prompt",
     [](CLI::App& sub) -> std::function<int()> {
         auto args = std::make_shared<ListArgs>();
         kto::cli::add_workspace_option(sub, args->workspace);
         sub.add_flag("--json", args->json,
                      "One JSON object per line (id, prompt, label, file, model, seed, ...)");
         sub.add_flag("--unlabeled-first", args->unlabeled_first, "Unlabeled images first");
         kto::cli::add_image_filters(sub, args->filters);
         return [args] { return run_list(*args); };
     }}};

}  // namespace
