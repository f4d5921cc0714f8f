// `kto-studio-cli stats [--json]`: image and label counts of the workspace, and the like/dislike
// balance of the most frequent prompts.
#include <iostream>
#include <nlohmann/json.hpp>

#include "app/cli/command.h"
#include "app/cli/workspace_options.h"
#include "storage/store/store.h"

namespace {

struct StatsArgs {
    std::string workspace;
    bool json = false;
    std::int64_t prompts = 10;
};

int run_stats(const StatsArgs& a) {
    kto::storage::Store store(kto::cli::open_workspace(a.workspace));
    const auto c = store.counts();
    const auto balance = store.prompt_balance(a.prompts);
    if (a.json) {
        nlohmann::json j = {{"workspace", store.workspace().dir().string()},
                            {"images", c.images},
                            {"liked", c.liked},
                            {"disliked", c.disliked},
                            {"unlabeled", c.unlabeled}};
        j["prompts"] = nlohmann::json::array();
        for (const auto& b : balance) {
            j["prompts"].push_back({{"prompt", b.prompt},
                                    {"images", b.counts.images},
                                    {"liked", b.counts.liked},
                                    {"disliked", b.counts.disliked},
                                    {"unlabeled", b.counts.unlabeled}});
        }
        std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
        return 0;
    }
    std::cout << "workspace  " << store.workspace().dir().string() << "\n"
              << "images     " << c.images << "\n"
              << "liked      " << c.liked << "\n"
              << "disliked   " << c.disliked << "\n"
              << "unlabeled  " << c.unlabeled << "\n";
    if (!balance.empty()) std::cout << "\nliked\tdisliked\tunlabeled\tprompt\n";
    for (const auto& b : balance) {
        std::cout << b.counts.liked << "\t" << b.counts.disliked << "\t" << b.counts.unlabeled
                  << "\t" << b.prompt << "\n";
    }
    return 0;
}

kto::cli::CommandRegistrar reg{
    {"stats", "Image and label counts, and the like/dislike balance per prompt",
     [](CLI::App& sub) -> std::function<int()> {
         auto args = std::make_shared<StatsArgs>();
         kto::cli::add_workspace_option(sub, args->workspace);
         sub.add_flag("--json", args->json, "One JSON object (images, liked, disliked, unlabeled, prompts)");
         sub.add_option("--prompts", args->prompts, "How many prompts to list (default 10)")
             ->check(CLI::NonNegativeNumber);
         return [args] { return run_stats(*args); };
     }}};

}  // namespace
