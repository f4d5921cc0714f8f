#pragma once
// Errors the engine reports: exceptions whose message a user can act on
// ("vae/config.json: missing 'latent_channels'"). Caught and shown at the UI/CLI boundary.
#include <stdexcept>
#include <string>

namespace kto {

class Error : public std::runtime_error {
public:
    explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Raised when a long-running job (generation, training) is cancelled through its callback.
class Cancelled : public Error {
public:
    Cancelled() : Error("cancelled") {}
};

// An allocation failure (GPU or CPU) turned into words: what ran out and what to change
// (smaller batch, lower resolution, LoRA, ...). Cached device memory has been released, so a
// smaller job can run next in the same process.
class OutOfMemory : public Error {
public:
    explicit OutOfMemory(const std::string& message) : Error(message) {}
};

}  // namespace kto
