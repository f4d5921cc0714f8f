#pragma once
// A workspace folder: studio.sqlite3 (the label store), images/ (content-addressed image files,
// images/<first two hex digits>/<sha256>.<ext>) and runs/<id>/ (training runs).
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace kto::storage {

// An image file stored in the workspace.
struct StoredFile {
    std::string file;    // as recorded in the database: relative to the workspace folder
    std::string sha256;  // lower-case hex of the bytes
    std::int64_t byte_size = 0;
};

class Workspace {
public:
    // Opens `dir`, creating it with images/ and runs/ if missing. Throws kto::Error if it cannot.
    explicit Workspace(std::filesystem::path dir);

    // Where the CLI keeps its workspace unless told otherwise: $XDG_DATA_HOME/kto-studio/workspace,
    // else ~/.local/share/kto-studio/workspace (the GUI passes its QStandardPaths location instead;
    // on Linux both resolve to the same folder).
    static std::filesystem::path default_location();

    const std::filesystem::path& dir() const { return dir_; }
    std::filesystem::path database_path() const { return dir_ / "studio.sqlite3"; }
    std::filesystem::path images_dir() const { return dir_ / "images"; }
    std::filesystem::path runs_dir() const { return dir_ / "runs"; }

    // Stores encoded image bytes (PNG as generated) under images/, named by their SHA-256. Written
    // to a temporary file, flushed and renamed, so a crash never leaves a partial image; storing
    // the same bytes again reuses the file. `extension` includes the dot (".png").
    StoredFile store_image_bytes(std::string_view bytes, const std::string& extension = ".png") const;
    // The same for an existing file (copied; the extension is taken from `source`).
    StoredFile store_image_file(const std::filesystem::path& source) const;

    // The absolute path of a recorded `file` (relative paths are under the workspace folder).
    std::filesystem::path resolve(const std::string& file) const;
    // True if `file` is a content-addressed file this workspace owns (deleting its last image row
    // may delete it); images referenced in place, e.g. from an imported dataset, are never owned.
    bool owns(const std::string& file) const;

private:
    std::filesystem::path dir_;
};

// Writes `bytes` to `target` atomically: a temporary file beside it, fsync, rename.
void write_file_atomically(const std::filesystem::path& target, std::string_view bytes);

}  // namespace kto::storage
