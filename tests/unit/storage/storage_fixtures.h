#pragma once
// Shared helpers for the storage tests: temporary workspaces, small image files, file I/O.
#include <QTemporaryDir>
#include <QtTest>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "core/common/error.h"
#include "storage/store/store.h"

namespace kto::test {

namespace fs = std::filesystem;

// A valid 1x1 RGBA PNG; `variant` changes one pixel byte so each variant has its own SHA-256.
inline std::string tiny_png(unsigned char variant = 0) {
    static const unsigned char png[] = {
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44,
        0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f,
        0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8,
        0xcf, 0xc0, 0xf0, 0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00,
        0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};
    std::string bytes(reinterpret_cast<const char*>(png), sizeof png);
    bytes.push_back(static_cast<char>(variant));  // trailing bytes after IEND are ignored by readers
    return bytes;
}

inline void write_file(const fs::path& path, const std::string& bytes) {
    fs::create_directories(path.parent_path());
    std::ofstream out(path, std::ios::binary);
    out << bytes;
    QVERIFY2(out.good(), path.c_str());
}

inline std::string read_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

inline fs::path temp_path(const QTemporaryDir& dir, const std::string& name = "") {
    return name.empty() ? fs::path(dir.path().toStdString())
                        : fs::path(dir.path().toStdString()) / name;
}

// A clock that advances one second per call from a fixed start, so times are predictable.
inline std::function<std::string()> stepping_clock(int day = 1) {
    auto counter = std::make_shared<int>(0);
    return [counter, day] {
        const int t = (*counter)++;
        char buf[40];
        std::snprintf(buf, sizeof buf, "2026-11-%02dT%02d:%02d:%02d.000Z", day, (t / 3600) % 24,
                      (t / 60) % 60, t % 60);
        return std::string(buf);
    };
}

// A model plus one generation with `n` images; returns the image ids.
inline std::vector<std::int64_t> add_images(storage::Store& store, const std::string& prompt, int n,
                                            unsigned char first_variant = 0,
                                            const std::string& model = "demo") {
    storage::GenerationInput g;
    g.prompt = prompt;
    g.seed = 42;
    g.steps = 20;
    g.cfg = 7.5;
    g.sampler = "euler";
    g.width = 64;
    g.height = 64;
    g.model_id = store.ensure_model(model, "/models/" + model);
    std::vector<storage::ImageInput> images(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) images[static_cast<std::size_t>(i)].encoded =
        tiny_png(static_cast<unsigned char>(first_variant + i));
    return store.add_generation(g, images).image_ids;
}

}  // namespace kto::test
