#pragma once
// A duration as the CLI prints it in progress lines: "42s", "3m07s", "1h23m"; "?" when unknown (negative
// or not finite).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>

namespace kto::cli {

inline std::string duration_text(double s) {
    if (!std::isfinite(s) || s < 0) return "?";
    const auto t = static_cast<int64_t>(s + 0.5);
    char buf[32];
    if (t >= 3600)
        std::snprintf(buf, sizeof buf, "%lldh%02lldm", (long long)(t / 3600), (long long)(t % 3600 / 60));
    else if (t >= 60)
        std::snprintf(buf, sizeof buf, "%lldm%02llds", (long long)(t / 60), (long long)(t % 60));
    else
        std::snprintf(buf, sizeof buf, "%llds", (long long)t);
    return buf;
}

}  // namespace kto::cli
