#pragma once
// Ingest endpoints without the HTTP layer: decode a request body, check every series against
// the limits, feed valid samples to the engine, and return the HTTP status and body to send.
// A rejected series never drops the valid rest of its request.

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/config.hpp"
#include "rules/engine.hpp"

namespace tocsin {

enum class reject_reason : std::uint8_t {
    malformed,            // the body cannot be decoded at all
    too_many_samples,     // the request contains more than max_samples_per_request
    too_many_labels,
    label_name_too_long,
    label_value_too_long,
    invalid_utf8,
    invalid_label_name,   // empty or whitespace-only name
    duplicate_label_name,
    unsorted_labels,      // remote_write requires names in byte order
    missing_metric_name,
    series_limit,
    out_of_order,
    duplicate_sample,
    too_far_in_future,    // the timestamp is more than limits.max_future_skew ahead of the server clock
    too_old,              // the timestamp is more than limits.max_sample_age behind the server clock
    count_
};

constexpr std::size_t reject_reason_count = static_cast<std::size_t>(reject_reason::count_);

// The metric label value: "too_many_labels", ...
const char* to_string(reject_reason r);

// Cumulative counters, owned by the daemon and exported on /metrics.
struct ingest_counters {
    std::uint64_t samples_accepted = 0;
    std::uint64_t stale_markers = 0;
    std::array<std::uint64_t, reject_reason_count> samples_rejected{};
};

struct ingest_outcome {
    int http_status = 204;
    std::string body;         // human-readable; empty on success for remote_write
    std::string content_type; // of `body`
    std::size_t accepted = 0;
    std::size_t rejected = 0;
};

// POST /api/v1/write: Prometheus remote_write 1.0 (snappy block format, protobuf
// WriteRequest). `content_type` and `content_encoding` are the request headers, empty when absent.
ingest_outcome ingest_remote_write(std::string_view body, std::string_view content_type,
                                   std::string_view content_encoding, engine& eng,
                                   const ingest_limits& limits, ingest_counters& counters);

// POST /api/v1/push: the JSON batch documented in docs/CONFIGURATION.md. Samples without a
// timestamp take `now`.
ingest_outcome ingest_json(std::string_view body, engine& eng, const ingest_limits& limits,
                           ingest_counters& counters, time_ms now);

// Building blocks shared by the ingest endpoints. Not part of the daemon's public API.
namespace ingest_detail {

// At most this many problem messages go into one response; the rest are only counted.
constexpr std::size_t max_messages = 10;

// Checks one series against the limits: label count, name and value lengths, UTF-8, empty or
// whitespace-only names, duplicate names (and, when `require_sorted`, byte order of names)
// and the presence of __name__. Labels with an empty value pass, and the caller drops them
// before calling the engine. Returns true when valid. Otherwise sets `reason`, and `*message`
// when `message` is not null, so that callers past the message cap skip the formatting.
// `label_count` is the number of labels sent, which may exceed `labels.size()` when the
// caller stopped storing them past the limit.
bool validate_series(std::span<const label_view> labels, std::size_t label_count,
                     const ingest_limits& limits, bool require_sorted, reject_reason& reason,
                     std::string* message);

// Removes labels with an empty value in place, because Prometheus treats them as absent.
void drop_empty_values(std::vector<label_view>& labels);

// Feeds one sample of a validated series to the engine and updates `counters`. Returns false
// when the sample counts as rejected and then sets `reason`, and `*message` when `message` is
// not null. A duplicate sample (a sender retry) and a stale marker return true.
bool ingest_sample(engine& eng, std::span<const label_view> sorted_labels, time_ms timestamp,
                   double value, ingest_counters& counters, reject_reason& reason,
                   std::string* message);

// Prometheus notation of a series, escaped and cut on a UTF-8 boundary after about 200 bytes.
std::string describe_series(std::span<const label_view> labels);

// `text` in double quotes for a message: quotes, backslashes, control characters and invalid
// UTF-8 bytes escaped, cut with "..." on a UTF-8 boundary after about `max_bytes` bytes.
std::string quote_text(std::string_view text, std::size_t max_bytes = 64);

} // namespace ingest_detail

} // namespace tocsin
