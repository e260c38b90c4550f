#pragma once
// Reads configuration, rule and token files with limits, so that a glob matching a FIFO, a
// device such as /dev/zero or a huge file fails with a message instead of hanging the
// daemon or exhausting its memory.

#include <cstddef>
#include <string>

namespace tocsin {

// Largest configuration or rule file read: 16 MiB.
constexpr std::size_t max_config_file_bytes = 16u << 20;

// Reads a regular file of at most `max_bytes`. On failure returns false and sets `error` to
// the reason without the path ("is a FIFO, not a regular file", "is 20971520 bytes, more than
// the 16777216 bytes a configuration file may have").
bool read_regular_file(const std::string& path, std::size_t max_bytes, std::string& content, std::string& error);

} // namespace tocsin
