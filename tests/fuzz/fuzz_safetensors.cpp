// The safetensors reader: header validation (read_safetensors_header) and the full memory-mapped
// load (read_safetensors). Every tensor returned must lie inside the file: its bytes are read here
// so ASan sees any span outside the mapping. Anything but kto::Error is a finding.
#include <cstdint>

#include "core/common/error.h"
#include "core/io/safetensors.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static kto::fuzz::MemoryFile file;
    const std::string& path = file.write(data, size);
    try {
        const kto::SafetensorsHeader h = kto::read_safetensors_header(path);
        KTO_FUZZ_CHECK(h.file_size == size);
        uint64_t covered = 0;
        for (const auto& e : h.entries) {
            KTO_FUZZ_CHECK(e.begin <= e.end);
            covered += e.end - e.begin;
        }
        KTO_FUZZ_CHECK(8 + h.header_length + covered == size);  // dense, as validated
    } catch (const kto::Error&) {
    }
    try {
        const kto::SafetensorsFile f = kto::read_safetensors(path);
        for (const auto& [name, t] : f.tensors) {
            const auto bytes = static_cast<size_t>(t.numel()) * t.element_size();
            const auto* p = static_cast<const volatile uint8_t*>(t.data_ptr());
            uint8_t sum = 0;
            for (size_t i = 0; i < bytes; ++i) sum = static_cast<uint8_t>(sum + p[i]);
            (void)sum;
        }
    } catch (const kto::Error&) {
    }
    return 0;
}
