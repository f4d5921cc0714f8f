#include "core/shapes/scorer.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "core/common/error.h"

namespace kto::shapes {

namespace {

double dist2(Rgb a, Rgb b) {
    const double dr = double(a.r) - b.r, dg = double(a.g) - b.g, db = double(a.b) - b.b;
    return dr * dr + dg * dg + db * db;
}

// Pixels this far (RGB distance) from the background colour count as foreground.
constexpr double kForegroundDistance = 60.0;

Size size_from_extent(double side_fraction) {
    if (side_fraction < 0.27) return Size::Small;
    if (side_fraction < 0.41) return Size::Medium;
    return Size::Large;
}

Position position_from_centre(double x, double y) {
    const int sx = x < 0.375 ? -1 : (x > 0.625 ? 1 : 0);
    const int sy = y < 0.375 ? -1 : (y > 0.625 ? 1 : 0);
    if (sy < 0) return sx < 0 ? Position::TopLeft : (sx > 0 ? Position::TopRight : Position::Top);
    if (sy > 0)
        return sx < 0 ? Position::BottomLeft : (sx > 0 ? Position::BottomRight : Position::Bottom);
    return sx < 0 ? Position::Left : (sx > 0 ? Position::Right : Position::Centre);
}

// Class from shape statistics: triangles hold most mass low, squares fill their box and corners,
// circles leave the corners empty, stars fill little of their box.
ShapeClass class_from_features(double fill, double bottom_share, double corner_share) {
    if (bottom_share > 0.64) return ShapeClass::Triangle;
    if (corner_share > 0.6 && fill > 0.82) return ShapeClass::Square;
    if (fill > 0.6) return ShapeClass::Circle;
    if (bottom_share > 0.6) return ShapeClass::Triangle;
    return ShapeClass::Star;
}

}  // namespace

Colour nearest_colour(Rgb c) {
    Colour best = Colour::Black;
    double best_d = 1e18;
    for (Colour k : kAllColours) {
        const double d = dist2(c, colour_rgb(k));
        if (d < best_d) best_d = d, best = k;
    }
    return best;
}

Colour nearest_colour_except(Rgb c, Colour excluded) {
    Colour best = excluded;
    double best_d = 1e18;
    for (Colour k : kAllColours) {
        if (k == excluded) continue;
        const double d = dist2(c, colour_rgb(k));
        if (d < best_d) best_d = d, best = k;
    }
    return best;
}

SceneEstimate estimate_scene(const Image& img) {
    const int w = img.width, h = img.height;
    if (w < 8 || h < 8 || img.rgb.size() != size_t(w) * size_t(h) * 3)
        throw Error("shapes scorer: image must be at least 8x8 RGB with a matching pixel buffer");
    SceneEstimate est;

    // Background: per-channel median of the two-pixel border ring.
    std::array<std::vector<int>, 3> ring;
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
            if (x < 2 || y < 2 || x >= w - 2 || y >= h - 2) {
                const Rgb p = img.at(x, y);
                ring[0].push_back(p.r), ring[1].push_back(p.g), ring[2].push_back(p.b);
            }
    uint8_t med[3];
    for (int k = 0; k < 3; ++k) {
        auto& v = ring[size_t(k)];
        std::nth_element(v.begin(), v.begin() + long(v.size() / 2), v.end());
        med[k] = static_cast<uint8_t>(v[v.size() / 2]);
    }
    est.background_rgb = {med[0], med[1], med[2]};
    est.background = nearest_colour(est.background_rgb);

    // Foreground mask and connected components (8-connectivity).
    const size_t n = size_t(w) * size_t(h);
    std::vector<uint8_t> fg(n, 0);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
            fg[size_t(y) * w + x] =
                std::sqrt(dist2(img.at(x, y), est.background_rgb)) > kForegroundDistance;
    std::vector<int> label(n, -1);
    std::vector<std::vector<int>> comps;
    for (size_t start = 0; start < n; ++start) {
        if (!fg[start] || label[start] >= 0) continue;
        const int id = int(comps.size());
        comps.emplace_back();
        std::vector<int> stack{int(start)};
        label[start] = id;
        while (!stack.empty()) {
            const int p = stack.back();
            stack.pop_back();
            comps.back().push_back(p);
            const int px = p % w, py = p / w;
            for (int dy = -1; dy <= 1; ++dy)
                for (int dx = -1; dx <= 1; ++dx) {
                    const int qx = px + dx, qy = py + dy;
                    if (qx < 0 || qy < 0 || qx >= w || qy >= h) continue;
                    const size_t q = size_t(qy) * w + qx;
                    if (fg[q] && label[q] < 0) {
                        label[q] = id;
                        stack.push_back(int(q));
                    }
                }
        }
    }

    double total_cover = 0, warm_cover = 0;
    std::vector<DetectedShape> found;
    for (const auto& comp : comps) {
        // Colour: coverage-weighted vote of each pixel's nearest non-background colour.
        std::array<double, 8> votes{};
        for (int p : comp) {
            const Rgb c = img.at(p % w, p / w);
            const double d = std::sqrt(dist2(c, est.background_rgb));
            votes[size_t(nearest_colour_except(c, est.background))] += d;
        }
        const auto colour = Colour(std::max_element(votes.begin(), votes.end()) - votes.begin());
        // Coverage of each pixel: its projection onto the background -> shape colour line.
        const Rgb sc = colour_rgb(colour), bg = est.background_rgb;
        const double vx = double(sc.r) - bg.r, vy = double(sc.g) - bg.g, vz = double(sc.b) - bg.b;
        const double vv = std::max(1.0, vx * vx + vy * vy + vz * vz);
        DetectedShape s;
        s.colour = colour;
        s.x0 = w, s.y0 = h, s.x1 = -1, s.y1 = -1;
        std::vector<std::pair<int, double>> cover;
        for (int p : comp) {
            const Rgb c = img.at(p % w, p / w);
            const double a = std::clamp(
                ((double(c.r) - bg.r) * vx + (double(c.g) - bg.g) * vy + (double(c.b) - bg.b) * vz) / vv,
                0.0, 1.0);
            cover.emplace_back(p, a);
            s.area += a;
            if (a >= 0.5) {
                const int x = p % w, y = p / w;
                s.x0 = std::min(s.x0, x), s.y0 = std::min(s.y0, y);
                s.x1 = std::max(s.x1, x), s.y1 = std::max(s.y1, y);
            }
        }
        if (s.x1 < 0 || s.area < 6.0) continue;
        const double bw = s.x1 - s.x0 + 1, bh = s.y1 - s.y0 + 1;
        s.fill = s.area / (bw * bh);
        const double mid_y = (s.y0 + s.y1 + 1) / 2.0;
        const double cell_w = bw / 4.0, cell_h = bh / 4.0;
        double low = 0, corner = 0;
        for (const auto& [p, a] : cover) {
            const double x = p % w + 0.5, y = p / w + 0.5;
            if (y > mid_y) low += a;
            const bool cx = x < s.x0 + cell_w || x > s.x1 + 1 - cell_w;
            const bool cy = y < s.y0 + cell_h || y > s.y1 + 1 - cell_h;
            if (cx && cy) corner += a;
        }
        s.bottom_share = low / s.area;
        s.corner_share = corner / (4.0 * cell_w * cell_h);
        s.cls = class_from_features(s.fill, s.bottom_share, s.corner_share);
        s.size = size_from_extent(std::max(bw / w, bh / h));
        s.position = position_from_centre((s.x0 + s.x1 + 1) / 2.0 / w, (s.y0 + s.y1 + 1) / 2.0 / h);
        total_cover += s.area;
        if (is_warm(colour)) warm_cover += s.area;
        found.push_back(s);
    }
    std::sort(found.begin(), found.end(),
              [](const DetectedShape& a, const DetectedShape& b) { return a.area > b.area; });
    // Specks much smaller than the main shape are noise, not shapes.
    for (const auto& s : found)
        if (est.shapes.empty() || s.area >= 0.12 * found.front().area) est.shapes.push_back(s);
    est.foreground_fraction = total_cover / double(n);
    est.warm_share = total_cover > 0 ? warm_cover / total_cover : 0.0;
    return est;
}

namespace {

struct ShapeMatch {
    int colour = 0, size = 0, position = 0, cls = 0;
    int total() const { return colour + size + position + cls; }
};

ShapeMatch compare(const ShapeRequest& r, const DetectedShape* d) {
    ShapeMatch m;
    if (!d) return m;
    m.cls = d->cls == r.cls;
    m.colour = r.colour && *r.colour == d->colour;
    m.size = r.size && *r.size == d->size;
    m.position = r.position && *r.position == d->position;
    return m;
}

}  // namespace

Fidelity fidelity(const SceneEstimate& est, const PromptRequest& req) {
    Fidelity f;
    const size_t k = req.shapes.size();
    // Candidate blobs: the largest ones, as many as the prompt names.
    std::vector<const DetectedShape*> blobs;
    for (size_t i = 0; i < k; ++i) blobs.push_back(i < est.shapes.size() ? &est.shapes[i] : nullptr);
    std::vector<size_t> order(k);
    for (size_t i = 0; i < k; ++i) order[i] = i;
    std::vector<size_t> best_order = order;
    int best = -1;
    do {
        int total = 0;
        for (size_t i = 0; i < k; ++i) total += compare(req.shapes[i], blobs[order[i]]).total();
        if (total > best) best = total, best_order = order;
    } while (std::next_permutation(order.begin(), order.end()));
    for (size_t i = 0; i < k; ++i) {
        const ShapeRequest& r = req.shapes[i];
        const ShapeMatch m = compare(r, blobs[best_order[i]]);
        f.matched.push_back(blobs[best_order[i]] ? int(best_order[i]) : -1);
        f.cls.asked++, f.cls.right += m.cls;
        if (r.colour) f.colour.asked++, f.colour.right += m.colour;
        if (r.size) f.size.asked++, f.size.right += m.size;
        if (r.position) f.position.asked++, f.position.right += m.position;
    }
    f.count.asked = 1;
    f.count.right = est.shapes.size() == k;
    if (req.background) {
        f.background.asked = 1;
        f.background.right = est.background == *req.background;
    }
    return f;
}

Fidelity fidelity(const Image& image, const PromptRequest& request) {
    return fidelity(estimate_scene(image), request);
}

Fidelity fidelity(const Image& image, const std::string& prompt) {
    return fidelity(image, parse_caption(prompt));
}

}  // namespace kto::shapes
