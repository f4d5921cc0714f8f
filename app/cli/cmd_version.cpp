// `kto-studio-cli info`: versions and runtime (threads, CUDA).
#include <iostream>

#include "app/cli/command.h"
#include "core/common/runtime.h"

namespace {
kto::cli::CommandRegistrar reg{{"info", "Print versions, threads and whether CUDA is available",
                                [](CLI::App&) -> std::function<int()> {
                                    return [] {
                                        std::cout << "kto-studio-cli " << KTO_VERSION << "\n"
                                                  << kto::torch_runtime_summary() << "\n";
                                        return 0;
                                    };
                                }}};
}
