// kto-studio-cli: the headless twin of the desktop app.
#include <algorithm>
#include <iostream>

#include "app/cli/command.h"
#include "core/common/error.h"
#include "core/common/runtime.h"

namespace kto::cli {

std::vector<CommandSpec>& command_registry() {
    static std::vector<CommandSpec> registry;
    return registry;
}

static GlobalOptions g_options;
const GlobalOptions& global_options() { return g_options; }

}  // namespace kto::cli

int main(int argc, char** argv) {
    using namespace kto::cli;
    CLI::App app{"KTO Studio command line: generate, label, export/import, train and compare "
                 "text-to-image models with Diffusion-KTO."};
    app.name("kto-studio-cli");
    app.require_subcommand(0, 1);
    app.set_version_flag("--version", std::string("kto-studio-cli ") + KTO_VERSION);
    app.add_option("--threads", g_options.threads, "CPU threads for libtorch (default: all cores)");
    app.add_flag("-v,--verbose", g_options.verbose, "More output");

    auto& registry = command_registry();
    std::sort(registry.begin(), registry.end(),
              [](const CommandSpec& a, const CommandSpec& b) { return a.name < b.name; });
    std::function<int()> to_run;
    for (auto& spec : registry) {
        CLI::App* sub = app.add_subcommand(spec.name, spec.summary);
        auto runner = spec.setup(*sub);
        sub->callback([runner, &to_run] { to_run = runner; });
    }

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    if (!to_run) {
        std::cout << app.help();
        return 0;
    }
    try {
        kto::configure_torch_threads(g_options.threads);
        return to_run();
    } catch (const kto::Cancelled&) {
        std::cerr << "kto-studio-cli: cancelled\n";
        return 130;
    } catch (const std::exception& e) {
        std::cerr << "kto-studio-cli: error: " << e.what() << "\n";
        return 1;
    }
}
