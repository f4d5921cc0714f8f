#include "storage/store/workspace.h"

#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "core/common/error.h"
#include "storage/store/sha256.h"

namespace fs = std::filesystem;

namespace kto::storage {
namespace {

std::string errno_text() { return std::strerror(errno); }

void make_dir(const fs::path& dir) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec || !fs::is_directory(dir)) {
        throw Error(dir.string() + ": cannot create workspace folder" +
                    (ec ? ": " + ec.message() : std::string(" (a file is in the way)")));
    }
}

std::string checked_extension(std::string ext) {
    if (ext.empty()) return ext;
    if (ext.front() != '.') ext.insert(ext.begin(), '.');
    if (ext.size() > 11) throw Error("image file extension '" + ext + "' is too long");
    for (std::size_t i = 1; i < ext.size(); ++i) {
        const unsigned char c = static_cast<unsigned char>(ext[i]);
        if (!std::isalnum(c)) throw Error("image file extension '" + ext + "' is not alphanumeric");
        ext[i] = static_cast<char>(std::tolower(c));
    }
    return ext;
}

std::string random_suffix() {
    static thread_local std::mt19937_64 rng{std::random_device{}()};
    std::ostringstream s;
    s << std::hex << rng();
    return s.str();
}

}  // namespace

void write_file_atomically(const fs::path& target, std::string_view bytes) {
    const fs::path tmp = target.parent_path() /
                         ("." + target.filename().string() + ".tmp-" + std::to_string(::getpid()) +
                          "-" + random_suffix());
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) throw Error(tmp.string() + ": cannot create: " + errno_text());
    std::size_t written = 0;
    while (written < bytes.size()) {
        const ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
        if (n < 0) {
            if (errno == EINTR) continue;
            const std::string why = errno_text();
            ::close(fd);
            ::unlink(tmp.c_str());
            throw Error(target.string() + ": write failed: " + why);
        }
        written += static_cast<std::size_t>(n);
    }
    // Flushed before the rename, so after a power loss the name never points at missing bytes.
    if (::fsync(fd) != 0 || ::close(fd) != 0) {
        const std::string why = errno_text();
        ::unlink(tmp.c_str());
        throw Error(target.string() + ": flush failed: " + why);
    }
    if (::rename(tmp.c_str(), target.c_str()) != 0) {
        const std::string why = errno_text();
        ::unlink(tmp.c_str());
        throw Error(target.string() + ": rename failed: " + why);
    }
}

Workspace::Workspace(fs::path dir) {
    if (dir.empty()) throw Error("workspace folder: empty path");
    make_dir(dir);
    dir_ = fs::absolute(dir).lexically_normal();
    if (!dir_.has_filename()) dir_ = dir_.parent_path();  // drop a trailing slash
    make_dir(images_dir());
    make_dir(runs_dir());
}

fs::path Workspace::default_location() {
    const char* xdg = std::getenv("XDG_DATA_HOME");
    fs::path base;
    if (xdg && *xdg && fs::path(xdg).is_absolute()) {
        base = xdg;
    } else {
        const char* home = std::getenv("HOME");
        if (!home || !*home) {
            throw Error("no workspace given and neither XDG_DATA_HOME nor HOME is set; "
                        "pass --workspace DIR");
        }
        base = fs::path(home) / ".local" / "share";
    }
    return base / "kto-studio" / "workspace";
}

StoredFile Workspace::store_image_bytes(std::string_view bytes, const std::string& extension) const {
    StoredFile stored;
    stored.sha256 = sha256_hex(bytes);
    stored.byte_size = static_cast<std::int64_t>(bytes.size());
    const std::string shard = stored.sha256.substr(0, 2);
    const fs::path rel = fs::path("images") / shard / (stored.sha256 + checked_extension(extension));
    stored.file = rel.generic_string();
    const fs::path target = dir_ / rel;
    std::error_code ec;
    // Content-addressed: a file of the right size under this name already holds these bytes.
    if (fs::is_regular_file(target, ec) &&
        fs::file_size(target, ec) == bytes.size() && !ec) {
        return stored;
    }
    make_dir(target.parent_path());
    write_file_atomically(target, bytes);
    return stored;
}

StoredFile Workspace::store_image_file(const fs::path& source) const {
    std::ifstream in(source, std::ios::binary);
    if (!in) throw Error(source.string() + ": cannot open image file: " + errno_text());
    std::ostringstream buf;
    buf << in.rdbuf();
    if (in.bad()) throw Error(source.string() + ": read error");
    return store_image_bytes(buf.str(), source.extension().string());
}

fs::path Workspace::resolve(const std::string& file) const {
    const fs::path p(file);
    return p.is_absolute() ? p : dir_ / p;
}

bool Workspace::owns(const std::string& file) const {
    const fs::path p(file);
    if (p.is_absolute()) return false;
    auto it = p.begin();
    return it != p.end() && *it == "images";
}

}  // namespace kto::storage
