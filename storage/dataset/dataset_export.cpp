#include "storage/dataset/dataset_export.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "core/common/error.h"
#include "storage/dataset/csv.h"
#include "storage/store/sha256.h"
#include "storage/store/store.h"

namespace fs = std::filesystem;

namespace kto::storage {

const std::vector<std::string>& dataset_csv_columns() {
    static const std::vector<std::string> columns = {"file_path", "caption", "label", "file_name",
                                                     "split",     "seed",    "model", "sampler",
                                                     "steps",     "cfg"};
    return columns;
}

namespace {

const char* kStagingMarker = ".kto-export-";
// Hashes learned while exporting that are written back (the rest are hashed again when needed).
constexpr std::size_t kMaxLearnedHashes = 200000;

std::string errno_text() { return std::strerror(errno); }

std::string format_double(double v) {
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, r.ptr);
}

// Hidden sibling folders left by exports that were killed: removed once their process is gone.
void remove_stale_staging(const fs::path& parent, const std::string& name) {
    const std::string prefix = "." + name + kStagingMarker;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(parent, ec)) {
        const std::string n = entry.path().filename().string();
        if (n.compare(0, prefix.size(), prefix) != 0) continue;
        const long pid = std::strtol(n.c_str() + prefix.size(), nullptr, 10);
        if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
            std::error_code ignored;
            fs::remove_all(entry.path(), ignored);
        }
    }
}

class FileDescriptor {
public:
    explicit FileDescriptor(int fd) : fd_(fd) {}
    ~FileDescriptor() {
        if (fd_ >= 0) ::close(fd_);
    }
    int get() const { return fd_; }
    int release() {
        const int fd = fd_;
        fd_ = -1;
        return fd;
    }

private:
    int fd_;
};

void write_all(int fd, const char* data, std::size_t size, const fs::path& file) {
    while (size > 0) {
        const ssize_t n = ::write(fd, data, size);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw Error(file.string() + ": write failed: " + errno_text());
        }
        data += n;
        size -= static_cast<std::size_t>(n);
    }
}

// Copies `from` to `to`, hashing the bytes when `hash` is given.
void copy_file(const fs::path& from, const fs::path& to, Sha256* hash) {
    FileDescriptor in(::open(from.c_str(), O_RDONLY | O_CLOEXEC));
    if (in.get() < 0) throw Error(from.string() + ": cannot read image: " + errno_text());
    FileDescriptor out(::open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (out.get() < 0) throw Error(to.string() + ": cannot create: " + errno_text());
    std::vector<char> buf(1 << 16);
    for (;;) {
        const ssize_t n = ::read(in.get(), buf.data(), buf.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            throw Error(from.string() + ": read error: " + errno_text());
        }
        if (n == 0) break;
        if (hash) hash->update(buf.data(), static_cast<std::size_t>(n));
        write_all(out.get(), buf.data(), static_cast<std::size_t>(n), to);
    }
    if (::close(out.release()) != 0) throw Error(to.string() + ": write failed: " + errno_text());
}

std::string image_extension(const fs::path& path) {
    std::string ext = path.extension().string();
    for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return ext.empty() ? ".png" : ext;
}

// Removes the staging folder unless the export completed.
struct StagingGuard {
    fs::path dir;
    bool keep = false;
    ~StagingGuard() {
        if (!keep && !dir.empty()) {
            std::error_code ec;
            fs::remove_all(dir, ec);
        }
    }
};

}  // namespace

ExportResult export_dataset(Store& store, const fs::path& target_in, const ExportOptions& options) {
    ImageQuery query = options.query;
    if (query.label == LabelFilter::Unlabeled) {
        throw Error("export: unlabeled images carry no like/dislike; choose liked, disliked or any");
    }
    if (query.label == LabelFilter::Any) query.label = LabelFilter::Labeled;

    if (target_in.empty()) throw Error("export: no target folder given");
    fs::path target = fs::absolute(target_in).lexically_normal();
    if (!target.has_filename()) target = target.parent_path();
    const fs::path parent = target.parent_path();
    const std::string name = target.filename().string();
    std::error_code ec;
    fs::create_directories(parent, ec);
    if (!fs::is_directory(parent)) throw Error(parent.string() + ": cannot create folder");

    bool target_exists = false;
    if (fs::exists(fs::symlink_status(target))) {
        if (!fs::is_directory(fs::symlink_status(target))) {
            throw Error(target.string() + ": exists and is not a folder");
        }
        target_exists = true;
        if (!fs::is_empty(target) && !options.overwrite) {
            throw Error(target.string() + ": folder is not empty; choose an empty or new folder, "
                                          "or allow overwriting (--overwrite)");
        }
    }
    remove_stale_staging(parent, name);

    // Build everything in a hidden sibling on the same file system, so the final rename is atomic.
    StagingGuard staging;
    {
        std::mt19937_64 rng{std::random_device{}()};
        char suffix[32];
        std::snprintf(suffix, sizeof suffix, "%d-%08llx", static_cast<int>(::getpid()),
                      static_cast<unsigned long long>(rng() & 0xffffffffULL));
        staging.dir = parent / ("." + name + kStagingMarker + suffix);
    }
    if (!fs::create_directory(staging.dir, ec) || !fs::create_directory(staging.dir / kDatasetImageDir, ec)) {
        throw Error(staging.dir.string() + ": cannot create staging folder: " + ec.message());
    }

    const LabelCounts counts = store.counts(query);
    std::int64_t total = query.label == LabelFilter::Liked      ? counts.liked
                         : query.label == LabelFilter::Disliked ? counts.disliked
                                                                : counts.liked + counts.disliked;
    total = std::max<std::int64_t>(0, total - std::max<std::int64_t>(0, query.offset));
    if (query.limit >= 0) total = std::min(total, query.limit);

    ExportResult result;
    result.csv = target / kDatasetCsvName;
    const fs::path csv_path = staging.dir / kDatasetCsvName;
    FileDescriptor csv(::open(csv_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (csv.get() < 0) throw Error(csv_path.string() + ": cannot create: " + errno_text());

    std::string out;
    append_csv_record(out, dataset_csv_columns());
    std::unordered_set<std::string> written;
    std::vector<std::pair<std::int64_t, std::string>> learned_hashes;
    std::unordered_map<std::string, std::string> hashed_paths;  // source path -> sha256
    std::vector<std::string> row(dataset_csv_columns().size());
    bool cancelled = false;
    const fs::path image_dir = staging.dir / kDatasetImageDir;

    store.for_each_image(query, [&](const ImageRecord& img) {
        const std::string ext = image_extension(img.path);
        std::string file_name;
        if (img.sha256) {
            file_name = *img.sha256 + ext;
            if (written.insert(file_name).second) {
                copy_file(img.path, image_dir / file_name, nullptr);
                ++result.files;
            }
        } else if (auto known = hashed_paths.find(img.path.string()); known != hashed_paths.end()) {
            // The same imported file in another row (Pick-a-Pic style sets repeat images).
            file_name = known->second + ext;
            if (learned_hashes.size() < kMaxLearnedHashes) learned_hashes.emplace_back(img.id, known->second);
        } else {
            // Imported lazily: hash while copying, then name the file by its hash.
            Sha256 hash;
            const fs::path tmp = image_dir / (".partial" + ext);
            copy_file(img.path, tmp, &hash);
            const std::string sha = hash.hex_digest();
            if (learned_hashes.size() < kMaxLearnedHashes) learned_hashes.emplace_back(img.id, sha);
            if (hashed_paths.size() >= 65536) hashed_paths.clear();  // bounded memory
            hashed_paths.emplace(img.path.string(), sha);
            file_name = sha + ext;
            if (written.insert(file_name).second) {
                fs::rename(tmp, image_dir / file_name);
                ++result.files;
            } else {
                fs::remove(tmp);
            }
        }
        const std::string rel = std::string(kDatasetImageDir) + "/" + file_name;
        const char* label = img.label == Label::Like ? "exclusive_win" : "exclusive_lose";
        row[0] = rel;
        row[1] = img.prompt;
        row[2] = label;
        row[3] = rel;
        row[4] = label;
        row[5] = std::to_string(img.seed);
        row[6] = img.model_name;
        row[7] = img.sampler;
        row[8] = std::to_string(img.steps);
        row[9] = format_double(img.cfg);
        append_csv_record(out, row);
        if (out.size() > (1 << 20)) {
            write_all(csv.get(), out.data(), out.size(), csv_path);
            out.clear();
        }
        ++result.images;
        (img.label == Label::Like ? result.liked : result.disliked)++;
        if (options.progress && !options.progress(result.images, total)) {
            cancelled = true;
            return false;
        }
        return true;
    });
    if (cancelled) throw Cancelled();
    write_all(csv.get(), out.data(), out.size(), csv_path);
    // Everything on disk before the rename makes it visible.
    if (::syncfs(csv.get()) != 0) throw Error(csv_path.string() + ": sync failed: " + errno_text());
    if (::close(csv.release()) != 0) throw Error(csv_path.string() + ": write failed: " + errno_text());

    if (!target_exists) {
        if (::rename(staging.dir.c_str(), target.c_str()) != 0) {
            throw Error(target.string() + ": cannot move the dataset into place: " + errno_text());
        }
        staging.keep = true;
    } else if (::renameat2(AT_FDCWD, staging.dir.c_str(), AT_FDCWD, target.c_str(),
                           RENAME_EXCHANGE) == 0) {
        // The old dataset is now under the staging name; the guard deletes it.
    } else if (errno == EINVAL || errno == ENOSYS) {
        // No atomic exchange on this file system: move the old one aside, then the new one in.
        const fs::path old = staging.dir.string() + "-old";
        if (::rename(target.c_str(), old.c_str()) != 0 ||
            ::rename(staging.dir.c_str(), target.c_str()) != 0) {
            throw Error(target.string() + ": cannot replace the dataset: " + errno_text());
        }
        staging.dir = old;
    } else {
        throw Error(target.string() + ": cannot replace the dataset: " + errno_text());
    }

    // Hashes learned while copying are kept, so lazily imported images are hashed at most once
    // (not in a read-only workspace: the export itself must still work there).
    if (!learned_hashes.empty() && !store.read_only()) store.record_image_hashes(learned_hashes);
    return result;
}

}  // namespace kto::storage
