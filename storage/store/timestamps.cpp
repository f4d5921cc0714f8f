#include "storage/store/timestamps.h"

#include <chrono>
#include <cstdio>
#include <ctime>

#include "core/common/error.h"

namespace kto::storage {

std::string utc_now_iso() {
    using namespace std::chrono;
    const auto now = system_clock::now();
    const auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count();
    const std::time_t secs = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(ms % 1000));
    return buf;
}

namespace {

bool digits_at(const std::string& s, std::size_t pos, std::size_t count) {
    if (pos + count > s.size()) return false;
    for (std::size_t i = pos; i < pos + count; ++i) {
        if (s[i] < '0' || s[i] > '9') return false;
    }
    return true;
}

int number_at(const std::string& s, std::size_t pos, std::size_t count) {
    return std::stoi(s.substr(pos, count));
}

}  // namespace

std::string iso_bound(const std::string& text, bool upper, const std::string& what) {
    const auto fail = [&]() -> Error {
        return Error(what + ": '" + text +
                     "' is not an ISO-8601 UTC date or time (expected YYYY-MM-DD or "
                     "YYYY-MM-DDTHH:MM[:SS[.mmm]][Z])");
    };
    std::string s = text;
    if (!s.empty() && (s.back() == 'Z' || s.back() == 'z')) s.pop_back();
    if (!(digits_at(s, 0, 4) && s.size() >= 10 && s[4] == '-' && digits_at(s, 5, 2) &&
          s[7] == '-' && digits_at(s, 8, 2))) {
        throw fail();
    }
    const int month = number_at(s, 5, 2), day = number_at(s, 8, 2);
    if (month < 1 || month > 12 || day < 1 || day > 31) throw fail();
    std::string date = s.substr(0, 10);
    if (s.size() == 10) return date + (upper ? "T23:59:59.999Z" : "T00:00:00.000Z");
    if (s[10] != 'T' && s[10] != 't' && s[10] != ' ') throw fail();
    if (!(s.size() >= 16 && digits_at(s, 11, 2) && s[13] == ':' && digits_at(s, 14, 2))) {
        throw fail();
    }
    const int hour = number_at(s, 11, 2), minute = number_at(s, 14, 2);
    if (hour > 23 || minute > 59) throw fail();
    std::string hm = s.substr(11, 5);
    if (s.size() == 16) return date + "T" + hm + (upper ? ":59.999Z" : ":00.000Z");
    if (!(s.size() >= 19 && s[16] == ':' && digits_at(s, 17, 2)) || number_at(s, 17, 2) > 60) {
        throw fail();
    }
    std::string hms = s.substr(11, 8);
    if (s.size() == 19) return date + "T" + hms + (upper ? ".999Z" : ".000Z");
    if (!(s.size() == 23 && s[19] == '.' && digits_at(s, 20, 3))) throw fail();
    return date + "T" + s.substr(11, 12) + "Z";
}

}  // namespace kto::storage
