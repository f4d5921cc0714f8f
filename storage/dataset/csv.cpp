#include "storage/dataset/csv.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/common/error.h"

namespace kto::storage {

namespace {
constexpr int kEof = -1;
constexpr std::size_t kBufferBytes = 1 << 20;
}  // namespace

CsvReader::CsvReader(const std::filesystem::path& file) : path_(file), buffer_(kBufferBytes) {
    fd_ = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw Error(file.string() + ": cannot open: " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) == 0) file_size_ = static_cast<std::uint64_t>(st.st_size);
    // Sequential read-ahead: the file is read once, front to back.
    ::posix_fadvise(fd_, 0, 0, POSIX_FADV_SEQUENTIAL);
    if (peek() == 0xEF) {  // UTF-8 byte order mark
        if (len_ - pos_ >= 3 && static_cast<unsigned char>(buffer_[pos_ + 1]) == 0xBB &&
            static_cast<unsigned char>(buffer_[pos_ + 2]) == 0xBF) {
            pos_ += 3;
            consumed_ += 3;
        }
    }
}

CsvReader::~CsvReader() {
    if (fd_ >= 0) ::close(fd_);
}

bool CsvReader::refill() {
    if (eof_) return false;
    // Keep unread bytes (at most a few, for the BOM check) at the front.
    const std::size_t keep = len_ - pos_;
    if (keep > 0) std::memmove(buffer_.data(), buffer_.data() + pos_, keep);
    pos_ = 0;
    len_ = keep;
    for (;;) {
        const ssize_t n = ::read(fd_, buffer_.data() + len_, buffer_.size() - len_);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw Error(path_.string() + ": read error: " + std::strerror(errno));
        }
        if (n == 0) {
            eof_ = true;
            return len_ > 0;
        }
        len_ += static_cast<std::size_t>(n);
        if (len_ >= 3 || eof_) return true;
    }
}

inline int CsvReader::peek() {
    if (pos_ >= len_ && !refill()) return kEof;
    return static_cast<unsigned char>(buffer_[pos_]);
}

inline int CsvReader::get() {
    if (pos_ >= len_ && !refill()) return kEof;
    ++consumed_;
    return static_cast<unsigned char>(buffer_[pos_++]);
}

void CsvReader::fail(std::int64_t line, const std::string& what) const {
    throw Error(path_.string() + ": line " + std::to_string(line) + ": " + what);
}

bool CsvReader::next(std::vector<std::string>& fields) {
    // Skip empty lines between records.
    for (;;) {
        const int c = peek();
        if (c == kEof) return false;
        if (c == '\n') {
            get();
            ++line_;
        } else if (c == '\r') {
            get();
            if (peek() == '\n') get();
            ++line_;
        } else {
            break;
        }
    }
    record_line_ = line_;
    std::size_t count = 0;
    for (;;) {
        if (count == fields.size()) fields.emplace_back();
        std::string& f = fields[count++];
        f.clear();
        int c = peek();
        if (c == '"') {
            get();
            const std::int64_t opened = line_;
            for (;;) {
                // Copy the run up to the next quote in one go.
                if (pos_ >= len_ && !refill()) {
                    fail(opened, "unterminated quoted field (the quote opened on line " +
                                     std::to_string(opened) + " is never closed)");
                }
                const char* start = buffer_.data() + pos_;
                const char* end = buffer_.data() + len_;
                const char* q = static_cast<const char*>(std::memchr(start, '"', end - start));
                const char* stop = q ? q : end;
                for (const char* p = start; p < stop; ++p) {
                    if (*p == '\n' || (*p == '\r' && p + 1 < end && p[1] != '\n')) ++line_;
                }
                f.append(start, stop);
                consumed_ += static_cast<std::uint64_t>(stop - start);
                pos_ += static_cast<std::size_t>(stop - start);
                if (f.size() > kMaxFieldBytes) {
                    fail(opened, "quoted field longer than 1 MiB (is a closing quote missing?)");
                }
                if (!q) continue;
                get();  // the quote
                if (peek() == '"') {
                    get();
                    f.push_back('"');
                    continue;
                }
                break;
            }
            c = get();
            if (c == ',') continue;
            if (c == '\n') {
                ++line_;
                break;
            }
            if (c == '\r') {
                if (peek() == '\n') get();
                ++line_;
                break;
            }
            if (c == kEof) break;
            fail(line_, "unexpected character after a closing quote (a quote inside a field must "
                        "be doubled)");
        }
        // Unquoted field: copy up to the next delimiter in one go.
        for (;;) {
            if (pos_ >= len_ && !refill()) break;
            const char* start = buffer_.data() + pos_;
            const char* end = buffer_.data() + len_;
            const char* p = start;
            while (p < end && *p != ',' && *p != '\n' && *p != '\r' && *p != '"') ++p;
            f.append(start, p);
            consumed_ += static_cast<std::uint64_t>(p - start);
            pos_ += static_cast<std::size_t>(p - start);
            if (f.size() > kMaxFieldBytes) fail(line_, "field longer than 1 MiB");
            if (p < end) break;
        }
        c = get();
        if (c == '"') {
            fail(line_, "quote inside an unquoted field (quote the whole field and double the "
                        "quote)");
        }
        if (c == ',') continue;
        if (c == '\n') {
            ++line_;
        } else if (c == '\r') {
            if (peek() == '\n') get();
            ++line_;
        }
        break;  // end of line or of file
    }
    fields.resize(count);
    return true;
}

std::string csv_field(std::string_view field) {
    bool quote = false;
    if (!field.empty()) {
        const char first = field.front(), last = field.back();
        quote = first == ' ' || first == '\t' || last == ' ' || last == '\t';
    }
    if (!quote) quote = field.find_first_of(",\"\r\n") != std::string_view::npos;
    if (!quote) return std::string(field);
    std::string out;
    out.reserve(field.size() + 2);
    out.push_back('"');
    for (char c : field) {
        if (c == '"') out.push_back('"');
        out.push_back(c);
    }
    out.push_back('"');
    return out;
}

void append_csv_record(std::string& out, const std::vector<std::string>& fields) {
    for (std::size_t i = 0; i < fields.size(); ++i) {
        if (i) out.push_back(',');
        out += csv_field(fields[i]);
    }
    out.push_back('\n');
}

}  // namespace kto::storage
