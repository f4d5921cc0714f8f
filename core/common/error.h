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

}  // namespace kto
