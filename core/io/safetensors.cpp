#include "core/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/common/error.h"
#include "core/io/json_nesting.h"

namespace kto {
namespace {

static_assert(sizeof(void*) == 8, "safetensors reader assumes a 64-bit address space");

struct DtypeInfo {
    const char* name;
    torch::ScalarType type;
    uint64_t size;
};

// The dtypes we can hold in torch; F8 and unsigned wider types are rejected with a clear error.
const DtypeInfo kDtypes[] = {
    {"F64", torch::kFloat64, 8},   {"F32", torch::kFloat32, 4}, {"F16", torch::kFloat16, 2},
    {"BF16", torch::kBFloat16, 2}, {"I64", torch::kInt64, 8},   {"I32", torch::kInt32, 4},
    {"I16", torch::kInt16, 2},     {"I8", torch::kInt8, 1},     {"U8", torch::kUInt8, 1},
    {"BOOL", torch::kBool, 1},
};

const DtypeInfo* find_dtype(const std::string& name) {
    for (const auto& d : kDtypes)
        if (name == d.name) return &d;
    return nullptr;
}

std::string known_dtype_list() {
    std::string s;
    for (const auto& d : kDtypes) s += (s.empty() ? "" : ", ") + std::string(d.name);
    return s;
}

bool host_is_little_endian() {
    const uint16_t one = 1;
    unsigned char b;
    std::memcpy(&b, &one, 1);
    return b == 1;
}

std::string sys_error() { return std::strerror(errno); }

// A read-only file opened and mapped privately (copy-on-write); unmapped when the last tensor
// viewing it is freed.
class Mapping {
public:
    explicit Mapping(const std::string& path) {
        fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd_ < 0) throw Error(path + ": cannot open: " + sys_error());
        struct stat st {};
        if (::fstat(fd_, &st) != 0) throw Error(path + ": cannot stat: " + sys_error());
        if (S_ISDIR(st.st_mode)) throw Error(path + ": is a folder, not a safetensors file");
        size_ = static_cast<uint64_t>(st.st_size);
        if (size_ == 0) return;
        void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd_, 0);
        if (p == MAP_FAILED) throw Error(path + ": cannot memory-map: " + sys_error());
        data_ = static_cast<const unsigned char*>(p);
    }
    ~Mapping() {
        if (data_) ::munmap(const_cast<unsigned char*>(data_), size_);
        if (fd_ >= 0) ::close(fd_);
    }
    Mapping(const Mapping&) = delete;
    Mapping& operator=(const Mapping&) = delete;

    const unsigned char* data() const { return data_; }
    uint64_t size() const { return size_; }

private:
    int fd_ = -1;
    const unsigned char* data_ = nullptr;
    uint64_t size_ = 0;
};

uint64_t read_u64_le(const unsigned char* p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

// a * b, or throws when it does not fit in 64 bits.
bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) {
    if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return true;
    *out = a * b;
    return false;
}

uint64_t json_u64(const nlohmann::json& v, const std::string& where) {
    if (v.is_number_unsigned()) return v.get<uint64_t>();
    if (v.is_number_integer() && v.get<int64_t>() >= 0)
        return static_cast<uint64_t>(v.get<int64_t>());
    throw Error(where + " must be a non-negative integer, got " + v.dump());
}

// Parses and validates the header bytes; `data_size` is the byte count after the header.
SafetensorsHeader parse_header(const std::string& path, const char* json_begin, uint64_t n,
                               uint64_t data_size) {
    SafetensorsHeader h;
    h.header_length = n;
    check_json_nesting(json_begin, json_begin + n, path + ": safetensors header");
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(json_begin, json_begin + n);
    } catch (const nlohmann::json::exception& e) {
        throw Error(path + ": safetensors header is not valid JSON (" + e.what() + ")");
    }
    if (!j.is_object())
        throw Error(path + ": safetensors header must be a JSON object, got a JSON " +
                    std::string(j.type_name()));

    for (auto it = j.begin(); it != j.end(); ++it) {
        const std::string& name = it.key();
        const nlohmann::json& v = it.value();
        if (name == "__metadata__") {
            if (!v.is_object())
                throw Error(path + ": '__metadata__' must be an object of strings, got " +
                            std::string(v.type_name()));
            for (auto m = v.begin(); m != v.end(); ++m) {
                if (!m.value().is_string())
                    throw Error(path + ": '__metadata__' entry '" + m.key() +
                                "' must be a string, got " + m.value().dump());
                h.metadata[m.key()] = m.value().get<std::string>();
            }
            continue;
        }
        const std::string where = path + ": tensor '" + name + "'";
        if (!v.is_object()) throw Error(where + ": header entry is not an object");
        for (const char* field : {"dtype", "shape", "data_offsets"})
            if (!v.contains(field)) throw Error(where + ": missing '" + std::string(field) + "'");
        SafetensorsEntry e;
        e.name = name;
        if (!v["dtype"].is_string()) throw Error(where + ": 'dtype' must be a string");
        e.dtype = v["dtype"].get<std::string>();
        const DtypeInfo* dt = find_dtype(e.dtype);
        if (!dt)
            throw Error(where + ": unknown or unsupported dtype '" + e.dtype +
                        "' (supported: " + known_dtype_list() + ")");
        if (!v["shape"].is_array()) throw Error(where + ": 'shape' must be an array");
        uint64_t numel = 1;
        for (const auto& d : v["shape"]) {
            const uint64_t dim = json_u64(d, where + ": shape entry");
            if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
                mul_overflows(numel, dim, &numel))
                throw Error(where + ": shape " + v["shape"].dump() + " overflows 64 bits");
            e.shape.push_back(static_cast<int64_t>(dim));
        }
        const auto& offs = v["data_offsets"];
        if (!offs.is_array() || offs.size() != 2)
            throw Error(where + ": 'data_offsets' must be an array [begin, end]");
        e.begin = json_u64(offs[0], where + ": data_offsets[0]");
        e.end = json_u64(offs[1], where + ": data_offsets[1]");
        if (e.end < e.begin)
            throw Error(where + ": data_offsets end " + std::to_string(e.end) +
                        " is before begin " + std::to_string(e.begin));
        uint64_t bytes = 0;
        if (mul_overflows(numel, dt->size, &bytes))
            throw Error(where + ": shape " + v["shape"].dump() + " x " + e.dtype +
                        " overflows 64 bits");
        if (bytes != e.end - e.begin)
            throw Error(where + ": span mismatch: shape " + v["shape"].dump() + " x " + e.dtype +
                        " needs " + std::to_string(bytes) + " bytes but data_offsets [" +
                        std::to_string(e.begin) + ", " + std::to_string(e.end) + "] hold " +
                        std::to_string(e.end - e.begin));
        if (e.end > data_size)
            throw Error(where + ": data_offsets [" + std::to_string(e.begin) + ", " +
                        std::to_string(e.end) + "] lie outside the data section (" +
                        std::to_string(data_size) + " bytes); file truncated?");
        h.entries.push_back(std::move(e));
    }

    // Dense, non-overlapping, in-bounds layout, as the reference validates.
    std::vector<const SafetensorsEntry*> by_offset;
    for (const auto& e : h.entries) by_offset.push_back(&e);
    std::sort(by_offset.begin(), by_offset.end(), [](const auto* a, const auto* b) {
        return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
    });
    uint64_t expected = 0;
    const SafetensorsEntry* prev = nullptr;
    for (const auto* e : by_offset) {
        if (e->begin < expected)
            throw Error(path + ": tensor '" + e->name + "' overlaps tensor '" + prev->name +
                        "' (data_offsets [" + std::to_string(e->begin) + ", " +
                        std::to_string(e->end) + "] vs [" + std::to_string(prev->begin) + ", " +
                        std::to_string(prev->end) + "])");
        if (e->begin > expected)
            throw Error(path + ": tensor '" + e->name + "' starts at byte " +
                        std::to_string(e->begin) + " of the data section, leaving a gap after " +
                        std::to_string(expected) + " (data must be densely packed)");
        expected = e->end;
        prev = e;
    }
    if (expected != data_size)
        throw Error(path + ": data section holds " + std::to_string(data_size) +
                    " bytes but the tensors cover " + std::to_string(expected) +
                    " (trailing bytes or a corrupt header)");
    return h;
}

// Validates size bounds and returns N (the header length); `size` is the file size.
uint64_t checked_header_length(const std::string& path, const unsigned char* first8,
                               uint64_t size) {
    if (size < 8)
        throw Error(path + ": file is " + std::to_string(size) +
                    " bytes, too short for a safetensors header length (truncated?)");
    const uint64_t n = read_u64_le(first8);
    if (n > kSafetensorsMaxHeaderBytes)
        throw Error(path + ": safetensors header length " + std::to_string(n) +
                    " exceeds the 100 MB limit (corrupt or not a safetensors file)");
    if (n > size - 8)
        throw Error(path + ": safetensors header length " + std::to_string(n) +
                    " runs past the end of the file (" + std::to_string(size) +
                    " bytes; truncated?)");
    if (n < 2)
        throw Error(path + ": safetensors header of " + std::to_string(n) + " bytes is empty");
    return n;
}

void check_endianness(const std::string& path) {
    if (!host_is_little_endian())
        throw Error(path +
                    ": safetensors files are little-endian; big-endian hosts are not supported");
}

void write_all(int fd, const void* data, size_t n, const std::string& path) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
        const ssize_t w = ::write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            throw Error(path + ": write failed: " + sys_error());
        }
        p += w;
        n -= static_cast<size_t>(w);
    }
}

}  // namespace

std::string safetensors_dtype_name(torch::ScalarType dtype) {
    for (const auto& d : kDtypes)
        if (d.type == dtype) return d.name;
    throw Error(std::string("dtype ") + c10::toString(dtype) + " cannot be stored in safetensors");
}

torch::ScalarType safetensors_dtype_from_name(const std::string& name) {
    const DtypeInfo* d = find_dtype(name);
    if (!d)
        throw Error("unknown safetensors dtype '" + name + "' (supported: " + known_dtype_list() +
                    ")");
    return d->type;
}

SafetensorsHeader read_safetensors_header(const std::string& path) {
    check_endianness(path);
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Error(path + ": cannot open: " + sys_error());
    std::unique_ptr<int, void (*)(int*)> guard(new int(fd), [](int* f) {
        ::close(*f);
        delete f;
    });
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw Error(path + ": cannot stat: " + sys_error());
    if (S_ISDIR(st.st_mode)) throw Error(path + ": is a folder, not a safetensors file");
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    unsigned char first8[8] = {};
    if (size >= 8 && ::pread(fd, first8, 8, 0) != 8)
        throw Error(path + ": read failed: " + sys_error());
    const uint64_t n = checked_header_length(path, first8, size);
    std::string json(n, '\0');
    uint64_t got = 0;
    while (got < n) {
        const ssize_t r = ::pread(fd, json.data() + got, n - got, static_cast<off_t>(8 + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            throw Error(path +
                        ": read failed: " + (r < 0 ? sys_error() : "unexpected end of file"));
        got += static_cast<uint64_t>(r);
    }
    SafetensorsHeader h = parse_header(path, json.data(), n, size - 8 - n);
    h.file_size = size;
    return h;
}

SafetensorsFile read_safetensors(const std::string& path) {
    check_endianness(path);
    auto map = std::make_shared<Mapping>(path);
    const uint64_t size = map->size();
    const unsigned char* base = map->data();
    static const unsigned char zeros[8] = {};
    const uint64_t n = checked_header_length(path, size >= 8 ? base : zeros, size);
    SafetensorsHeader h =
        parse_header(path, reinterpret_cast<const char*>(base + 8), n, size - 8 - n);

    SafetensorsFile out;
    out.metadata = std::move(h.metadata);
    const unsigned char* data = base + 8 + n;
    for (const auto& e : h.entries) {
        const DtypeInfo* dt = find_dtype(e.dtype);
        const auto opts = torch::TensorOptions().dtype(dt->type).device(torch::kCPU);
        torch::Tensor t;
        const unsigned char* p = data + e.begin;
        if (e.end == e.begin) {
            t = torch::empty(e.shape, opts);
        } else if (reinterpret_cast<uintptr_t>(p) % dt->size == 0) {
            // Zero-copy: the deleter holds the mapping alive until this tensor's storage dies.
            t = torch::from_blob(
                const_cast<unsigned char*>(p), e.shape, [map](void*) mutable { map.reset(); },
                opts);
        } else {
            t = torch::empty(e.shape, opts);
            std::memcpy(t.data_ptr(), p, e.end - e.begin);
        }
        out.tensors.emplace(e.name, std::move(t));
    }
    return out;
}

TensorMap load_safetensors(const std::string& path) { return read_safetensors(path).tensors; }

void write_safetensors(const std::string& path, const TensorMap& tensors,
                       const std::map<std::string, std::string>& metadata) {
    check_endianness(path);
    struct Item {
        const std::string* name;
        torch::Tensor data;  // CPU, contiguous
        const DtypeInfo* dt;
        uint64_t bytes;
    };
    std::vector<Item> items;
    for (const auto& [name, t] : tensors) {
        if (name == "__metadata__")
            throw Error(path + ": '__metadata__' is not a valid tensor name");
        if (!t.defined()) throw Error(path + ": tensor '" + name + "' is undefined");
        const DtypeInfo* dt = nullptr;
        for (const auto& d : kDtypes)
            if (d.type == t.scalar_type()) dt = &d;
        if (!dt)
            throw Error(path + ": tensor '" + name + "' has dtype " +
                        std::string(c10::toString(t.scalar_type())) +
                        ", which safetensors cannot store (supported: " + known_dtype_list() + ")");
        auto c = t.detach().to(torch::kCPU).contiguous();
        items.push_back({&name, c, dt, static_cast<uint64_t>(c.numel()) * dt->size});
    }
    // Data ordered by element size (largest first), then name, as the reference writer does, so
    // every tensor stays aligned for zero-copy reads; the header lists names sorted.
    std::vector<const Item*> order;
    for (const auto& it : items) order.push_back(&it);
    std::stable_sort(order.begin(), order.end(),
                     [](const Item* a, const Item* b) { return a->dt->size > b->dt->size; });

    std::map<const std::string*, std::pair<uint64_t, uint64_t>> spans;
    uint64_t offset = 0;
    for (const Item* it : order) {
        spans[it->name] = {offset, offset + it->bytes};
        offset += it->bytes;
    }
    std::string header = "{";
    bool first = true;
    if (!metadata.empty()) {
        header += "\"__metadata__\":" + nlohmann::json(metadata).dump();
        first = false;
    }
    for (const auto& it : items) {
        nlohmann::json e;
        e["dtype"] = it.dt->name;
        e["shape"] = it.data.sizes().vec();
        const auto& s = spans[it.name];
        e["data_offsets"] = {s.first, s.second};
        // nlohmann sorts keys: data_offsets, dtype, shape (any order is valid).
        header += (first ? "" : ",") + nlohmann::json(*it.name).dump() + ":" + e.dump();
        first = false;
    }
    header += "}";
    while (header.size() % 8 != 0) header += ' ';

    const auto slash = path.find_last_of('/');
    const std::string dir =
        slash == std::string::npos ? "." : path.substr(0, slash == 0 ? 1 : slash);
    std::string tmpl = path + ".tmp-XXXXXX";
    std::vector<char> tmp(tmpl.begin(), tmpl.end());
    tmp.push_back('\0');
    const int fd = ::mkstemp(tmp.data());
    if (fd < 0) throw Error(path + ": cannot create a temporary file next to it: " + sys_error());
    const std::string tmp_path(tmp.data());
    bool closed = false;
    try {
        unsigned char len[8];
        uint64_t n = header.size();
        for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((n >> (8 * i)) & 0xff);
        write_all(fd, len, 8, path);
        write_all(fd, header.data(), header.size(), path);
        for (const Item* it : order)
            if (it->bytes) write_all(fd, it->data.data_ptr(), it->bytes, path);
        ::fchmod(fd, 0644);
        if (::fsync(fd) != 0) throw Error(path + ": fsync failed: " + sys_error());
        closed = true;
        if (::close(fd) != 0) throw Error(path + ": close failed: " + sys_error());
    } catch (...) {
        if (!closed) ::close(fd);
        ::unlink(tmp_path.c_str());
        throw;
    }
    if (::rename(tmp_path.c_str(), path.c_str()) != 0) {
        const std::string err = sys_error();
        ::unlink(tmp_path.c_str());
        throw Error(path + ": cannot replace the file: " + err);
    }
    // Make the rename itself durable.
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
    }
}

}  // namespace kto
