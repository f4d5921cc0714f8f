// Library identity of kto_storage (keeps the target non-empty before the store lands).
#include <sqlite3.h>

namespace kto::storage {
const char* sqlite_library_version() { return sqlite3_libversion(); }
}  // namespace kto::storage
