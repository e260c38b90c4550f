#pragma once
// SHA-256 (OpenSSL) for idempotency keys, run ids and the audit log's hash chain.

#include <string>
#include <string_view>

namespace tocsin::runbooks {

// Lower-case hex of SHA-256 over `data`: 64 characters.
std::string sha256_hex(std::string_view data);

} // namespace tocsin::runbooks
