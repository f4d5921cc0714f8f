#pragma once
// kto-studio-cli subcommands. Each cmd_*.cpp registers itself with a static CommandRegistrar;
// main() builds the CLI11 parser from the registry. Commands hold wiring only: the work is done by
// kto_core / kto_storage APIs.
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace kto::cli {

struct CommandSpec {
    std::string name;
    std::string summary;
    // Adds options to `sub`; returns the function to run after parsing (returns the exit status).
    std::function<std::function<int()>(CLI::App& sub)> setup;
};

std::vector<CommandSpec>& command_registry();

struct CommandRegistrar {
    explicit CommandRegistrar(CommandSpec spec) { command_registry().push_back(std::move(spec)); }
};

// Options every command shares. `--workspace DIR` is added by commands that use a workspace.
struct GlobalOptions {
    int threads = 0;
    bool verbose = false;
};
const GlobalOptions& global_options();

}  // namespace kto::cli
