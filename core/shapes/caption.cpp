#include "core/shapes/caption.h"

#include <cctype>
#include <sstream>

#include "core/common/error.h"

namespace kto::shapes {

PromptRequest full_request(const Scene& scene) {
    PromptRequest req;
    for (const Shape& s : scene.shapes) req.shapes.push_back({s.cls, s.colour, s.size, s.position});
    req.background = scene.background;
    return req;
}

PromptRequest sample_request(const Scene& scene, Rng& rng, const CaptionOptions& options) {
    PromptRequest req;
    for (const Shape& s : scene.shapes) {
        ShapeRequest r;
        r.cls = s.cls;
        if (rng.chance(options.p_size)) r.size = s.size;
        if (rng.chance(options.p_colour)) r.colour = s.colour;
        if (rng.chance(options.p_position)) r.position = s.position;
        req.shapes.push_back(r);
    }
    if (rng.chance(options.p_background)) req.background = scene.background;
    return req;
}

namespace {

std::string article_for(const std::string& next_word) {
    return std::string("aeiou").find(next_word.front()) != std::string::npos ? "an" : "a";
}

std::string where_phrase(Position p) {
    switch (p) {
        case Position::Centre: return "in the centre";
        case Position::Left: return "on the left";
        case Position::Right: return "on the right";
        default: return "at the " + name(p);
    }
}

}  // namespace

namespace {

// The caption's words in order; `spans` (if given) gets each shape's attribute-word indices, those
// of the kinds `kinds` picks.
std::vector<std::string> caption_word_list(const PromptRequest& request, std::vector<std::vector<int>>* spans,
                                           const AttributeWordKinds& kinds = {}) {
    if (request.shapes.empty()) throw Error("format_caption: a caption needs at least one shape");
    std::vector<std::string> out;
    auto add_phrase = [&out](const std::string& phrase) {
        std::istringstream in(phrase);
        for (std::string w; in >> w;) out.push_back(w);
    };
    for (size_t i = 0; i < request.shapes.size(); ++i) {
        const ShapeRequest& s = request.shapes[i];
        std::vector<std::pair<std::string, bool>> words;  // each word, and whether its kind is listed
        if (s.size) words.emplace_back(name(*s.size), kinds.size);
        if (s.colour) words.emplace_back(name(*s.colour), kinds.colour);
        words.emplace_back(name(s.cls), kinds.cls);
        if (i > 0) out.push_back("and");
        out.push_back(article_for(words.front().first));
        std::vector<int> span;
        for (const auto& [w, listed] : words) {
            if (listed) span.push_back(int(out.size()));
            out.push_back(w);
        }
        if (spans) spans->push_back(std::move(span));
        if (s.position) add_phrase(where_phrase(*s.position));
    }
    if (request.background) {
        const std::string c = name(*request.background);
        add_phrase("on " + article_for(c) + " " + c + " background");
    }
    return out;
}

}  // namespace

std::string format_caption(const PromptRequest& request) {
    std::string text;
    for (const auto& w : caption_word_list(request, nullptr)) text += (text.empty() ? "" : " ") + w;
    return text;
}

std::vector<std::vector<int>> shape_attribute_words(const PromptRequest& request, const AttributeWordKinds& kinds) {
    std::vector<std::vector<int>> spans;
    caption_word_list(request, &spans, kinds);
    return spans;
}

std::string sample_caption(const Scene& scene, Rng& rng, const CaptionOptions& options) {
    return format_caption(sample_request(scene, rng, options));
}

namespace {

class Reader {
public:
    explicit Reader(const std::string& text) : text_(text) {
        std::string cleaned;
        for (char ch : text) {
            const auto u = static_cast<unsigned char>(ch);
            if (ch == '.' || ch == ',' || ch == '!') cleaned += ' ';
            else cleaned += static_cast<char>(std::tolower(u));
        }
        std::istringstream in(cleaned);
        for (std::string w; in >> w;) words_.push_back(w);
    }
    bool done() const { return pos_ >= words_.size(); }
    const std::string& peek(size_t ahead = 0) const {
        static const std::string empty;
        return pos_ + ahead < words_.size() ? words_[pos_ + ahead] : empty;
    }
    void skip(size_t n = 1) { pos_ += n; }
    [[noreturn]] void fail(const std::string& expected) const {
        const std::string got = done() ? "the end of the prompt" : "'" + peek() + "'";
        throw Error("prompt \"" + text_ + "\" is outside the shapes caption grammar: expected " +
                    expected + ", found " + got);
    }
    void expect(const std::string& word) {
        if (peek() != word) fail("'" + word + "'");
        skip();
    }

private:
    std::string text_;
    std::vector<std::string> words_;
    size_t pos_ = 0;
};

template <typename E, size_t N>
std::optional<E> match(const std::array<E, N>& all, const std::string& word) {
    for (E e : all)
        if (name(e) == word) return e;
    return std::nullopt;
}

std::optional<Position> read_where(Reader& r) {
    if (r.peek() == "in" && r.peek(1) == "the" &&
        (r.peek(2) == "centre" || r.peek(2) == "center" || r.peek(2) == "middle")) {
        r.skip(3);
        return Position::Centre;
    }
    if (r.peek() == "on" && r.peek(1) == "the" && (r.peek(2) == "left" || r.peek(2) == "right")) {
        const bool left = r.peek(2) == "left";
        r.skip(3);
        return left ? Position::Left : Position::Right;
    }
    if (r.peek() == "at" && r.peek(1) == "the" && (r.peek(2) == "top" || r.peek(2) == "bottom")) {
        const bool top = r.peek(2) == "top";
        r.skip(3);
        if (r.peek() == "left" || r.peek() == "right") {
            const bool left = r.peek() == "left";
            r.skip();
            if (top) return left ? Position::TopLeft : Position::TopRight;
            return left ? Position::BottomLeft : Position::BottomRight;
        }
        return top ? Position::Top : Position::Bottom;
    }
    return std::nullopt;
}

ShapeRequest read_shape(Reader& r) {
    if (r.peek() != "a" && r.peek() != "an") r.fail("'a' or 'an'");
    r.skip();
    ShapeRequest s;
    if (auto size = match(kAllSizes, r.peek())) {
        s.size = size;
        r.skip();
    }
    if (auto colour = match(kAllColours, r.peek())) {
        s.colour = colour;
        r.skip();
    }
    auto cls = match(kAllClasses, r.peek());
    if (!cls) r.fail("a shape (circle, square, triangle or star)");
    s.cls = *cls;
    r.skip();
    s.position = read_where(r);
    return s;
}

}  // namespace

PromptRequest parse_caption(const std::string& text) {
    Reader r(text);
    PromptRequest req;
    req.shapes.push_back(read_shape(r));
    if (r.peek() == "and") {
        r.skip();
        req.shapes.push_back(read_shape(r));
    }
    if (r.peek() == "on") {
        r.skip();
        if (r.peek() != "a" && r.peek() != "an") r.fail("'a' or 'an'");
        r.skip();
        auto bg = match(kAllColours, r.peek());
        if (!bg) r.fail("a colour");
        r.skip();
        r.expect("background");
        req.background = bg;
    }
    if (!r.done()) r.fail("the end of the prompt");
    return req;
}

std::optional<PromptRequest> try_parse_caption(const std::string& text) {
    try {
        return parse_caption(text);
    } catch (const Error&) {
        return std::nullopt;
    }
}

std::vector<std::string> caption_words() {
    std::vector<std::string> w = {"a", "an", "and", "on", "in", "at", "the", "background",
                                  "centre", "left", "right", "top", "bottom"};
    for (auto c : kAllClasses) w.push_back(name(c));
    for (auto c : kAllColours) w.push_back(name(c));
    for (auto s : kAllSizes) w.push_back(name(s));
    return w;
}

}  // namespace kto::shapes
