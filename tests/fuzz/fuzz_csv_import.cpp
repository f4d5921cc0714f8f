// The dataset CSV importer: the streaming RFC 4180 reader (CsvReader) on arbitrary bytes, then the
// whole import (import_dataset) of a folder holding that CSV and two small images, into a scratch
// workspace. A malformed file must end in kto::Error (nothing imported); anything else is a finding.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/common/error.h"
#include "storage/dataset/csv.h"
#include "storage/dataset/dataset_import.h"
#include "storage/store/store.h"
#include "tests/fuzz/fuzz_support.h"

namespace fs = std::filesystem;

namespace {

struct Scratch {
    fs::path root;
    fs::path dataset;
    std::unique_ptr<kto::storage::Store> store;
    Scratch() {
        const fs::path base = fs::exists("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
        root = base / ("kto-fuzz-csv-" + std::to_string(::getpid()));
        fs::remove_all(root);
        dataset = root / "dataset";
        fs::create_directories(dataset / "train");
        for (const char* f : {"a.png", "train/b.png"}) std::ofstream(dataset / f) << "not really a png";
        store = std::make_unique<kto::storage::Store>(kto::storage::Workspace(root / "workspace"));
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static kto::fuzz::MemoryFile file;
    static Scratch scratch;
    const std::string& path = file.write(data, size);
    try {
        kto::storage::CsvReader reader(path);
        std::vector<std::string> fields;
        int64_t last_line = 0;
        while (reader.next(fields)) {
            KTO_FUZZ_CHECK(reader.record_line() > last_line);
            last_line = reader.record_line();
            for (const auto& f : fields) KTO_FUZZ_CHECK(f.size() <= kto::storage::CsvReader::kMaxFieldBytes);
        }
        KTO_FUZZ_CHECK(reader.bytes_read() <= size);
    } catch (const kto::Error&) {
    }

    {
        std::ofstream out(scratch.dataset / "train_processed_v3.csv", std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    }
    try {
        const auto report = kto::storage::import_dataset(*scratch.store, scratch.dataset);
        KTO_FUZZ_CHECK(report.imported + report.skipped == report.rows);
        KTO_FUZZ_CHECK(report.liked + report.disliked <= report.imported);
    } catch (const kto::Error&) {
    }
    return 0;
}
