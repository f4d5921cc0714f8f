#pragma once
// Creation times are ISO-8601 UTC text with milliseconds ("2026-11-25T18:54:15.123Z"): readable in
// the database and ordered correctly as plain strings.
#include <string>

namespace kto::storage {

// The current time in the stored format.
std::string utc_now_iso();

// Turns a user's date filter into a bound comparable with stored times. Accepts "YYYY-MM-DD",
// "YYYY-MM-DDTHH:MM", "YYYY-MM-DDTHH:MM:SS" and "YYYY-MM-DDTHH:MM:SS.mmm", with an optional "Z"
// (times are UTC; a space may replace the "T"). A date alone means the start of that day for a
// lower bound and its end for an upper bound, so `--until 2026-11-25` includes the 25th.
// Throws kto::Error naming `what` (e.g. "--since") for anything else.
std::string iso_bound(const std::string& text, bool upper, const std::string& what);

}  // namespace kto::storage
