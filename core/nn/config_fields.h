#pragma once
// Typed reads of diffusers config.json fields with errors that name the field (internal to core/nn).
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "core/common/error.h"

namespace kto::config_fields {

// `what` names the config in messages, e.g. "UNet config".
// At most 60 characters of the value, for messages (a config can hold a 10 MB string).
inline std::string dump(const nlohmann::json& v) {
    std::string s = v.dump();
    if (s.size() > 60) s = s.substr(0, 57) + "...";
    return s;
}

inline bool has(const nlohmann::json& j, const char* key) {
    return j.contains(key) && !j.at(key).is_null();
}

inline const nlohmann::json& require(const nlohmann::json& j, const char* key, const std::string& what) {
    if (!has(j, key)) throw Error(what + ": missing '" + key + "'");
    return j.at(key);
}

inline int64_t to_int(const nlohmann::json& v, const char* key, const std::string& what) {
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
        throw Error(what + ": '" + key + "' is out of range, got " + dump(v));
    if (v.is_number_integer() || v.is_number_unsigned()) return v.get<int64_t>();
    // 1e300 or NaN cast to an integer is undefined behaviour: range-check first (found by fuzzing).
    if (v.is_number_float()) {
        const double d = v.get<double>();
        if (d >= -9.2e18 && d <= 9.2e18 && d == std::trunc(d)) return static_cast<int64_t>(d);
    }
    throw Error(what + ": '" + key + "' must be an integer, got " + dump(v));
}

inline int64_t get_int(const nlohmann::json& j, const char* key, int64_t def, const std::string& what) {
    return has(j, key) ? to_int(j.at(key), key, what) : def;
}

inline double get_double(const nlohmann::json& j, const char* key, double def, const std::string& what) {
    if (!has(j, key)) return def;
    const auto& v = j.at(key);
    if (!v.is_number()) throw Error(what + ": '" + key + "' must be a number, got " + dump(v));
    return v.get<double>();
}

inline bool get_bool(const nlohmann::json& j, const char* key, bool def, const std::string& what) {
    if (!has(j, key)) return def;
    const auto& v = j.at(key);
    if (!v.is_boolean()) throw Error(what + ": '" + key + "' must be true or false, got " + dump(v));
    return v.get<bool>();
}

inline std::string get_string(const nlohmann::json& j, const char* key, const std::string& def,
                              const std::string& what) {
    if (!has(j, key)) return def;
    const auto& v = j.at(key);
    if (!v.is_string()) throw Error(what + ": '" + key + "' must be a string, got " + dump(v));
    return v.get<std::string>();
}

inline std::vector<int64_t> int_list(const nlohmann::json& v, const char* key, const std::string& what) {
    if (!v.is_array() || v.empty()) throw Error(what + ": '" + key + "' must be a non-empty list of integers, got " + dump(v));
    std::vector<int64_t> out;
    for (const auto& e : v) out.push_back(to_int(e, key, what));
    return out;
}

inline std::vector<std::string> string_list(const nlohmann::json& v, const char* key, const std::string& what) {
    if (!v.is_array() || v.empty()) throw Error(what + ": '" + key + "' must be a non-empty list of strings, got " + dump(v));
    std::vector<std::string> out;
    for (const auto& e : v) {
        if (!e.is_string()) throw Error(what + ": '" + key + "' must be a list of strings, got " + dump(v));
        out.push_back(e.get<std::string>());
    }
    return out;
}

// An int or a per-block list of `n` ints (diffusers accepts both for several UNet fields).
inline std::vector<int64_t> per_block_ints(const nlohmann::json& j, const char* key, int64_t def,
                                           size_t n, const std::string& what) {
    if (!has(j, key)) return std::vector<int64_t>(n, def);
    const auto& v = j.at(key);
    if (v.is_array()) {
        auto list = int_list(v, key, what);
        if (list.size() != n)
            throw Error(what + ": '" + key + "' has " + std::to_string(list.size()) + " entries, expected " +
                        std::to_string(n) + " (one per down block)");
        return list;
    }
    return std::vector<int64_t>(n, to_int(v, key, what));
}

// Throws unless the field is absent/null or equals one of the accepted values.
inline void require_one_of(const nlohmann::json& j, const char* key, const std::vector<nlohmann::json>& ok,
                           const std::string& what, const std::string& why = {}) {
    if (!has(j, key)) return;
    for (const auto& v : ok)
        if (j.at(key) == v) return;
    throw Error(what + ": unsupported '" + key + "' = " + dump(j.at(key)) + (why.empty() ? "" : " (" + why + ")"));
}

// Throws unless the field is absent or null.
inline void require_null(const nlohmann::json& j, const char* key, const std::string& what,
                         const std::string& why = {}) {
    if (has(j, key))
        throw Error(what + ": unsupported '" + key + "' = " + dump(j.at(key)) + (why.empty() ? "" : " (" + why + ")"));
}

}  // namespace kto::config_fields
