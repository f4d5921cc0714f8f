#pragma once
// SHA-256 of bytes and files, as lowercase hex: keys of the latent cache (image content, model
// identities). Pure functions, thread-safe.
#include <cstddef>
#include <cstdint>
#include <string>

namespace kto {

class Sha256 {
public:
    Sha256();
    void update(const void* data, size_t size);
    void update(const std::string& text) { update(text.data(), text.size()); }
    std::string hex_digest();  // finishes the hash; the object is spent afterwards

private:
    void block(const uint8_t* p);
    uint32_t h_[8];
    uint8_t buf_[64];
    size_t buf_len_ = 0;
    uint64_t total_ = 0;
};

std::string sha256_hex(const std::string& bytes);
// Hash of a file's content; throws kto::Error naming the file when it cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace kto
