#pragma once
// Inference records and outcomes as HTTP bodies carry them, parsed and checked against the
// model schemas (model/schema.hpp) before they reach the registry (model/registry.hpp).
//
// A body is a JSON array of objects, or newline-delimited JSON (one object per line, empty
// lines skipped). The content type decides: "application/x-ndjson", "application/jsonl" and
// "application/json-lines" read as NDJSON, and "application/json" as an array. With any other
// or no content type, a body whose first non-space byte is '[' is an array.
//
// Record:  {"model": "churn", "version": "v3", "timestamp": "2024-05-01T12:00:00Z" or
//           1714564800000, "id": "req-1", "features": {"age": 41, "country": "de",
//           "vip": true, "income": null}, "prediction": 0.83}
// Outcome: {"model": "churn", "version": "v3", "id": "req-1", "outcome": 1,
//           "timestamp": 1714568400000}
//
// version is required in a record and optional in an outcome; id is optional in a record
// (a record without one is monitored but never joined) and required in an outcome.
// A timestamp is RFC 3339 ("2024-05-01T12:00:00.250+02:00") or integer Unix milliseconds.
// A feature value is a number, a string, a boolean or null. A value of the wrong type for the
// feature is not an error here: the registry counts it in type_mismatch_rate.
// The prediction must fit the schema's prediction type: a score is a number in [0, 1], a class
// is 0 or 1, false or true, or one of the schema's two classes, a number is any finite number.
// An outcome is a finite number (regression) or 0 or 1, false or true, or one of the classes.
//
// Errors come in two kinds:
//   body errors   the body is too large, not JSON of the expected shape, nested too deeply or
//                 holds too many records. Nothing is returned: answer 400 or 413.
//   record errors a record is malformed (an unknown model, a missing field, a number out of
//                 double range such as 1e400, invalid UTF-8, a repeated key, too many features,
//                 an over-long string, a bad timestamp). The record is reported with its
//                 0-based position in the batch and a message that names the value and the
//                 fix, and the other records are returned.
// Each array element and NDJSON line is parsed on its own, so one broken element does not
// lose the others, as long as the array's brackets, braces and strings balance.
//
// Thread safety: the functions are reentrant.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/feature.hpp"
#include "model/model_monitor.hpp"
#include "model/schema.hpp"

namespace tocsin::model {

struct record_limits {
    // Largest body.
    std::size_t max_body_bytes = 16u << 20;
    // Records or outcomes per body.
    std::size_t max_records = 10'000;
    // Deepest nesting of arrays and objects in the body (an array of records with a features
    // object is 3 deep).
    int max_depth = 8;
    // Features per record.
    std::size_t max_features = max_schema_features;
    // Bytes of a string feature value or a class.
    std::size_t max_string_bytes = 1024;
    // Bytes of a model, version, id or feature name.
    std::size_t max_name_bytes = 256;
};

// A value that owns its text, so a record outlives the body it came from.
struct owned_value {
    feature_value::kind kind = feature_value::kind::null;
    double number = 0;
    std::string text;
    bool boolean = false;

    // A view for model_monitor; valid while this value lives.
    feature_value view() const;
};

struct parsed_feature {
    std::string name;
    owned_value value;
};

struct parsed_record {
    // Position of the record in the batch.
    std::size_t index = 0;
    std::string model;
    std::string version;
    time_ms time = 0;
    std::optional<std::string> id;
    // Features in name order (the JSON object's keys sorted), not in the order of the body.
    // NOTE: so model_monitor's match by position rarely applies and it looks names up by hash.
    std::vector<parsed_feature> features;
    // As sent, checked against the schema's prediction type.
    owned_value prediction;
    // The prediction as a number: the score, the class as 0 or 1, or the regression value.
    double prediction_number = 0;

    // The features as views for model_monitor::add_record; valid while this record lives.
    std::vector<named_feature_value> views() const;
};

struct parsed_outcome {
    std::size_t index = 0;
    std::string model;
    std::optional<std::string> version;
    std::string id;
    // The outcome as a number: 0 or 1 for binary classification.
    double outcome = 0;
    time_ms time = 0;
};

struct record_error {
    // Position of the record in the batch.
    std::size_t index = 0;
    std::string message;
};

enum class body_status : std::uint8_t {
    ok,
    // The body is larger than max_body_bytes (HTTP 413).
    too_large,
    // The body is not an array or NDJSON of objects, its nesting is unbalanced or too deep, or
    // it holds more than max_records records (HTTP 400).
    malformed,
};

template <typename Item>
struct batch_result {
    body_status status = body_status::ok;
    // For a body error: what is wrong and the fix.
    std::string body_error;
    std::vector<Item> items;
    std::vector<record_error> errors;
};

using record_batch = batch_result<parsed_record>;
using outcome_batch = batch_result<parsed_outcome>;

// Parses a body of inference records. `content_type` may be empty.
record_batch parse_records(std::string_view body, std::string_view content_type, const schema_set& schemas,
                           const record_limits& limits = {});

// Parses a body of outcomes. `content_type` may be empty.
outcome_batch parse_outcomes(std::string_view body, std::string_view content_type, const schema_set& schemas,
                             const record_limits& limits = {});

// Parses an RFC 3339 timestamp with a time zone ("2024-05-01T12:00:00Z",
// "2024-05-01T14:00:00.250+02:00"). Returns std::nullopt and sets `error` ("what is wrong; the
// fix").
std::optional<time_ms> parse_rfc3339(std::string_view text, std::string& error);

// Quotes a value for an error message: at most 64 bytes, with control characters, quotes,
// backslashes and bytes above 0x7e escaped as \xHH, so the message is printable ASCII.
std::string quote_value(std::string_view text);

}  // namespace tocsin::model
