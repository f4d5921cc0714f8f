#pragma once
// Where tests find their inputs. Environment variables (set by CTest) win over the build-time paths.
#include <cstdlib>
#include <string>

namespace kto::test {

inline std::string env_or(const char* name, const char* fallback) {
    const char* v = std::getenv(name);
    return (v && *v) ? std::string(v) : std::string(fallback);
}

// ../shared/reference: golden tensors from the upstream Python implementation.
inline std::string reference_dir() { return env_or("KTO_REFERENCE_DIR", KTO_REFERENCE_DIR); }
// tests/data: fixtures, including deliberately broken ones.
inline std::string test_data_dir() { return env_or("KTO_TEST_DATA_DIR", KTO_TEST_DATA_DIR); }
// resources/models/kto-demo: the built-in demo model.
inline std::string demo_model_dir() { return env_or("KTO_DEMO_MODEL_DIR", KTO_DEMO_MODEL_DIR); }
// The built kto-studio-cli executable.
inline std::string cli_path() { return env_or("KTO_CLI", KTO_CLI_PATH); }

}  // namespace kto::test
