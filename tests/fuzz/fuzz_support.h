#pragma once
// Helpers shared by the fuzz targets: the parsers under test read files, so each input is written
// to a memory file (memfd) and handed over as /proc/self/fd/N, with no disk traffic.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace kto::fuzz {

class MemoryFile {
public:
    MemoryFile() : fd_(::memfd_create("kto-fuzz", 0)) {
        if (fd_ < 0) {
            std::perror("memfd_create");
            std::abort();
        }
    }
    // Replaces the file's content with `data`; returns its path.
    const std::string& write(const uint8_t* data, size_t size) {
        if (::ftruncate(fd_, 0) != 0) std::abort();
        size_t done = 0;
        while (done < size) {
            const ssize_t w = ::pwrite(fd_, data + done, size - done, static_cast<off_t>(done));
            if (w <= 0) std::abort();
            done += static_cast<size_t>(w);
        }
        path_ = "/proc/self/fd/" + std::to_string(fd_);
        return path_;
    }

private:
    int fd_;
    std::string path_;
};

// Fails the run (libFuzzer reports a crash and keeps the input) when a property does not hold.
#define KTO_FUZZ_CHECK(cond)                                                              \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            std::fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, __LINE__, #cond); \
            std::abort();                                                                 \
        }                                                                                 \
    } while (0)

}  // namespace kto::fuzz
