#include "core/train/dataset.h"


#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/common/error.h"
#include "core/common/image_decode.h"
#include "core/common/png_text.h"
#include "core/io/model_folder.h"

namespace fs = std::filesystem;

namespace kto {

namespace {

// Whole-file RFC 4180 parse (quoted fields, doubled quotes, CRLF); datasets are small text files.
std::vector<std::pair<int64_t, std::vector<std::string>>> parse_csv(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot open the dataset CSV");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (text.rfind("\xEF\xBB\xBF", 0) == 0) text.erase(0, 3);  // UTF-8 byte order mark
    std::vector<std::pair<int64_t, std::vector<std::string>>> rows;
    std::vector<std::string> fields;
    std::string field;
    bool quoted = false, field_started = false;
    int64_t line = 1, row_line = 1;
    auto end_row = [&] {
        fields.push_back(field);
        const bool blank = fields.size() == 1 && fields[0].empty() && !field_started;
        if (!blank) rows.emplace_back(row_line, fields);
        fields.clear();
        field.clear();
        field_started = false;
    };
    for (size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (quoted) {
            if (c == '"') {
                if (i + 1 < text.size() && text[i + 1] == '"') {
                    field.push_back('"');
                    ++i;
                } else {
                    quoted = false;
                }
            } else {
                if (c == '\n') ++line;
                field.push_back(c);
            }
            continue;
        }
        if (c == '"') {
            quoted = true;
            field_started = true;
        } else if (c == ',') {
            fields.push_back(field);
            field.clear();
            field_started = true;
        } else if (c == '\r' || c == '\n') {
            if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
            end_row();
            ++line;
            row_line = line;
        } else {
            field.push_back(c);
            field_started = true;
        }
    }
    if (quoted) throw Error(path + ": line " + std::to_string(row_line) + ": unterminated quoted field");
    if (!field.empty() || !fields.empty() || field_started) end_row();
    return rows;
}

int find_column(const std::vector<std::string>& header, std::initializer_list<const char*> names) {
    for (const char* name : names)
        for (size_t i = 0; i < header.size(); ++i)
            if (header[i] == name) return static_cast<int>(i);
    return -1;
}

}  // namespace

void write_records_file(const std::string& path, const std::vector<TrainRecord>& records) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& r : records) j.push_back({{"image", r.image_path}, {"caption", r.caption}, {"liked", r.desirable}});
    const std::string text = j.dump(1);
    write_file_atomic(path, std::vector<uint8_t>(text.begin(), text.end()));
}

std::vector<TrainRecord> read_records_file(const std::string& path) {
    const nlohmann::json j = read_json_file(path);
    if (!j.is_array()) throw Error(path + ": expected a JSON array of {\"image\", \"caption\", \"liked\"} entries");
    std::vector<TrainRecord> out;
    out.reserve(j.size());
    for (size_t i = 0; i < j.size(); ++i) {
        const auto& e = j[i];
        const auto where = path + ": entry " + std::to_string(i + 1);
        if (!e.is_object() || !e.contains("image") || !e["image"].is_string() || !e.contains("liked") ||
            !e["liked"].is_boolean() || (e.contains("caption") && !e["caption"].is_string()))
            throw Error(where + ": expected {\"image\": path, \"caption\": text, \"liked\": true|false}");
        out.push_back({e["image"].get<std::string>(), e.value("caption", std::string()), e["liked"].get<bool>()});
    }
    return out;
}

std::vector<TrainRecord> read_dataset_folder(const std::string& dir, const DatasetFolderOptions& options) {
    const fs::path root(dir);
    const fs::path csv = root / options.csv_name;
    if (!fs::is_directory(root)) throw Error(dir + ": dataset folder not found");
    if (!fs::exists(csv)) throw Error(csv.string() + ": not found (an exported dataset folder holds "
                                      "train_processed_v3.csv and train/)");
    const auto rows = parse_csv(csv.string());
    if (rows.empty()) throw Error(csv.string() + ": empty file (no header row)");
    const auto& header = rows[0].second;
    const int c_path = find_column(header, {"file_path", "file_name"});
    const int c_label = find_column(header, {"label", "split"});
    const int c_caption = find_column(header, {"caption"});
    if (c_path < 0) throw Error(csv.string() + ": missing column 'file_path' (or 'file_name')");
    if (c_label < 0) throw Error(csv.string() + ": missing column 'label' (or 'split')");

    std::vector<TrainRecord> records;
    for (size_t r = 1; r < rows.size(); ++r) {
        const auto& [line, f] = rows[r];
        const std::string where = csv.string() + ": line " + std::to_string(line);
        if (f.size() != header.size())
            throw Error(where + ": " + std::to_string(f.size()) + " fields, the header has " +
                        std::to_string(header.size()));
        const std::string& label = f[static_cast<size_t>(c_label)];
        TrainRecord rec;
        if (label == "exclusive_win" || label == "1") {
            rec.desirable = true;
        } else if (label == "exclusive_lose" || label == "0") {
            rec.desirable = false;
        } else if (label == "intersections") {
            if (!options.intersections_desirable) continue;
            rec.desirable = true;
        } else {
            throw Error(where + ": unknown label '" + label +
                        "' (expected exclusive_win, exclusive_lose or intersections)");
        }
        const std::string& rel = f[static_cast<size_t>(c_path)];
        if (rel.empty()) throw Error(where + ": empty image path");
        fs::path p = fs::path(rel).is_absolute() ? fs::path(rel) : root / rel;
        if (!fs::exists(p) && fs::exists(root / "train" / rel)) p = root / "train" / rel;
        rec.image_path = p.string();
        rec.caption = c_caption >= 0 ? f[static_cast<size_t>(c_caption)] : std::string();
        records.push_back(std::move(rec));
    }
    return records;
}

torch::Tensor preprocess_rgb(const uint8_t* rgb, int width, int height, int resolution) {
    if (resolution <= 0) throw Error("training resolution must be positive");
    auto img = torch::from_blob(const_cast<uint8_t*>(rgb), {height, width, 3}, torch::kUInt8)
                   .permute({2, 0, 1})
                   .to(torch::kFloat)
                   .div(255.0)
                   .unsqueeze(0);
    // Shorter side to `resolution`, the longer scaled alike (torchvision Resize(int) rounding).
    int64_t new_h, new_w;
    if (height <= width) {
        new_h = resolution;
        new_w = static_cast<int64_t>(static_cast<double>(resolution) * width / height);
    } else {
        new_w = resolution;
        new_h = static_cast<int64_t>(static_cast<double>(resolution) * height / width);
    }
    if (new_h != height || new_w != width) {
        const bool shrink = new_h < height;
        namespace F = torch::nn::functional;
        img = F::interpolate(img, F::InterpolateFuncOptions()
                                      .size(std::vector<int64_t>{new_h, new_w})
                                      .mode(torch::kBilinear)
                                      .align_corners(false)
                                      .antialias(shrink));
    }
    // Centre crop (torchvision: top = round((h - R) / 2)).
    const int64_t top = static_cast<int64_t>(std::round((new_h - resolution) / 2.0));
    const int64_t left = static_cast<int64_t>(std::round((new_w - resolution) / 2.0));
    img = img.index({0, torch::indexing::Slice(), torch::indexing::Slice(top, top + resolution),
                     torch::indexing::Slice(left, left + resolution)});
    return img.clamp(0.0, 1.0).mul(2.0).sub(1.0).contiguous();
}

torch::Tensor load_training_image(const std::string& path, int resolution) {
    const RgbImage img = read_image_rgb8(path);
    return preprocess_rgb(img.pixels.data(), img.width, img.height, resolution);
}

std::vector<std::string> check_records(const std::vector<TrainRecord>& records, ObjectiveKind objective,
                                       bool allow_one_class) {
    std::vector<std::string> warnings;
    if (records.empty())
        throw Error("the training set is empty: label some images (like / dislike) or choose a dataset "
                    "folder with rows in train_processed_v3.csv");
    size_t liked = 0;
    for (const auto& r : records) liked += r.desirable ? 1 : 0;
    const size_t disliked = records.size() - liked;
    const std::string counts =
        std::to_string(liked) + " liked, " + std::to_string(disliked) + " disliked";
    if (objective == ObjectiveKind::sft) {
        if (liked == 0)
            throw Error("SFT trains on liked images only, and the training set has none (" + counts + ")");
        return warnings;
    }
    if (liked == 0 || disliked == 0) {
        const std::string which = liked == 0 ? "disliked" : "liked";
        if (objective == ObjectiveKind::dpo)
            throw Error("the training set holds only " + which + " images (" + counts +
                        "): Diffusion-DPO needs liked and disliked images of the same prompt");
        if (!allow_one_class)
            throw Error("the training set holds only " + which + " images (" + counts +
                        "): KTO learns from both likes and dislikes; label some of the other kind, "
                        "or pass --allow-one-class to train anyway");
        warnings.push_back("training on " + which + " images only (" + counts + ")");
    }
    return warnings;
}

std::vector<std::pair<size_t, size_t>> make_dpo_pairs(const std::vector<TrainRecord>& records) {
    std::map<std::string, std::pair<std::vector<size_t>, std::vector<size_t>>> by_caption;
    for (size_t i = 0; i < records.size(); ++i) {
        auto& slot = by_caption[records[i].caption];
        (records[i].desirable ? slot.first : slot.second).push_back(i);
    }
    std::vector<std::pair<size_t, size_t>> pairs;
    for (const auto& [caption, sides] : by_caption)
        for (size_t w : sides.first)
            for (size_t l : sides.second) pairs.emplace_back(w, l);
    if (pairs.empty())
        throw Error("Diffusion-DPO needs a liked and a disliked image of the same prompt, and no prompt "
                    "in the training set has both (" + std::to_string(records.size()) + " images, " +
                    std::to_string(by_caption.size()) + " prompts)");
    return pairs;
}

BatchSampler::BatchSampler(const std::vector<bool>& desirable, double positive_ratio, uint64_t seed)
    : positive_ratio_(positive_ratio), engine_(seed) {
    if (!(positive_ratio >= 0.0 && positive_ratio <= 1.0))
        throw Error("positive_ratio must lie in [0, 1], got " + std::to_string(positive_ratio));
    for (size_t i = 0; i < desirable.size(); ++i)
        (desirable[i] ? desirable_ : undesirable_).push_back(i);
    if (desirable.empty()) throw Error("the training set is empty");
}

double BatchSampler::uniform() {
    // 53 random bits -> [0, 1): exact and identical on every platform (unlike std distributions).
    return static_cast<double>(engine_() >> 11) * (1.0 / 9007199254740992.0);
}

size_t BatchSampler::next_index() {
    const bool pick_desirable =
        undesirable_.empty() || (!desirable_.empty() && uniform() < positive_ratio_);
    const auto& pool = pick_desirable ? desirable_ : undesirable_;
    return pool[static_cast<size_t>(uniform() * static_cast<double>(pool.size()))];
}

std::string BatchSampler::state() const {
    std::ostringstream os;
    os << engine_;
    return os.str();
}

void BatchSampler::set_state(const std::string& state) {
    std::istringstream is(state);
    std::mt19937_64 e;
    is >> e;
    if (is.fail()) throw Error("checkpoint: malformed data sampler state");
    engine_ = e;
}

}  // namespace kto
