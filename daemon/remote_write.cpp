// Prometheus remote_write 1.0: snappy block decoding and a hand-written protobuf decoder.
//
// The decoder reads the wire format directly instead of building prometheus::WriteRequest
// objects, so that labels are views into the decoded buffer and a request costs no heap
// allocation per series or sample once the thread's scratch buffers have grown.
//
// The body is read twice. The first pass checks the whole wire format and counts samples, so
// a malformed or oversized request is rejected before any sample reaches the engine. The
// second pass validates each series and feeds its samples to the engine.

#include <algorithm>
#include <bit>
#include <cstring>
#include <memory>

#include <fmt/format.h>
#include <snappy.h>

#include "daemon/ingest.hpp"

namespace tocsin {

namespace {

using namespace ingest_detail;

// Decoded buffers larger than this are freed after the request, so that one large request
// does not pin its memory for the life of the thread.
constexpr std::size_t retained_buffer_bytes = 8u << 20;

// Groups (wire types 3 and 4) are deprecated but legal. Their nesting is capped so that a
// hostile body cannot exhaust the stack.
constexpr int max_group_depth = 32;

constexpr std::string_view plain_text = "text/plain; charset=utf-8";

// WriteRequest, TimeSeries, Label and Sample field numbers (prompb/remote.proto, types.proto).
constexpr std::uint64_t write_request_timeseries = 1;
constexpr std::uint64_t time_series_labels = 1;
constexpr std::uint64_t time_series_samples = 2;
constexpr std::uint64_t label_name = 1;
constexpr std::uint64_t label_value = 2;
constexpr std::uint64_t sample_value = 1;
constexpr std::uint64_t sample_timestamp = 2;

enum wire_type : std::uint32_t {
    wire_varint = 0,
    wire_fixed64 = 1,
    wire_length_delimited = 2,
    wire_start_group = 3,
    wire_end_group = 4,
    wire_fixed32 = 5,
};

struct decode_error {
    std::size_t offset = 0; // from the start of the decoded body
    std::string description;
};

// A cursor over one message inside the decoded body. Offsets in errors are absolute.
class wire_reader {
public:
    wire_reader(const char* base, std::size_t begin, std::size_t end)
        : base_(base), pos_(begin), end_(end)
    {
    }

    bool done() const { return pos_ >= end_; }

    bool read_varint(std::uint64_t& value, decode_error& error)
    {
        std::size_t start = pos_;
        value = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            if (pos_ >= end_) {
                return fail(error, start, "truncated varint");
            }
            auto byte = static_cast<unsigned char>(base_[pos_++]);
            value |= static_cast<std::uint64_t>(byte & 0x7f) << shift;
            if ((byte & 0x80) == 0) {
                return true;
            }
        }
        return fail(error, start, "varint longer than 10 bytes");
    }

    bool read_tag(std::uint64_t& field, std::uint32_t& type, decode_error& error)
    {
        std::size_t start = pos_;
        std::uint64_t tag = 0;
        if (!read_varint(tag, error)) {
            return false;
        }
        field = tag >> 3;
        type = static_cast<std::uint32_t>(tag & 7);
        if (field == 0 || field > 0x1fffffff) {
            return fail(error, start, fmt::format("invalid field number {}", field));
        }
        if (type > wire_fixed32) {
            return fail(error, start, fmt::format("invalid wire type {} for field {}", type, field));
        }
        return true;
    }

    bool read_fixed64(std::uint64_t& value, decode_error& error)
    {
        if (end_ - pos_ < 8) {
            return fail(error, pos_, "truncated fixed64");
        }
        unsigned char bytes[8];
        std::memcpy(bytes, base_ + pos_, 8);
        value = 0;
        for (int i = 7; i >= 0; --i) {
            value = (value << 8) | bytes[i];
        }
        pos_ += 8;
        return true;
    }

    // Reads a length prefix and returns the range of the payload as a nested reader.
    bool read_length_delimited(wire_reader& payload, decode_error& error)
    {
        std::size_t start = pos_;
        std::uint64_t length = 0;
        if (!read_varint(length, error)) {
            return false;
        }
        if (length > end_ - pos_) {
            return fail(error, start,
                        fmt::format("length {} exceeds the {} bytes left in the enclosing message",
                                    length, end_ - pos_));
        }
        payload = wire_reader(base_, pos_, pos_ + static_cast<std::size_t>(length));
        pos_ += static_cast<std::size_t>(length);
        return true;
    }

    bool read_bytes(std::string_view& bytes, decode_error& error)
    {
        wire_reader payload(base_, 0, 0);
        if (!read_length_delimited(payload, error)) {
            return false;
        }
        bytes = std::string_view(base_ + payload.pos_, payload.end_ - payload.pos_);
        return true;
    }

    // Skips the value of a field whose tag was just read.
    bool skip(std::uint64_t field, std::uint32_t type, decode_error& error, int depth = 0)
    {
        switch (type) {
        case wire_varint: {
            std::uint64_t ignored = 0;
            return read_varint(ignored, error);
        }
        case wire_fixed64:
            if (end_ - pos_ < 8) {
                return fail(error, pos_, "truncated fixed64");
            }
            pos_ += 8;
            return true;
        case wire_length_delimited: {
            wire_reader ignored(base_, 0, 0);
            return read_length_delimited(ignored, error);
        }
        case wire_fixed32:
            if (end_ - pos_ < 4) {
                return fail(error, pos_, "truncated fixed32");
            }
            pos_ += 4;
            return true;
        case wire_start_group:
            return skip_group(field, error, depth + 1);
        case wire_end_group:
            return fail(error, pos_, fmt::format("end of group {} without a start", field));
        }
        return fail(error, pos_, fmt::format("invalid wire type {}", type));
    }

private:
    bool skip_group(std::uint64_t group_field, decode_error& error, int depth)
    {
        std::size_t start = pos_;
        if (depth > max_group_depth) {
            return fail(error, start, fmt::format("groups nested deeper than {}", max_group_depth));
        }
        while (!done()) {
            std::uint64_t field = 0;
            std::uint32_t type = 0;
            std::size_t tag_start = pos_;
            if (!read_tag(field, type, error)) {
                return false;
            }
            if (type == wire_end_group) {
                if (field != group_field) {
                    return fail(error, tag_start,
                                fmt::format("group {} ends with the end tag of group {}",
                                            group_field, field));
                }
                return true;
            }
            if (!skip(field, type, error, depth)) {
                return false;
            }
        }
        return fail(error, start, fmt::format("group {} has no end tag", group_field));
    }

    static bool fail(decode_error& error, std::size_t offset, std::string description)
    {
        error.offset = offset;
        error.description = std::move(description);
        return false;
    }

    const char* base_;
    std::size_t pos_;
    std::size_t end_;
};

struct sample_value_pair {
    time_ms timestamp = 0;
    double value = 0;
};

// One TimeSeries as decoded. The vectors are reused across series and requests.
struct series_scratch {
    std::vector<label_view> labels; // the first `label_cap` labels of the series
    std::size_t label_count = 0;    // every label on the wire
    std::vector<sample_value_pair> samples; // filled only when the caller keeps samples
    std::size_t sample_count = 0;

    void clear()
    {
        labels.clear();
        label_count = 0;
        samples.clear();
        sample_count = 0;
    }
};

// Buffers kept per thread: the decoded body and the current series.
struct thread_scratch {
    std::unique_ptr<char[]> body;
    std::size_t body_capacity = 0;
    series_scratch series;

    char* reserve_body(std::size_t bytes)
    {
        if (bytes > body_capacity || !body) {
            // Values are written by snappy before they are read, so no zero-fill is needed.
            body = std::make_unique_for_overwrite<char[]>(std::max<std::size_t>(bytes, 1));
            body_capacity = std::max<std::size_t>(bytes, 1);
        }
        return body.get();
    }

    void release_if_large()
    {
        if (body_capacity > retained_buffer_bytes) {
            body.reset();
            body_capacity = 0;
        }
        if (series.labels.capacity() > 4096) {
            series.labels = {};
        }
        if (series.samples.capacity() > 65536) {
            series.samples = {};
        }
    }
};

thread_local thread_scratch scratch;

bool parse_label(wire_reader reader, label_view& out, decode_error& error)
{
    out = {};
    while (!reader.done()) {
        std::uint64_t field = 0;
        std::uint32_t type = 0;
        if (!reader.read_tag(field, type, error)) {
            return false;
        }
        // A known field number with an unexpected wire type is an unknown field, as in the
        // protobuf runtime, so it is skipped rather than rejected.
        if (type == wire_length_delimited && field == label_name) {
            if (!reader.read_bytes(out.name, error)) {
                return false;
            }
        } else if (type == wire_length_delimited && field == label_value) {
            if (!reader.read_bytes(out.value, error)) {
                return false;
            }
        } else if (!reader.skip(field, type, error)) {
            return false;
        }
    }
    return true;
}

bool parse_sample(wire_reader reader, sample_value_pair& out, decode_error& error)
{
    out = {};
    while (!reader.done()) {
        std::uint64_t field = 0;
        std::uint32_t type = 0;
        if (!reader.read_tag(field, type, error)) {
            return false;
        }
        if (type == wire_fixed64 && field == sample_value) {
            std::uint64_t bits = 0;
            if (!reader.read_fixed64(bits, error)) {
                return false;
            }
            // Bit cast keeps NaN payloads, so stale markers stay recognisable.
            out.value = std::bit_cast<double>(bits);
        } else if (type == wire_varint && field == sample_timestamp) {
            std::uint64_t raw = 0;
            if (!reader.read_varint(raw, error)) {
                return false;
            }
            out.timestamp = static_cast<time_ms>(raw);
        } else if (!reader.skip(field, type, error)) {
            return false;
        }
    }
    return true;
}

// Decodes one TimeSeries. Stores at most `label_cap` labels and, when `keep_samples`, every
// sample; exemplars (field 3), native histograms (field 4) and unknown fields are skipped.
bool parse_time_series(wire_reader reader, series_scratch& out, std::size_t label_cap,
                       bool keep_samples, decode_error& error)
{
    out.clear();
    while (!reader.done()) {
        std::uint64_t field = 0;
        std::uint32_t type = 0;
        if (!reader.read_tag(field, type, error)) {
            return false;
        }
        if (type == wire_length_delimited && field == time_series_labels) {
            wire_reader payload(nullptr, 0, 0);
            label_view l;
            if (!reader.read_length_delimited(payload, error) || !parse_label(payload, l, error)) {
                return false;
            }
            if (out.label_count < label_cap) {
                out.labels.push_back(l);
            }
            ++out.label_count;
        } else if (type == wire_length_delimited && field == time_series_samples) {
            wire_reader payload(nullptr, 0, 0);
            sample_value_pair s;
            if (!reader.read_length_delimited(payload, error) || !parse_sample(payload, s, error)) {
                return false;
            }
            if (keep_samples) {
                out.samples.push_back(s);
            }
            ++out.sample_count;
        } else if (!reader.skip(field, type, error)) {
            return false;
        }
    }
    return true;
}

// Walks every TimeSeries of a WriteRequest, calling `visit(series)` after each one. Metadata
// (field 3) and unknown fields are skipped. Returns false on the first wire format error.
template <typename Visit>
bool for_each_series(const char* data, std::size_t size, std::size_t label_cap, bool keep_samples,
                     series_scratch& series, decode_error& error, Visit&& visit)
{
    wire_reader reader(data, 0, size);
    while (!reader.done()) {
        std::uint64_t field = 0;
        std::uint32_t type = 0;
        if (!reader.read_tag(field, type, error)) {
            return false;
        }
        if (type == wire_length_delimited && field == write_request_timeseries) {
            wire_reader payload(nullptr, 0, 0);
            if (!reader.read_length_delimited(payload, error) ||
                !parse_time_series(payload, series, label_cap, keep_samples, error)) {
                return false;
            }
            visit(series);
        } else if (!reader.skip(field, type, error)) {
            return false;
        }
    }
    return true;
}

std::string_view trim(std::string_view text)
{
    constexpr std::string_view blanks = " \t";
    std::size_t first = text.find_first_not_of(blanks);
    if (first == std::string_view::npos) {
        return {};
    }
    std::size_t last = text.find_last_not_of(blanks);
    return text.substr(first, last - first + 1);
}

bool iequals(std::string_view a, std::string_view b)
{
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
               return lower(x) == lower(y);
           });
}

ingest_outcome whole_request_error(int status, std::string message, ingest_counters& counters)
{
    // The sample count of a body that cannot be decoded is unknown. Each such request counts
    // as one rejected sample, so that every rejected request shows in the metric.
    ++counters.samples_rejected[static_cast<std::size_t>(reject_reason::malformed)];
    ingest_outcome outcome;
    outcome.http_status = status;
    outcome.body = std::move(message);
    outcome.body += '\n';
    outcome.content_type = plain_text;
    return outcome;
}

// Returns an error message for a Content-Type that is not remote_write 1.0, or "" when it is
// acceptable. A missing Content-Type means 1.0, as in Prometheus' own receiver.
std::string check_content_type(std::string_view content_type)
{
    std::string_view rest = content_type;
    std::size_t semicolon = rest.find(';');
    std::string_view media = trim(rest.substr(0, semicolon));
    if (media.empty() && trim(rest).empty()) {
        return {};
    }
    if (!iequals(media, "application/x-protobuf")) {
        return fmt::format("unsupported Content-Type {}; remote_write 1.0 requires "
                           "application/x-protobuf",
                           quote_text(content_type, 128));
    }
    while (semicolon != std::string_view::npos) {
        rest = rest.substr(semicolon + 1);
        semicolon = rest.find(';');
        std::string_view parameter = trim(rest.substr(0, semicolon));
        std::size_t equals = parameter.find('=');
        if (equals == std::string_view::npos || !iequals(trim(parameter.substr(0, equals)), "proto")) {
            continue;
        }
        std::string_view proto = trim(parameter.substr(equals + 1));
        if (proto.size() >= 2 && proto.front() == '"' && proto.back() == '"') {
            proto = proto.substr(1, proto.size() - 2);
        }
        if (proto != "prometheus.WriteRequest") {
            return fmt::format(
                "unsupported remote_write message type proto={}; this endpoint accepts remote_write "
                "1.0 (proto=prometheus.WriteRequest) only; set protobuf_message: "
                "prometheus.WriteRequest in the sender's remote_write configuration",
                quote_text(proto, 128));
        }
    }
    return {};
}

// Problems found in one request: the first few messages and the count of the rest.
struct problem_list {
    std::vector<std::string> messages;
    std::size_t omitted = 0;
    std::string pending; // reused for the next message

    std::string* slot() { return messages.size() < max_messages ? &pending : nullptr; }

    void commit(bool had_slot)
    {
        if (had_slot) {
            messages.push_back(std::move(pending));
            pending.clear();
        } else {
            ++omitted;
        }
    }
};

std::string render_problems(const problem_list& problems, std::size_t accepted, std::size_t rejected)
{
    std::string body = accepted == 0
                           ? fmt::format("rejected all {} samples\n", rejected)
                           : fmt::format("rejected {} of {} samples; the other {} were ingested\n", rejected,
                                         accepted + rejected, accepted);
    for (const std::string& message : problems.messages) {
        body += message;
        body += '\n';
    }
    if (problems.omitted > 0) {
        body += fmt::format("and {} more\n", problems.omitted);
    }
    return body;
}

ingest_outcome ingest_decoded(const char* data, std::size_t size, engine& eng,
                              const ingest_limits& limits, ingest_counters& counters)
{
    series_scratch& series = scratch.series;
    decode_error error;

    // Pass 1: check the wire format and count the samples. Nothing is stored.
    std::size_t total_samples = 0;
    bool decoded = for_each_series(data, size, 0, false, series, error,
                                   [&](const series_scratch& s) { total_samples += s.sample_count; });
    if (!decoded) {
        return whole_request_error(
            400,
            fmt::format("malformed protobuf at byte {}: {}; the body must be a snappy-compressed "
                        "prometheus.WriteRequest",
                        error.offset, error.description),
            counters);
    }
    if (total_samples > limits.max_samples_per_request) {
        counters.samples_rejected[static_cast<std::size_t>(reject_reason::too_many_samples)] += total_samples;
        ingest_outcome outcome;
        outcome.http_status = 400;
        outcome.rejected = total_samples;
        outcome.content_type = plain_text;
        outcome.body = fmt::format(
            "request holds {} samples, more than limits.max_samples_per_request ({}); nothing was "
            "ingested; lower queue_config.max_samples_per_send in the sender or raise "
            "limits.max_samples_per_request\n",
            total_samples, limits.max_samples_per_request);
        return outcome;
    }

    // Pass 2: validate each series and feed its samples to the engine. One label past the
    // limit is enough to tell that the series has too many.
    ingest_outcome outcome;
    problem_list problems;
    std::size_t label_cap = limits.max_labels_per_series + 1;
    auto ingest_series = [&](series_scratch& s) {
        if (s.sample_count == 0) {
            return; // exemplars or native histograms only, which the engine does not use
        }
        reject_reason reason = reject_reason::malformed;
        std::string* message = problems.slot();
        if (!validate_series(s.labels, s.label_count, limits, true, reason, message)) {
            counters.samples_rejected[static_cast<std::size_t>(reason)] += s.sample_count;
            outcome.rejected += s.sample_count;
            problems.commit(message != nullptr);
            return;
        }
        // NOTE: the remote_write 1.0 spec forbids empty label values, but they are accepted
        // here and dropped, because Prometheus treats an empty value as an absent label.
        drop_empty_values(s.labels);
        for (const sample_value_pair& sample : s.samples) {
            message = problems.slot();
            if (ingest_sample(eng, s.labels, sample.timestamp, sample.value, counters, reason, message)) {
                ++outcome.accepted;
            } else {
                ++outcome.rejected;
                problems.commit(message != nullptr);
            }
        }
    };
    if (!for_each_series(data, size, label_cap, true, series, error, ingest_series)) {
        // Unreachable: pass 1 decoded the same bytes.
        return whole_request_error(
            500, fmt::format("internal error: second decoding pass failed at byte {}: {}",
                             error.offset, error.description),
            counters);
    }

    if (outcome.rejected > 0) {
        outcome.http_status = 400;
        outcome.content_type = plain_text;
        outcome.body = render_problems(problems, outcome.accepted, outcome.rejected);
    } else {
        outcome.http_status = 204;
    }
    return outcome;
}

} // namespace

ingest_outcome ingest_remote_write(std::string_view body, std::string_view content_type,
                                   std::string_view content_encoding, engine& eng,
                                   const ingest_limits& limits, ingest_counters& counters)
{
    // Prometheus' receiver decodes a body without Content-Encoding as snappy too.
    std::string_view encoding = trim(content_encoding);
    if (!encoding.empty() && !iequals(encoding, "snappy")) {
        return whole_request_error(
            415,
            fmt::format("unsupported Content-Encoding {}; remote_write 1.0 bodies must be "
                        "snappy block-compressed (Content-Encoding: snappy)",
                        quote_text(encoding, 128)),
            counters);
    }
    std::string type_error = check_content_type(content_type);
    if (!type_error.empty()) {
        return whole_request_error(415, std::move(type_error), counters);
    }

    constexpr std::string_view framed_magic{"\xff\x06\x00\x00sNaPpY", 10};
    if (body.substr(0, framed_magic.size()) == framed_magic) {
        return whole_request_error(
            400,
            "body uses the snappy framed (stream) format; remote_write requires the snappy block "
            "format (snappy::Compress in C++, snappy.Encode in Go)",
            counters);
    }

    // The block format starts with the decoded length, so the limit is checked before any
    // buffer is allocated.
    std::size_t decoded_size = 0;
    if (!snappy::GetUncompressedLength(body.data(), body.size(), &decoded_size)) {
        return whole_request_error(
            400,
            fmt::format("body of {} bytes is not snappy block data (invalid length header); "
                        "remote_write bodies must be snappy-compressed protobuf",
                        body.size()),
            counters);
    }
    if (decoded_size > limits.max_decoded_bytes) {
        return whole_request_error(
            400,
            fmt::format("snappy header announces {} decoded bytes, more than "
                        "limits.max_decoded_bytes ({}); lower the sender's "
                        "queue_config.max_samples_per_send or raise limits.max_decoded_bytes",
                        decoded_size, limits.max_decoded_bytes),
            counters);
    }

    char* decoded = scratch.reserve_body(decoded_size);
    if (!snappy::RawUncompress(body.data(), body.size(), decoded)) {
        scratch.release_if_large();
        return whole_request_error(
            400,
            fmt::format("body of {} bytes is corrupt snappy block data; remote_write bodies must "
                        "be snappy-compressed protobuf",
                        body.size()),
            counters);
    }

    ingest_outcome outcome = ingest_decoded(decoded, decoded_size, eng, limits, counters);
    scratch.release_if_large();
    return outcome;
}

} // namespace tocsin
