#pragma once
// Reads the reference distribution of a psi or ks rule (`reference: file`) from a file, once at
// load time. Three formats are accepted:
//
//   {"edges": [0, 1.5, 3, 10], "shares": [0.25, 0.5, 0.25]}   psi bins and reference shares
//   {"values": [1.2, 0.7, 3.1]}                                 raw reference values
//   a text or CSV file with one number per line, after an optional header line (raw values)
//
// Edges must not decrease and there is one more edge than shares. Shares are >= 0 and sum to 1
// within 1e-6. Every number must be finite. A file is at most max_config_file_bytes and holds at
// most max_drift_reference_values numbers per list.
//
// Thread safety: read_drift_reference shares no state and may run on any thread.

#include <cstddef>
#include <optional>
#include <string>

#include "rules/detector.hpp"

namespace tocsin {

// Maximum count of numbers in one list of a reference file. Each ks computation copies and sorts
// the reference values, so this also bounds the cost of one computation: about 15 ms for
// 100,000 values against a window of 1,000 (measured with g++ 12 -O2 on one AMD EPYC core).
inline constexpr std::size_t max_drift_reference_values = 100'000;

// The tolerance on the sum of the shares: they must sum to 1 within this.
inline constexpr double drift_reference_share_tolerance = 1e-6;

// Reads and validates a reference file. On failure returns nothing and sets `error` to a message
// that starts with the path and names the line or field, what is wrong and what is expected.
std::optional<drift_reference_data> read_drift_reference(const std::string& path, std::string& error);

} // namespace tocsin
