// Writes the big hostile inputs the fuzz_<target>_hostile tests replay, so the repository carries
// no multi-megabyte files: usage `fuzz_make_hostile OUT_DIR` -> OUT_DIR/<target>/<case>.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

namespace fs = std::filesystem;

namespace {

fs::path g_out;

void put(const std::string& target, const std::string& name, const std::string& bytes) {
    fs::create_directories(g_out / target);
    std::ofstream f(g_out / target / name, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!f) {
        std::cerr << "cannot write " << (g_out / target / name) << "\n";
        std::exit(1);
    }
}

std::string u64le(uint64_t v) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
    return s;
}

std::string safetensors(const std::string& header, const std::string& data = "") {
    return u64le(header.size()) + header + data;
}

std::string nested(size_t depth, char open = '[', char close = ']') {
    return std::string(depth, open) + std::string(depth, close);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: fuzz_make_hostile OUT_DIR\n";
        return 2;
    }
    g_out = argv[1];
    constexpr size_t kDeep = 2'000'000;          // JSON nesting levels
    constexpr size_t kTenMB = 10 * 1024 * 1024;  // a 10 MB caption

    // safetensors: huge header lengths, deep nesting in the header and in a shape, a 20 MB header
    // with 400k tensors.
    put("fuzz_safetensors", "header_len_u64_max", u64le(UINT64_MAX) + "{}");
    put("fuzz_safetensors", "header_len_100mb_exact", u64le(100'000'000) + "{}");
    put("fuzz_safetensors", "deep_nesting_header", safetensors(nested(kDeep)));
    put("fuzz_safetensors", "deep_nesting_shape",
        safetensors("{\"t\":{\"dtype\":\"F32\",\"shape\":[" + nested(kDeep) +
                    "],\"data_offsets\":[0,4]}}", "abcd"));
    {
        std::string h = "{", data;
        for (int i = 0; i < 400'000; ++i) {
            h += (i ? "," : "") + std::string("\"t") + std::to_string(i) + "\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[" +
                 std::to_string(i) + "," + std::to_string(i + 1) + "]}";
            data += static_cast<char>(i);
        }
        put("fuzz_safetensors", "many_tensors", safetensors(h + "}", data));
    }

    // model configs: deep nesting, deep nesting where an integer is expected, a 10 MB string.
    put("fuzz_model_config", "deep_nesting", nested(kDeep));
    put("fuzz_model_config", "deep_nesting_objects", [&] {
        std::string s;
        for (size_t i = 0; i < kDeep / 2; ++i) s += "{\"a\":";
        return s + "1" + std::string(kDeep / 2, '}');
    }());
    put("fuzz_model_config", "deep_nesting_in_field",
        "{\"in_channels\":" + nested(kDeep) + ",\"block_out_channels\":" + nested(kDeep) + "}");
    put("fuzz_model_config", "huge_string_field", "{\"_class_name\":\"" + std::string(kTenMB, 'x') + "\"}");

    // CLIP tokenizer (first byte picks the vocabulary): one 10 MB word, 10 MB of words, 10 MB of
    // invalid UTF-8, 10 MB of special-token look-alikes.
    put("fuzz_clip_tokenizer", "caption_10mb_one_word", "\x00" + std::string(kTenMB, 'a'));
    {
        std::string s = "\x00";
        while (s.size() < kTenMB) s += "a large red circle on a blue background, ";
        put("fuzz_clip_tokenizer", "caption_10mb_words", s);
    }
    {
        std::string s = "\x01";
        for (size_t i = 0; s.size() < kTenMB; ++i) s += static_cast<char>(0x80 + i % 0x7f);
        put("fuzz_clip_tokenizer", "caption_10mb_invalid_utf8", s);
    }
    {
        std::string s = "\x00";
        while (s.size() < kTenMB) s += "<|endoftext|<|startoftext|>";
        put("fuzz_clip_tokenizer", "caption_10mb_specials", s);
    }

    // CSV import: a 10 MB caption (over the 1 MB field limit), an unterminated quote running to
    // the end of a 10 MB file, 10 MB of rows.
    put("fuzz_csv_import", "caption_10mb",
        "file_name,caption,label\na.png,\"" + std::string(kTenMB, 'c') + "\",1\n");
    put("fuzz_csv_import", "unterminated_quote_10mb", "file_name,caption,label\na.png,\"" + std::string(kTenMB, 'q'));
    {
        std::string s = "file_name,caption,label\n";
        while (s.size() < kTenMB) s += "train/b.png,\"a red, \"\"round\"\" circle\",1\n";
        put("fuzz_csv_import", "rows_10mb", s);
    }

    // A1111 parameters: a 10 MB prompt, 10 MB of settings pairs, invalid UTF-8.
    put("fuzz_png_parameters", "prompt_10mb",
        std::string(kTenMB, 'p') + "\nSteps: 20, Sampler: euler, CFG scale: 7, Seed: 1, Size: 64x64, Model: kto-demo");
    {
        std::string s = "a prompt\nSteps: 20";
        for (int i = 0; s.size() < kTenMB; ++i) s += ", K" + std::to_string(i) + ": \"v, w\"";
        put("fuzz_png_parameters", "settings_10mb", s);
    }
    put("fuzz_png_parameters", "invalid_utf8",
        "\xff\xfe\xc3\x28\nNegative prompt: \xed\xa0\x80\nSteps: 1, Sampler: \xc0\xaf, CFG scale: 1, Seed: 2, Size: 8x8, Model: \x80");

    // Images: binary PPMs whose headers declare 100000 x 100000 and 16384 x 16384 pixels (a 30 GB
    // and a 805 MB RGB buffer), followed by 10 MB of data.
    put("fuzz_image_decode", "ppm_100000x100000", "P6\n100000 100000\n255\n" + std::string(kTenMB, '\x7f'));
    put("fuzz_image_decode", "ppm_16384x16384", "P6\n16384 16384\n255\n" + std::string(kTenMB, '\x7f'));
    std::cout << "hostile inputs written to " << g_out << "\n";
    return 0;
}
