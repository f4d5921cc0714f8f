#pragma once
// The safetensors format (https://github.com/huggingface/safetensors): u64 little-endian header
// length N, N bytes of JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {..}},
// then the raw little-endian tensor data (offsets relative to the end of the header).
//
// Reading validates as the reference Rust implementation does and throws kto::Error naming the
// file and the tensor for every violation; a hostile file never crashes the process.
// All functions are thread-safe (no shared state).
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace kto {

using TensorMap = std::map<std::string, torch::Tensor>;

struct SafetensorsFile {
    TensorMap tensors;
    std::map<std::string, std::string> metadata;  // the optional "__metadata__" string map
};

// One header entry, as declared in the file (validated).
struct SafetensorsEntry {
    std::string name;
    std::string dtype;  // "F32", "F16", "BF16", "I64", ...
    std::vector<int64_t> shape;
    uint64_t begin = 0;  // byte offsets relative to the start of the data section
    uint64_t end = 0;
};

struct SafetensorsHeader {
    std::vector<SafetensorsEntry> entries;  // sorted by name
    std::map<std::string, std::string> metadata;
    uint64_t header_length = 0;  // N, the JSON byte count
    uint64_t file_size = 0;
};

// Largest header accepted (as in the reference implementation).
constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;

// Reads and validates the header only (cheap: no tensor data is touched).
SafetensorsHeader read_safetensors_header(const std::string& path);

// Memory-maps the file and validates it. Tensors are CPU tensors viewing the (copy-on-write)
// mapping without a copy when their data is aligned for their dtype, copies otherwise; the
// mapping stays alive as long as any tensor does. Writing into a returned tensor is safe and
// never changes the file.
SafetensorsFile read_safetensors(const std::string& path);

// read_safetensors(path).tensors
TensorMap load_safetensors(const std::string& path);

// Writes tensors (any device; F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL) densely,
// names sorted, header space-padded to a multiple of 8, metadata as "__metadata__" when not
// empty. Atomic: writes a temporary file in the same folder, fsyncs, then renames over `path`.
void write_safetensors(const std::string& path, const TensorMap& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// "F32" for torch::kFloat32, ...; throws kto::Error for a dtype the format cannot hold.
std::string safetensors_dtype_name(torch::ScalarType dtype);
// torch::kFloat32 for "F32", ...; throws kto::Error for an unknown name.
torch::ScalarType safetensors_dtype_from_name(const std::string& name);

}  // namespace kto
