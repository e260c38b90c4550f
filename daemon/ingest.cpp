#include "daemon/ingest.hpp"

#include <algorithm>
#include <chrono>
#include <limits>

#include <fmt/format.h>

#include "daemon/api.hpp"
#include "rules/duration.hpp"

namespace tocsin {

const char* to_string(reject_reason r)
{
    switch (r) {
    case reject_reason::malformed: return "malformed";
    case reject_reason::too_many_samples: return "too_many_samples";
    case reject_reason::too_many_labels: return "too_many_labels";
    case reject_reason::label_name_too_long: return "label_name_too_long";
    case reject_reason::label_value_too_long: return "label_value_too_long";
    case reject_reason::invalid_utf8: return "invalid_utf8";
    case reject_reason::invalid_label_name: return "invalid_label_name";
    case reject_reason::duplicate_label_name: return "duplicate_label_name";
    case reject_reason::unsorted_labels: return "unsorted_labels";
    case reject_reason::missing_metric_name: return "missing_metric_name";
    case reject_reason::series_limit: return "series_limit";
    case reject_reason::out_of_order: return "out_of_order";
    case reject_reason::duplicate_sample: return "duplicate_sample";
    case reject_reason::too_far_in_future: return "too_far_in_future";
    case reject_reason::too_old: return "too_old";
    case reject_reason::count_: break;
    }
    return "unknown";
}

namespace ingest_detail {

namespace {

// Byte budgets of the text that quotes request content in a message.
constexpr std::size_t series_text_bytes = 200;
constexpr std::size_t name_text_bytes = 64;

// Length of the UTF-8 sequence that starts at `text[pos]` when it is well formed, else 0.
std::size_t utf8_sequence_length(std::string_view text, std::size_t pos)
{
    auto lead = static_cast<unsigned char>(text[pos]);
    std::size_t length = 1;
    if (lead >= 0xc2 && lead <= 0xdf) {
        length = 2;
    } else if (lead >= 0xe0 && lead <= 0xef) {
        length = 3;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
        length = 4;
    } else if (lead >= 0x80) {
        return 0;
    }
    if (pos + length > text.size() || !is_valid_utf8(text.substr(pos, length))) {
        return 0;
    }
    return length;
}

// Offset of the first byte that does not start a well-formed UTF-8 sequence, or npos.
std::size_t first_invalid_utf8(std::string_view text)
{
    // Almost every label is valid, so the whole-string check runs first and the byte walk
    // that finds the offset runs only on failure.
    if (is_valid_utf8(text)) {
        return std::string_view::npos;
    }
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t length = utf8_sequence_length(text, pos);
        if (length == 0) {
            return pos;
        }
        pos += length;
    }
    return std::string_view::npos;
}

// Appends `text` inside double quotes, escaping quotes, backslashes, control characters and
// bytes that are not valid UTF-8 (as \xNN), so that the message is printable valid UTF-8.
// Stops with "..." once `out` would grow past `limit` bytes and returns false then.
bool append_quoted(std::string& out, std::string_view text, std::size_t limit)
{
    out.push_back('"');
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t length = utf8_sequence_length(text, pos);
        char piece[8];
        std::size_t piece_length = 0;
        auto byte = static_cast<unsigned char>(text[pos]);
        if (length == 0 || byte < 0x20 || byte == 0x7f) {
            if (byte == '\n') {
                piece_length = static_cast<std::size_t>(fmt::format_to(piece, "\\n") - piece);
            } else {
                piece_length = static_cast<std::size_t>(fmt::format_to(piece, "\\x{:02X}", byte) - piece);
            }
            length = 1;
        } else if (byte == '"' || byte == '\\') {
            piece[0] = '\\';
            piece[1] = static_cast<char>(byte);
            piece_length = 2;
        } else {
            std::copy_n(text.data() + pos, length, piece);
            piece_length = length;
        }
        if (out.size() + piece_length > limit) {
            out += "...";
            return false;
        }
        out.append(piece, piece_length);
        pos += length;
    }
    out.push_back('"');
    return true;
}

std::string quoted(std::string_view text)
{
    return quote_text(text, name_text_bytes);
}

// Unicode White_Space code points, so that a name like "\u00a0" or "\u3000" counts as blank.
bool is_unicode_space(char32_t c)
{
    switch (c) {
    case U' ': case U'\t': case U'\n': case U'\v': case U'\f': case U'\r':
    case 0x85: case 0xa0: case 0x1680: case 0x2028: case 0x2029: case 0x202f: case 0x205f:
    case 0x3000:
        return true;
    default:
        return c >= 0x2000 && c <= 0x200a;
    }
}

// True when a valid UTF-8 `text` is empty or holds only white space.
bool is_blank(std::string_view text)
{
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t length = utf8_sequence_length(text, pos);
        auto lead = static_cast<unsigned char>(text[pos]);
        char32_t code = length == 1 ? lead : lead & (0xff >> (length + 1));
        for (std::size_t i = 1; i < length; ++i) {
            code = (code << 6) | (static_cast<unsigned char>(text[pos + i]) & 0x3f);
        }
        if (!is_unicode_space(code)) {
            return false;
        }
        pos += length;
    }
    return true;
}

} // namespace

std::string quote_text(std::string_view text, std::size_t max_bytes)
{
    std::string out;
    append_quoted(out, text, max_bytes);
    return out;
}

namespace {

bool check_label(std::span<const label_view> labels, const label_view& l,
                 const ingest_limits& limits, reject_reason& reason, std::string* message)
{
    if (l.name.size() > limits.max_label_name_bytes) {
        reason = reject_reason::label_name_too_long;
        if (message) {
            *message = fmt::format(
                "series {}: label name {} is {} bytes, more than limits.max_label_name_bytes ({}); "
                "raise limits.max_label_name_bytes or shorten the name",
                describe_series(labels), quoted(l.name), l.name.size(), limits.max_label_name_bytes);
        }
        return false;
    }
    if (l.value.size() > limits.max_label_value_bytes) {
        reason = reject_reason::label_value_too_long;
        if (message) {
            *message = fmt::format(
                "series {}: value of label {} is {} bytes, more than limits.max_label_value_bytes "
                "({}); raise limits.max_label_value_bytes or shorten the value",
                describe_series(labels), quoted(l.name), l.value.size(), limits.max_label_value_bytes);
        }
        return false;
    }
    for (bool is_name : {true, false}) {
        std::string_view text = is_name ? l.name : l.value;
        std::size_t bad = first_invalid_utf8(text);
        if (bad == std::string_view::npos) {
            continue;
        }
        reason = reject_reason::invalid_utf8;
        if (message) {
            *message = fmt::format(
                "series {}: {} {} is not valid UTF-8 (byte 0x{:02X} at offset {}); send UTF-8 "
                "text or drop the label",
                describe_series(labels), is_name ? "label name" : "value of label", quoted(l.name),
                static_cast<unsigned char>(text[bad]), bad);
        }
        return false;
    }
    if (is_blank(l.name)) {
        reason = reject_reason::invalid_label_name;
        if (message) {
            *message = fmt::format(
                "series {}: label name {} is empty or only white space (value {}); give the label "
                "a name or drop it",
                describe_series(labels), quoted(l.name), quoted(l.value));
        }
        return false;
    }
    // Control characters (NUL, newline, escape, ...) in a name break matchers, templates and
    // log lines; values may hold them, because they are only ever quoted.
    auto control = std::find_if(l.name.begin(), l.name.end(), [](char c) {
        auto byte = static_cast<unsigned char>(c);
        return byte < 0x20 || byte == 0x7f;
    });
    if (control != l.name.end()) {
        reason = reject_reason::invalid_label_name;
        if (message) {
            *message = fmt::format(
                "series {}: label name {} contains the control character 0x{:02X}; use printable "
                "characters in label names",
                describe_series(labels), quoted(l.name), static_cast<unsigned char>(*control));
        }
        return false;
    }
    return true;
}

// `later - earlier` as a duration such as "1y2w3d", for `later > earlier`. Distances beyond
// the range of milliseconds, which only nonsense timestamps reach, print as a count of years.
std::string describe_distance(time_ms earlier, time_ms later)
{
    const std::uint64_t ms = static_cast<std::uint64_t>(later) - static_cast<std::uint64_t>(earlier);
    if (ms > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        constexpr std::uint64_t year_ms = 365ull * 24 * 3600 * 1000;
        return fmt::format("{}y", ms / year_ms);
    }
    return format_duration(std::chrono::milliseconds(static_cast<std::int64_t>(ms)));
}

} // namespace

std::string describe_series(std::span<const label_view> labels)
{
    std::string out = "{";
    for (std::size_t i = 0; i < labels.size(); ++i) {
        if (i > 0) {
            out += ", ";
        }
        const label_view& l = labels[i];
        if (is_legacy_label_name(l.name)) {
            if (out.size() + l.name.size() > series_text_bytes) {
                out += "...";
                return out;
            }
            out += l.name;
        } else if (!append_quoted(out, l.name, series_text_bytes)) {
            return out;
        }
        out.push_back('=');
        if (!append_quoted(out, l.value, series_text_bytes)) {
            return out;
        }
    }
    out.push_back('}');
    return out;
}

bool validate_series(std::span<const label_view> labels, std::size_t label_count,
                     const ingest_limits& limits, bool require_sorted, reject_reason& reason,
                     std::string* message)
{
    if (label_count > limits.max_labels_per_series) {
        reason = reject_reason::too_many_labels;
        if (message) {
            *message = fmt::format(
                "series {} has {} labels, more than limits.max_labels_per_series ({}); raise "
                "limits.max_labels_per_series or drop labels",
                describe_series(labels), label_count, limits.max_labels_per_series);
        }
        return false;
    }

    for (const label_view& l : labels) {
        if (!check_label(labels, l, limits, reason, message)) {
            return false;
        }
    }

    // Callers that sort the labels themselves still need the duplicate check.
    for (std::size_t i = 1; i < labels.size(); ++i) {
        std::string_view previous = labels[i - 1].name;
        std::string_view current = labels[i].name;
        if (current == previous) {
            reason = reject_reason::duplicate_label_name;
            if (message) {
                *message = fmt::format(
                    "series {}: label name {} appears more than once; send each label once",
                    describe_series(labels), quoted(current));
            }
            return false;
        }
        if (require_sorted && current < previous) {
            reason = reject_reason::unsorted_labels;
            if (message) {
                *message = fmt::format(
                    "series {}: label {} comes after {}; remote_write requires labels sorted by "
                    "name in byte order",
                    describe_series(labels), quoted(current), quoted(previous));
            }
            return false;
        }
    }

    bool has_name = std::any_of(labels.begin(), labels.end(), [](const label_view& l) {
        return l.name == "__name__" && !l.value.empty();
    });
    if (!has_name) {
        reason = reject_reason::missing_metric_name;
        if (message) {
            *message = fmt::format("series {} has no __name__ label; set the metric name",
                                   describe_series(labels));
        }
        return false;
    }
    return true;
}

void drop_empty_values(std::vector<label_view>& labels)
{
    std::erase_if(labels, [](const label_view& l) { return l.value.empty(); });
}

namespace {

// The message for a sample outside the fixed timestamp range or the configured time limits.
std::string describe_timestamp_rejection(const engine& eng, std::span<const label_view> sorted_labels,
                                         ingest_status status, time_ms timestamp)
{
    if (timestamp > timestamp_bound_ms || timestamp < -timestamp_bound_ms) {
        return fmt::format("series {}: sample timestamp {} ms is outside the supported range of +-{} ms "
                           "(about 31,700 years around 1970) and was dropped; send timestamps in "
                           "milliseconds since the Unix epoch",
                           describe_series(sorted_labels), timestamp, timestamp_bound_ms);
    }
    const time_ms now = eng.now_ms();
    if (status == ingest_status::too_old) {
        return fmt::format("series {}: sample timestamp {} ({} ms) is {} older than the server time {}, more "
                           "than limits.max_sample_age ({}), and was dropped; send timestamps in milliseconds "
                           "since the Unix epoch (seconds read as January 1970) and check the sender's clock",
                           describe_series(sorted_labels), format_rfc3339_ms(timestamp), timestamp,
                           describe_distance(timestamp, now), format_rfc3339_ms(now),
                           format_duration(eng.limits().max_sample_age));
    }
    return fmt::format("series {}: sample timestamp {} ({} ms) is {} ahead of the server time {}, more than "
                       "limits.max_future_skew ({}), and was dropped; send timestamps in milliseconds since "
                       "the Unix epoch and check the sender's clock",
                       describe_series(sorted_labels), format_rfc3339_ms(timestamp), timestamp,
                       describe_distance(now, timestamp), format_rfc3339_ms(now),
                       format_duration(eng.limits().max_future_skew));
}

} // namespace

bool ingest_sample(engine& eng, std::span<const label_view> sorted_labels, time_ms timestamp,
                   double value, ingest_counters& counters, reject_reason& reason,
                   std::string* message)
{
    const ingest_status status = eng.ingest(sorted_labels, timestamp, value);
    switch (status) {
    case ingest_status::accepted:
        ++counters.samples_accepted;
        return true;
    case ingest_status::stale_marker:
        ++counters.stale_markers;
        return true;
    case ingest_status::duplicate:
        // A sender retrying a batch that already arrived: the sample is stored, so this is
        // counted but not reported as an error.
        ++counters.samples_rejected[static_cast<std::size_t>(reject_reason::duplicate_sample)];
        return true;
    case ingest_status::out_of_order:
        reason = reject_reason::out_of_order;
        if (message) {
            *message = fmt::format(
                "series {}: sample at timestamp {} ms is older than the series' last sample and "
                "was dropped; send the samples of a series in timestamp order",
                describe_series(sorted_labels), timestamp);
        }
        break;
    case ingest_status::too_far_in_future:
    case ingest_status::too_old:
        reason = status == ingest_status::too_old ? reject_reason::too_old : reject_reason::too_far_in_future;
        if (message) {
            *message = describe_timestamp_rejection(eng, sorted_labels, status, timestamp);
        }
        break;
    case ingest_status::series_limit:
        reason = reject_reason::series_limit;
        if (message) {
            *message = fmt::format(
                "series {}: new series rejected because the engine is at its series limit "
                "(limits.max_series); raise limits.max_series or drop high-cardinality labels",
                describe_series(sorted_labels));
        }
        break;
    }
    ++counters.samples_rejected[static_cast<std::size_t>(reason)];
    return false;
}

} // namespace ingest_detail

} // namespace tocsin
