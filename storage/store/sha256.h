#pragma once
// The store's content addresses use the one SHA-256 in core/common/sha256.h (header-only).
#include "core/common/sha256.h"

namespace kto::storage {
using kto::Sha256;
using kto::sha256_file_hex;
using kto::sha256_hex;
}  // namespace kto::storage
