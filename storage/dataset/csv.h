#pragma once
// RFC 4180 CSV: a streaming reader (constant memory, any file size) and field quoting for writers.
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace kto::storage {

// Reads records one at a time through a fixed buffer. Accepts a UTF-8 byte order mark, LF, CRLF or
// CR line ends, quoted fields with commas, doubled quotes and line breaks, and skips empty lines.
// Malformed input throws kto::Error "<file>: line N: <what>".
class CsvReader {
public:
    explicit CsvReader(const std::filesystem::path& file);
    ~CsvReader();
    CsvReader(const CsvReader&) = delete;
    CsvReader& operator=(const CsvReader&) = delete;

    // The next record into `fields` (strings are reused); false at the end of the file.
    bool next(std::vector<std::string>& fields);
    // The line on which the last record returned by next() started (1-based).
    std::int64_t record_line() const { return record_line_; }
    std::uint64_t bytes_read() const { return consumed_; }
    std::uint64_t file_size() const { return file_size_; }
    const std::filesystem::path& path() const { return path_; }

    // Longest field accepted; a longer one is almost always an unterminated quote.
    static constexpr std::size_t kMaxFieldBytes = 1 << 20;

private:
    int get();
    int peek();
    bool refill();
    [[noreturn]] void fail(std::int64_t line, const std::string& what) const;

    std::filesystem::path path_;
    int fd_ = -1;
    std::vector<char> buffer_;
    std::size_t pos_ = 0;
    std::size_t len_ = 0;
    bool eof_ = false;
    std::uint64_t consumed_ = 0;
    std::uint64_t file_size_ = 0;
    std::int64_t line_ = 1;
    std::int64_t record_line_ = 0;
};

// `field` as it goes in a CSV record: quoted (with quotes doubled) when it holds a comma, a quote,
// CR or LF, or starts or ends with a space or tab; otherwise unchanged.
std::string csv_field(std::string_view field);
// Appends the fields, comma-separated, and a "\n".
void append_csv_record(std::string& out, const std::vector<std::string>& fields);

}  // namespace kto::storage
