// POST /api/v1/push: a JSON batch of samples for senders that do not speak remote_write.
//
//   {"samples":[{"labels":{"__name__":"cpu","host":"a"},"value":93.5,"timestamp_ms":1733000000000}]}
//
// "metric" is a shortcut for the __name__ label. "value" is a JSON number or one of the strings
// "NaN", "Inf", "+Inf", "-Inf". "timestamp_ms" is optional and defaults to the time of receipt.
// A bad sample is rejected with its index and the other samples are still ingested.

#include <algorithm>
#include <cstdint>
#include <limits>
#include <unordered_set>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "daemon/ingest.hpp"

namespace tocsin {

namespace {

using json = nlohmann::json;
using namespace ingest_detail;

constexpr std::string_view json_type = "application/json";
constexpr std::string_view expected_shape =
    R"(expected {"samples":[{"labels":{"__name__":"cpu","host":"a"},"value":93.5,"timestamp_ms":1733000000000}]})";

// A valid push body nests four levels deep. Deeper nesting is rejected before the tree is
// built, so that a hostile body cannot make a huge one.
constexpr int max_json_depth = 16;

// A first pass over the body with nlohmann's SAX interface: it checks depth, repeated keys and
// number range, and counts the samples, in time linear in the body and without building a
// tree. (A parser callback would do the depth check too, but nlohmann's callback parser takes
// time quadratic in the length of an array of objects.)
class push_precheck final : public nlohmann::json_sax<json> {
public:
    explicit push_precheck(std::size_t max_samples) : max_samples_(max_samples) {}

    std::string error;           // set when the pass stopped on a problem
    std::size_t samples = 0;     // elements of the top-level "samples" array
    bool too_many_samples = false;

    bool null() override { return element(); }
    bool boolean(bool) override { return element(); }
    bool number_integer(number_integer_t) override { return element(); }
    bool number_unsigned(number_unsigned_t) override { return element(); }
    bool number_float(number_float_t, const string_t&) override { return element(); }
    bool string(string_t&) override { return element(); }
    bool binary(binary_t&) override { return element(); }

    bool start_object(std::size_t) override
    {
        if (!element() || !enter()) {
            return false;
        }
        keys_.emplace_back();
        return true;
    }

    bool key(string_t& name) override
    {
        if (!keys_.back().insert(name).second) {
            error = fmt::format("key {} appears twice in one JSON object; send each key once", quote_text(name));
            return false;
        }
        if (depth_ == 1) {
            in_samples_next_ = name == "samples";
        }
        return true;
    }

    bool end_object() override
    {
        keys_.pop_back();
        return leave();
    }

    bool start_array(std::size_t) override
    {
        const bool is_samples = depth_ == 1 && in_samples_next_;
        if (!element() || !enter()) {
            return false;
        }
        if (is_samples) {
            samples_depth_ = depth_;
        }
        return true;
    }

    bool end_array() override
    {
        if (depth_ == samples_depth_) {
            samples_depth_ = -1;
        }
        return leave();
    }

    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override
    {
        std::string_view text = e.what();
        if (std::size_t end = text.find("] "); !text.empty() && text.front() == '[' && end != std::string_view::npos) {
            text.remove_prefix(end + 2);
        }
        error = fmt::format("body is not valid JSON: {}", text);
        return false;
    }

private:
    // Counts an element of the samples array. The pass goes on past the limit, because it
    // builds nothing and the answer names the full count.
    bool element()
    {
        if (depth_ == samples_depth_ && samples_depth_ > 0 && ++samples > max_samples_) {
            too_many_samples = true;
        }
        return true;
    }

    bool enter()
    {
        if (++depth_ > max_json_depth) {
            error = fmt::format("body nests JSON deeper than {} levels", max_json_depth);
            return false;
        }
        return true;
    }

    bool leave()
    {
        --depth_;
        return true;
    }

    std::size_t max_samples_;
    int depth_ = 0;
    int samples_depth_ = -1;
    bool in_samples_next_ = false;
    std::vector<std::unordered_set<std::string>> keys_;
};

std::string dump(const json& document)
{
    // Invalid UTF-8 cannot reach this point because the parser rejects it; `replace` keeps a
    // response from throwing if it ever did.
    return document.dump(-1, ' ', false, json::error_handler_t::replace);
}

ingest_outcome whole_request_error(std::string message, std::size_t rejected, ingest_counters& counters)
{
    ++counters.samples_rejected[static_cast<std::size_t>(reject_reason::malformed)];
    ingest_outcome outcome;
    outcome.http_status = 400;
    outcome.rejected = rejected;
    outcome.content_type = json_type;
    outcome.body = dump(json{{"accepted", 0}, {"rejected", rejected}, {"error", std::move(message)}});
    return outcome;
}

bool parse_value(const json& value, double& out, std::string& error)
{
    if (value.is_number()) {
        out = value.get<double>();
        return true;
    }
    if (value.is_string()) {
        const auto& text = value.get_ref<const std::string&>();
        if (text == "NaN") {
            out = std::numeric_limits<double>::quiet_NaN();
            return true;
        }
        if (text == "Inf" || text == "+Inf") {
            out = std::numeric_limits<double>::infinity();
            return true;
        }
        if (text == "-Inf") {
            out = -std::numeric_limits<double>::infinity();
            return true;
        }
        error = fmt::format(R"("value" {} is not a number; use a JSON number or "NaN", "+Inf", "-Inf")",
                            quote_text(text));
        return false;
    }
    error = fmt::format(R"("value" must be a JSON number or one of "NaN", "+Inf", "-Inf", got {})",
                        value.type_name());
    return false;
}

bool parse_timestamp(const json& value, time_ms& out, std::string& error)
{
    if (value.is_number_unsigned()) {
        auto raw = value.get<std::uint64_t>();
        if (raw > static_cast<std::uint64_t>(std::numeric_limits<time_ms>::max())) {
            error = fmt::format(R"("timestamp_ms" {} is out of range; send milliseconds since the Unix epoch)", raw);
            return false;
        }
        out = static_cast<time_ms>(raw);
        return true;
    }
    if (value.is_number_integer()) {
        out = value.get<time_ms>();
        return true;
    }
    error = fmt::format(
        R"("timestamp_ms" must be an integer number of milliseconds since the Unix epoch, got {} {})",
        value.type_name(), dump(value).substr(0, 64));
    return false;
}

// Decodes one element of "samples" into sorted labels (views into `sample`), a timestamp and a
// value. Returns false with `error` set when the element is malformed.
bool decode_sample(const json& sample, time_ms now, std::vector<label_view>& labels,
                   time_ms& timestamp, double& value, std::string& error)
{
    labels.clear();
    timestamp = now;
    if (!sample.is_object()) {
        error = fmt::format("sample must be a JSON object, got {}; {}", sample.type_name(), expected_shape);
        return false;
    }

    bool has_value = false;
    for (const auto& [key, field] : sample.get_ref<const json::object_t&>()) {
        if (key == "labels") {
            if (!field.is_object()) {
                error = fmt::format(R"("labels" must be an object of string values, got {})", field.type_name());
                return false;
            }
            for (const auto& [name, label_value] : field.get_ref<const json::object_t&>()) {
                if (!label_value.is_string()) {
                    error = fmt::format(R"(label {} has a {} value {}; label values must be JSON strings)",
                                        quote_text(name), label_value.type_name(),
                                        dump(label_value).substr(0, 64));
                    return false;
                }
                labels.push_back(label_view{name, label_value.get_ref<const std::string&>()});
            }
        } else if (key == "metric") {
            if (!field.is_string()) {
                error = fmt::format(R"("metric" must be a string, got {})", field.type_name());
                return false;
            }
            labels.push_back(label_view{"__name__", field.get_ref<const std::string&>()});
        } else if (key == "value") {
            if (!parse_value(field, value, error)) {
                return false;
            }
            has_value = true;
        } else if (key == "timestamp_ms") {
            if (!parse_timestamp(field, timestamp, error)) {
                return false;
            }
        } else {
            error = fmt::format(R"(unknown field {} in sample; the fields are "labels", "metric", "value", "timestamp_ms")",
                                quote_text(key));
            return false;
        }
    }
    if (!has_value) {
        error = R"(sample has no "value"; add a JSON number or "NaN", "+Inf", "-Inf")";
        return false;
    }

    // JSON object order carries no meaning, so the labels are put into the engine's order
    // here. "metric" equal to labels.__name__ is the same label given twice; unequal values
    // stay as a duplicate for validation to report.
    std::sort(labels.begin(), labels.end(), [](const label_view& a, const label_view& b) {
        return a.name != b.name ? a.name < b.name : a.value < b.value;
    });
    auto last = std::unique(labels.begin(), labels.end(), [](const label_view& a, const label_view& b) {
        return a.name == b.name && a.value == b.value;
    });
    labels.erase(last, labels.end());
    return true;
}

} // namespace

ingest_outcome ingest_json(std::string_view body, engine& eng, const ingest_limits& limits,
                           ingest_counters& counters, time_ms now)
{
    push_precheck precheck(limits.max_samples_per_request);
    json::sax_parse(body.begin(), body.end(), &precheck);
    if (!precheck.error.empty()) {
        return whole_request_error(fmt::format("{}; {}", precheck.error, expected_shape), 0, counters);
    }

    if (precheck.too_many_samples) {
        counters.samples_rejected[static_cast<std::size_t>(reject_reason::too_many_samples)] += precheck.samples;
        ingest_outcome outcome;
        outcome.http_status = 400;
        outcome.rejected = precheck.samples;
        outcome.content_type = json_type;
        outcome.body = dump(json{
            {"accepted", 0},
            {"rejected", precheck.samples},
            {"error", fmt::format("request holds {} samples, more than limits.max_samples_per_request "
                                  "({}); nothing was ingested; split the batch or raise "
                                  "limits.max_samples_per_request",
                                  precheck.samples, limits.max_samples_per_request)},
        });
        return outcome;
    }

    json document;
    try {
        document = json::parse(body.begin(), body.end());
    } catch (const json::exception& e) {
        return whole_request_error(
            fmt::format("body is not valid JSON: {}; {}", e.what(), expected_shape), 0, counters);
    }

    if (!document.is_object()) {
        return whole_request_error(
            fmt::format("body must be a JSON object, got {}; {}", document.type_name(), expected_shape),
            0, counters);
    }
    for (const auto& [key, field] : document.get_ref<const json::object_t&>()) {
        if (key != "samples") {
            return whole_request_error(
                fmt::format(R"(unknown top-level field {}; the body holds only "samples"; {})",
                            quote_text(key), expected_shape),
                0, counters);
        }
    }
    auto samples = document.find("samples");
    if (samples == document.end() || !samples->is_array()) {
        return whole_request_error(
            fmt::format(R"(body has no "samples" array; {})", expected_shape), 0, counters);
    }
    // The first pass already rejected a request with more than max_samples_per_request samples.
    const auto& items = samples->get_ref<const json::array_t&>();

    thread_local std::vector<label_view> labels;
    ingest_outcome outcome;
    json errors = json::array();
    std::size_t omitted = 0;
    std::string message;

    for (std::size_t index = 0; index < items.size(); ++index) {
        message.clear();
        bool keep_message = errors.size() < max_messages;
        time_ms timestamp = now;
        double value = 0;
        reject_reason reason = reject_reason::malformed;
        bool accepted = false;
        if (!decode_sample(items[index], now, labels, timestamp, value, message)) {
            ++counters.samples_rejected[static_cast<std::size_t>(reject_reason::malformed)];
        } else if (!validate_series(labels, labels.size(), limits, false, reason,
                                    keep_message ? &message : nullptr)) {
            ++counters.samples_rejected[static_cast<std::size_t>(reason)];
        } else {
            drop_empty_values(labels);
            accepted = ingest_sample(eng, labels, timestamp, value, counters, reason,
                                     keep_message ? &message : nullptr);
        }

        if (accepted) {
            ++outcome.accepted;
            continue;
        }
        ++outcome.rejected;
        if (keep_message) {
            errors.push_back(json{{"index", index}, {"error", message}});
        } else {
            ++omitted;
        }
    }

    json response{{"accepted", outcome.accepted}, {"rejected", outcome.rejected}, {"errors", std::move(errors)}};
    if (omitted > 0) {
        response["errors_omitted"] = omitted;
    }
    outcome.http_status = outcome.rejected > 0 ? 400 : 200;
    outcome.content_type = json_type;
    outcome.body = dump(response);
    return outcome;
}

} // namespace tocsin
