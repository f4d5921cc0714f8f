#include "core/common/png_text.h"

// libstb exports this C function; stb_image_write.h declares it only in its implementation part.
extern "C" unsigned char* stbi_write_png_to_mem(const unsigned char* pixels, int stride_bytes, int x, int y,
                                                int n, int* out_len);

#include <array>
#include <cctype>
#include <iomanip>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include "core/common/error.h"

namespace kto {
namespace {

const uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

const std::array<uint32_t, 256>& crc_table() {
    static const std::array<uint32_t, 256> table = [] {
        std::array<uint32_t, 256> t{};
        for (uint32_t n = 0; n < 256; ++n) {
            uint32_t c = n;
            for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
            t[n] = c;
        }
        return t;
    }();
    return table;
}

// CRC-32 of the chunk type and data (PNG spec, section 5.5).
uint32_t crc32(const uint8_t* data, size_t n, uint32_t crc = 0xffffffffu) {
    const auto& t = crc_table();
    for (size_t i = 0; i < n; ++i) crc = t[(crc ^ data[i]) & 0xff] ^ (crc >> 8);
    return crc;
}

uint32_t be32(const uint8_t* p) {
    return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}
void put_be32(std::vector<uint8_t>& out, uint32_t v) {
    out.push_back(uint8_t(v >> 24));
    out.push_back(uint8_t(v >> 16));
    out.push_back(uint8_t(v >> 8));
    out.push_back(uint8_t(v));
}

struct Chunk {
    size_t offset;  // of the length field
    uint32_t length;
    std::string type;
    bool crc_ok;
};

// Walks the chunk list up to IEND; throws on any structural problem.
std::vector<Chunk> chunks_of(const std::vector<uint8_t>& png) {
    if (png.size() < 8 || std::memcmp(png.data(), kSignature, 8) != 0) throw Error("not a PNG file (bad signature)");
    std::vector<Chunk> out;
    size_t pos = 8;
    while (true) {
        if (png.size() - pos < 12) throw Error("PNG ends inside a chunk header (truncated file)");
        const uint32_t len = be32(&png[pos]);
        if (len > 0x7fffffffu || png.size() - pos - 12 < len) throw Error("PNG chunk length runs past the end of the file");
        Chunk c{pos, len, std::string(reinterpret_cast<const char*>(&png[pos + 4]), 4), false};
        for (char ch : c.type)
            if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z'))) throw Error("PNG chunk with an invalid type");
        c.crc_ok = (crc32(&png[pos + 4], 4 + size_t(len)) ^ 0xffffffffu) == be32(&png[pos + 8 + len]);
        out.push_back(c);
        pos += 12 + size_t(len);
        if (c.type == "IEND") break;
    }
    if (out.empty() || out.front().type != "IHDR") throw Error("PNG does not start with an IHDR chunk");
    return out;
}

bool is_ascii(const std::string& s) {
    for (unsigned char c : s)
        if (c >= 0x80) return false;
    return true;
}

std::string latin1_to_utf8(const std::string& s) {
    std::string out;
    for (unsigned char c : s) {
        if (c < 0x80) {
            out += static_cast<char>(c);
        } else {
            out += static_cast<char>(0xc0 | (c >> 6));
            out += static_cast<char>(0x80 | (c & 0x3f));
        }
    }
    return out;
}

std::vector<uint8_t> text_chunk(const std::string& keyword, const std::string& text) {
    if (keyword.empty() || keyword.size() > 79) throw Error("PNG text keyword must be 1-79 characters");
    for (unsigned char c : keyword)
        if (c < 32 || c > 126) throw Error("PNG text keyword must be printable ASCII: '" + keyword + "'");
    std::vector<uint8_t> data(keyword.begin(), keyword.end());
    data.push_back(0);
    std::string type = "tEXt";
    if (!is_ascii(text)) {  // iTXt: no compression, empty language tag and translated keyword
        type = "iTXt";
        data.insert(data.end(), {0, 0, 0, 0});
    }
    data.insert(data.end(), text.begin(), text.end());
    std::vector<uint8_t> chunk;
    put_be32(chunk, static_cast<uint32_t>(data.size()));
    chunk.insert(chunk.end(), type.begin(), type.end());
    chunk.insert(chunk.end(), data.begin(), data.end());
    const uint32_t crc = crc32(&chunk[4], 4 + data.size()) ^ 0xffffffffu;
    put_be32(chunk, crc);
    return chunk;
}

std::string trim(const std::string& s) {
    size_t a = s.find_first_not_of(" \t\r\n");
    if (a == std::string::npos) return "";
    size_t b = s.find_last_not_of(" \t\r\n");
    return s.substr(a, b - a + 1);
}

// Splits "Steps: 20, Sampler: Euler a, ..." into pairs; values may be quoted (A1111 quotes
// values holding commas).
std::vector<std::pair<std::string, std::string>> split_settings(const std::string& line) {
    std::vector<std::pair<std::string, std::string>> out;
    size_t i = 0;
    while (i < line.size()) {
        // Commas and the blanks trim() drops, between pairs: a key never starts with one (found by
        // fuzzing: "\t, K: v" was read as key ", K", written back and read as "K").
        while (i < line.size() && (line[i] == ',' || std::strchr(" \t\r\n", line[i]) != nullptr) &&
               line[i] != '\0')
            ++i;
        size_t colon = line.find(':', i);
        if (colon == std::string::npos) break;
        std::string key = trim(line.substr(i, colon - i));
        i = colon + 1;
        while (i < line.size() && line[i] == ' ') ++i;
        std::string value;
        if (i < line.size() && line[i] == '"') {
            ++i;
            while (i < line.size() && line[i] != '"') {
                if (line[i] == '\\' && i + 1 < line.size()) ++i;
                value += line[i++];
            }
            ++i;
        } else {
            size_t comma = line.find(',', i);
            value = trim(line.substr(i, comma == std::string::npos ? std::string::npos : comma - i));
            i = comma == std::string::npos ? line.size() : comma;
        }
        out.emplace_back(key, value);
    }
    return out;
}

std::string quote_if_needed(const std::string& v) {
    // Leading/trailing blanks would be trimmed away by the reader unless quoted.
    const bool edge_blank = !v.empty() && (std::isspace(static_cast<unsigned char>(v.front())) ||
                                           std::isspace(static_cast<unsigned char>(v.back())));
    if (!edge_blank && v.find(',') == std::string::npos && v.find('"') == std::string::npos &&
        v.find(':') == std::string::npos)
        return v;
    std::string q = "\"";
    for (char c : v) {
        if (c == '"' || c == '\\') q += '\\';
        q += c;
    }
    return q + "\"";
}

}  // namespace

std::vector<uint8_t> encode_png(const uint8_t* pixels, int width, int height, int channels,
                                const std::map<std::string, std::string>& text) {
    if (!pixels || width <= 0 || height <= 0 || (channels != 3 && channels != 4))
        throw Error("PNG encoding: expected a non-empty RGB or RGBA image");
    int len = 0;
    unsigned char* mem = stbi_write_png_to_mem(pixels, width * channels, width, height, channels, &len);
    if (!mem || len <= 0) throw Error("PNG encoding failed (out of memory?)");
    std::vector<uint8_t> png(mem, mem + len);
    std::free(mem);
    for (const auto& [k, v] : text) png = add_png_text(png, k, v);
    return png;
}

std::vector<uint8_t> add_png_text(const std::vector<uint8_t>& png, const std::string& keyword,
                                  const std::string& text) {
    const auto chunks = chunks_of(png);
    const size_t iend = chunks.back().offset;
    auto chunk = text_chunk(keyword, text);
    std::vector<uint8_t> out(png.begin(), png.begin() + static_cast<std::ptrdiff_t>(iend));
    out.insert(out.end(), chunk.begin(), chunk.end());
    out.insert(out.end(), png.begin() + static_cast<std::ptrdiff_t>(iend), png.end());
    return out;
}

std::map<std::string, std::string> read_png_text(const std::vector<uint8_t>& png) {
    std::map<std::string, std::string> out;
    for (const auto& c : chunks_of(png)) {
        if (!c.crc_ok || (c.type != "tEXt" && c.type != "iTXt")) continue;
        const char* d = reinterpret_cast<const char*>(&png[c.offset + 8]);
        const std::string data(d, c.length);
        const size_t nul = data.find('\0');
        if (nul == std::string::npos || nul == 0 || nul > 79) continue;
        const std::string key = data.substr(0, nul);
        if (c.type == "tEXt") {
            out[key] = latin1_to_utf8(data.substr(nul + 1));
            continue;
        }
        // iTXt: compression flag, method, language\0, translated keyword\0, text
        if (data.size() < nul + 3 || data[nul + 1] != 0) continue;  // compressed: not supported
        const size_t lang_end = data.find('\0', nul + 3);
        if (lang_end == std::string::npos) continue;
        const size_t tk_end = data.find('\0', lang_end + 1);
        if (tk_end == std::string::npos) continue;
        out[key] = data.substr(tk_end + 1);
    }
    return out;
}

std::vector<uint8_t> read_file_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot open");
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) throw Error(path + ": cannot read");
    return bytes;
}

std::map<std::string, std::string> read_png_text_file(const std::string& path) {
    const std::vector<uint8_t> bytes = read_file_bytes(path);
    try {
        return read_png_text(bytes);
    } catch (const Error& e) {
        throw Error(path + ": " + e.what());
    }
}

void write_file_atomic(const std::string& path, const std::vector<uint8_t>& bytes) {
    namespace fs = std::filesystem;
    const fs::path target(path);
    const fs::path tmp = target.parent_path() / (".tmp-" + target.filename().string() + "-" + std::to_string(::getpid()));
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        if (!out) throw Error(path + ": cannot write (" + std::strerror(errno) + ")");
        out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
        out.flush();
        if (!out) {
            std::error_code ec;
            fs::remove(tmp, ec);
            throw Error(path + ": write failed (disk full?)");
        }
    }
    std::error_code ec;
    fs::rename(tmp, target, ec);
    if (ec) {
        fs::remove(tmp, ec);
        throw Error(path + ": cannot move the written file into place");
    }
}

std::string format_generation_parameters(const GenerationParameters& p) {
    std::ostringstream os;
    os << p.prompt << "\n";
    if (!p.negative_prompt.empty()) os << "Negative prompt: " << p.negative_prompt << "\n";
    // Shortest text that reads back as the same double (7.5, not 7.50000; 7.123456789 intact).
    std::string cfg;
    for (int digits = 6; digits <= 17; ++digits) {
        std::ostringstream c;
        c << std::setprecision(digits) << p.cfg_scale;
        cfg = c.str();
        if (std::strtod(cfg.c_str(), nullptr) == p.cfg_scale || p.cfg_scale != p.cfg_scale) break;
    }
    os << "Steps: " << p.steps << ", Sampler: " << quote_if_needed(p.sampler) << ", CFG scale: " << cfg
       << ", Seed: " << p.seed;
    // A settings line without a size (other tools write such lines) reads back without one.
    if (p.width > 0 || p.height > 0) os << ", Size: " << p.width << "x" << p.height;
    os << ", Model: " << quote_if_needed(p.model);
    for (const auto& [k, v] : p.extra) os << ", " << k << ": " << quote_if_needed(v);
    return os.str();
}

GenerationParameters parse_generation_parameters(const std::string& text) {
    GenerationParameters p;
    std::string body = text;
    while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.pop_back();
    const size_t last_nl = body.rfind('\n');
    const std::string settings = last_nl == std::string::npos ? body : body.substr(last_nl + 1);
    if (settings.rfind("Steps: ", 0) != 0) throw Error("generation parameters: no 'Steps: ...' settings line");
    std::string head = last_nl == std::string::npos ? "" : body.substr(0, last_nl);
    const size_t neg = head.find("Negative prompt: ");
    if (neg != std::string::npos && (neg == 0 || head[neg - 1] == '\n')) {
        p.negative_prompt = head.substr(neg + 17);
        head = neg == 0 ? "" : head.substr(0, neg - 1);
    }
    p.prompt = head;
    auto to_int = [](const std::string& k, const std::string& v) -> long long {
        char* end = nullptr;
        errno = 0;
        long long n = std::strtoll(v.c_str(), &end, 10);
        if (v.empty() || *end || errno) throw Error("generation parameters: '" + k + "' is not a number: " + v);
        return n;
    };
    for (const auto& [k, v] : split_settings(settings)) {
        if (k == "Steps") {
            const long long n = to_int(k, v);
            if (n < 0 || n > 100000) throw Error("generation parameters: 'Steps' out of range: " + v);
            p.steps = static_cast<int>(n);
        } else if (k == "Sampler") {
            p.sampler = v;
        } else if (k == "CFG scale") {
            char* end = nullptr;
            p.cfg_scale = std::strtod(v.c_str(), &end);
            if (v.empty() || *end) throw Error("generation parameters: 'CFG scale' is not a number: " + v);
        } else if (k == "Seed") {
            char* end = nullptr;
            errno = 0;
            p.seed = std::strtoull(v.c_str(), &end, 10);
            if (v.empty() || *end || errno || v[0] == '-') throw Error("generation parameters: 'Seed' is not a number: " + v);
        } else if (k == "Size") {
            const size_t x = v.find('x');
            if (x == std::string::npos) throw Error("generation parameters: 'Size' must be WxH: " + v);
            const long long w = to_int(k, v.substr(0, x)), h = to_int(k, v.substr(x + 1));
            if (w <= 0 || h <= 0 || w > 65536 || h > 65536) throw Error("generation parameters: 'Size' out of range: " + v);
            p.width = static_cast<int>(w);
            p.height = static_cast<int>(h);
        } else if (k == "Model") {
            p.model = v;
        } else {
            p.extra[k] = v;
        }
    }
    return p;
}

}  // namespace kto
