#include "model/records.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "rules/json_depth.hpp"
#include "rules/sample_time.hpp"

namespace tocsin::model {

using json = nlohmann::json;

namespace {

constexpr std::size_t shown_bytes = 64;
// Unix milliseconds below this are March 1973: a number this small is almost surely seconds.
constexpr double smallest_millis = 1e11;

std::string escape_bytes(std::string_view text)
{
    std::string out;
    for (const char c : text) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte < 0x20 || byte > 0x7e || c == '"' || c == '\\') {
            out += fmt::format("\\x{:02x}", byte);
        } else {
            out += c;
        }
    }
    return out;
}

// Shows a JSON value in a message: a string quoted, anything else as JSON text, both
// shortened and escaped.
std::string show(const json& value)
{
    if (value.is_string()) {
        return quote_value(value.get_ref<const std::string&>());
    }
    return escape_bytes(value.dump().substr(0, shown_bytes));
}

// Builds a json value like nlohmann's DOM parser, but rejects a key that repeats within an
// object, which nlohmann would silently overwrite.
class strict_dom final : public json::json_sax_t {
public:
    bool null() override { return put(json(nullptr)); }
    bool boolean(bool value) override { return put(json(value)); }
    bool number_integer(number_integer_t value) override { return put(json(value)); }
    bool number_unsigned(number_unsigned_t value) override { return put(json(value)); }
    bool number_float(number_float_t value, const string_t&) override { return put(json(value)); }
    bool string(string_t& value) override { return put(json(std::move(value))); }
    bool binary(binary_t& value) override { return put(json::binary(std::move(value))); }
    bool start_object(std::size_t) override
    {
        if (!put(json::object())) {
            return false;
        }
        stack_.push_back(last_);
        return true;
    }
    bool key(string_t& value) override
    {
        if (stack_.back()->contains(value)) {
            error = fmt::format("key {} appears twice in one object; send each key once", quote_value(value));
            return false;
        }
        key_ = std::move(value);
        return true;
    }
    bool end_object() override
    {
        stack_.pop_back();
        return true;
    }
    bool start_array(std::size_t) override
    {
        if (!put(json::array())) {
            return false;
        }
        stack_.push_back(last_);
        return true;
    }
    bool end_array() override
    {
        stack_.pop_back();
        return true;
    }
    bool parse_error(std::size_t position, const std::string& last_token, const nlohmann::detail::exception& ex) override
    {
        if (ex.id == 406) {
            error = fmt::format("number {} is outside the range of a double; send finite numbers (at most about 1.8e308)",
                                quote_value(last_token));
            return false;
        }
        // nlohmann's text: "[json.exception.parse_error.101] parse error at line 1, column 5: <what>; last read: ..."
        std::string_view what = ex.what();
        const auto colon = what.find(": ");
        if (colon != std::string_view::npos) {
            what.remove_prefix(colon + 2);
        }
        const auto last = what.find("; last read");
        if (last != std::string_view::npos) {
            what = what.substr(0, last);
        }
        error = fmt::format("invalid JSON at byte {} of the record: {}, near {}; send one JSON object in UTF-8",
                            position, escape_bytes(what), quote_value(last_token));
        return false;
    }

    json root;
    std::string error;

private:
    bool put(json value)
    {
        if (stack_.empty()) {
            root = std::move(value);
            last_ = &root;
            return true;
        }
        json& parent = *stack_.back();
        if (parent.is_array()) {
            parent.push_back(std::move(value));
            last_ = &parent.back();
        } else {
            last_ = &(parent[key_] = std::move(value));
        }
        return true;
    }

    std::vector<json*> stack_;
    json* last_ = nullptr;
    std::string key_;
};

struct element {
    std::string_view text;
    // 1-based NDJSON line, 0 in an array.
    std::size_t line = 0;
};

bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

std::string_view trim(std::string_view text)
{
    while (!text.empty() && is_space(text.front())) {
        text.remove_prefix(1);
    }
    while (!text.empty() && is_space(text.back())) {
        text.remove_suffix(1);
    }
    return text;
}

// Splits a JSON array into the texts of its elements without parsing them, checking that
// brackets, braces and strings balance and that nesting stays within max_depth.
bool split_array(std::string_view body, const record_limits& limits, std::vector<element>& out, std::string& error)
{
    std::size_t i = 0;
    while (i < body.size() && is_space(body[i])) {
        ++i;
    }
    if (i == body.size() || body[i] != '[') {
        error = "the body must be a JSON array of objects or newline-delimited JSON objects";
        return false;
    }
    std::vector<char> open{'['};
    bool in_string = false;
    std::size_t start = i + 1;
    bool closed = false;
    for (++i; i < body.size(); ++i) {
        const char c = body[i];
        if (in_string) {
            if (c == '\\') {
                ++i;
            } else if (c == '"') {
                in_string = false;
            }
            continue;
        }
        if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            open.push_back(c);
            if (static_cast<int>(open.size()) > limits.max_depth) {
                error = fmt::format("the body nests arrays and objects more than {} deep; send flat records",
                                    limits.max_depth);
                return false;
            }
        } else if (c == ']' || c == '}') {
            if (open.back() != (c == ']' ? '[' : '{')) {
                error = fmt::format("unbalanced '{}' at byte {} of the body; check the brackets and braces", c, i);
                return false;
            }
            open.pop_back();
            if (open.empty()) {
                const std::string_view last = trim(body.substr(start, i - start));
                if (!last.empty() || !out.empty()) {
                    out.push_back({last, 0});
                }
                closed = true;
                break;
            }
        } else if (c == ',' && open.size() == 1) {
            out.push_back({trim(body.substr(start, i - start)), 0});
            start = i + 1;
        }
        if (out.size() > limits.max_records) {
            break;
        }
    }
    if (out.size() > limits.max_records) {
        error = fmt::format("the body holds more than {} records; send at most {} per request", limits.max_records,
                            limits.max_records);
        return false;
    }
    if (!closed) {
        error = in_string ? "the body ends inside a string; close the string and the array"
                          : "the body ends before the array is closed; close every bracket and brace";
        return false;
    }
    if (!trim(body.substr(i + 1)).empty()) {
        error = fmt::format("unexpected text after the array at byte {}; send one array", i + 1);
        return false;
    }
    return true;
}

bool split_lines(std::string_view body, const record_limits& limits, std::vector<element>& out, std::string& error)
{
    if (json_nesting_depth(body) > limits.max_depth) {
        error = fmt::format("the body nests arrays and objects more than {} deep; send flat records", limits.max_depth);
        return false;
    }
    std::size_t line = 0;
    while (!body.empty()) {
        ++line;
        const auto end = body.find('\n');
        const std::string_view text = trim(body.substr(0, end));
        body = end == std::string_view::npos ? std::string_view() : body.substr(end + 1);
        if (text.empty()) {
            continue;
        }
        if (out.size() == limits.max_records) {
            error = fmt::format("the body holds more than {} records; send at most {} per request",
                                limits.max_records, limits.max_records);
            return false;
        }
        out.push_back({text, line});
    }
    return true;
}

bool ndjson_content_type(std::string_view content_type, std::string_view body)
{
    std::string type;
    for (const char c : content_type.substr(0, content_type.find(';'))) {
        if (!is_space(c)) {
            type += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        }
    }
    if (type == "application/x-ndjson" || type == "application/ndjson" || type == "application/jsonl" ||
        type == "application/json-lines" || type == "application/x-jsonlines") {
        return true;
    }
    if (type == "application/json") {
        return false;
    }
    const std::string_view rest = trim(body);
    return rest.empty() || rest.front() != '[';
}

template <typename Item>
bool split_body(std::string_view body, std::string_view content_type, const record_limits& limits,
                batch_result<Item>& result, std::vector<element>& elements)
{
    if (body.size() > limits.max_body_bytes) {
        result.status = body_status::too_large;
        result.body_error = fmt::format("the body has {} bytes, more than the limit of {}; send smaller batches",
                                        body.size(), limits.max_body_bytes);
        return false;
    }
    const bool ok = ndjson_content_type(content_type, body) ? split_lines(body, limits, elements, result.body_error)
                                                             : split_array(body, limits, elements, result.body_error);
    if (!ok) {
        result.status = body_status::malformed;
    }
    return ok;
}

// Parses one element into an object, or sets `error`.
std::optional<json> parse_object(const element& item, std::string& error)
{
    if (item.text.empty()) {
        error = "empty element; remove the extra comma";
        return std::nullopt;
    }
    strict_dom dom;
    if (!json::sax_parse(item.text, &dom) || !dom.error.empty()) {
        error = dom.error.empty() ? "invalid JSON; send one JSON object" : dom.error;
        return std::nullopt;
    }
    if (!dom.root.is_object()) {
        error = fmt::format("the record is a JSON {}; send an object", dom.root.type_name());
        return std::nullopt;
    }
    return std::move(dom.root);
}

std::string where(const element& item)
{
    return item.line == 0 ? std::string() : fmt::format("line {}: ", item.line);
}

// Reads a required or optional short string field.
bool read_name(const json& object, const char* field, bool required, const record_limits& limits,
               std::optional<std::string>& out, std::string& error)
{
    const auto found = object.find(field);
    if (found == object.end() || found->is_null()) {
        if (required) {
            error = fmt::format("field \"{}\" is missing; add it as a string", field);
            return false;
        }
        return true;
    }
    if (!found->is_string()) {
        error = fmt::format("field \"{}\" is a JSON {}; send a string", field, found->type_name());
        return false;
    }
    const auto& text = found->get_ref<const std::string&>();
    if (text.empty()) {
        error = fmt::format("field \"{}\" is empty; send a non-empty string", field);
        return false;
    }
    if (text.size() > limits.max_name_bytes) {
        error = fmt::format("field \"{}\" has {} bytes ({}), more than the limit of {}; shorten it", field,
                            text.size(), quote_value(text), limits.max_name_bytes);
        return false;
    }
    out = text;
    return true;
}

bool read_time(const json& object, std::optional<time_ms>& out, std::string& error)
{
    const auto found = object.find("timestamp");
    if (found == object.end() || found->is_null()) {
        error = "field \"timestamp\" is missing; add RFC 3339 text such as \"2024-05-01T12:00:00Z\" or Unix "
                "milliseconds";
        return false;
    }
    if (found->is_string()) {
        out = parse_rfc3339(found->get_ref<const std::string&>(), error);
        return out.has_value();
    }
    if (!found->is_number()) {
        error = fmt::format("field \"timestamp\" is a JSON {}; send RFC 3339 text or Unix milliseconds",
                            found->type_name());
        return false;
    }
    const double value = found->get<double>();
    if (found->is_number_float() && value != std::floor(value)) {
        error = fmt::format("timestamp {} has a fraction; send whole Unix milliseconds", found->dump());
        return false;
    }
    if (value < smallest_millis) {
        error = fmt::format("timestamp {} is before 1973 in Unix milliseconds; if it is in seconds, multiply it "
                            "by 1000",
                            found->dump());
        return false;
    }
    if (value >= static_cast<double>(timestamp_bound_ms)) {
        error = fmt::format("timestamp {} is out of range; send Unix milliseconds", found->dump());
        return false;
    }
    out = found->is_number_float() ? static_cast<time_ms>(value) : found->get<time_ms>();
    return true;
}

// Maps a class written as 0 or 1, false or true, or one of the schema's classes to 0 or 1.
std::optional<double> read_class(const json& value, const prediction_schema& prediction, std::string_view what,
                                 std::string& error)
{
    if (value.is_boolean()) {
        return value.get<bool>() ? 1.0 : 0.0;
    }
    if (value.is_number()) {
        const double number = value.get<double>();
        if (number == 0.0 || number == 1.0) {
            return number;
        }
    }
    if (value.is_string() && prediction.classes.size() == 2) {
        const auto& text = value.get_ref<const std::string&>();
        if (text == prediction.classes[1]) {
            return 1.0;
        }
        if (text == prediction.classes[0]) {
            return 0.0;
        }
    }
    std::string classes;
    if (prediction.classes.size() == 2) {
        classes = fmt::format(", {} or {}", quote_value(prediction.classes[0]), quote_value(prediction.classes[1]));
    }
    error = fmt::format("{} {} is not a class; send 0 or 1, false or true{}", what, show(value), classes);
    return std::nullopt;
}

bool read_prediction(const json& object, const model_schema& schema, const record_limits& limits,
                     parsed_record& out, std::string& error)
{
    const auto found = object.find("prediction");
    if (found == object.end() || found->is_null()) {
        error = fmt::format("field \"prediction\" is missing; add the model's {}", to_string(schema.prediction.type));
        return false;
    }
    const json& value = *found;
    if (value.is_string() && value.get_ref<const std::string&>().size() > limits.max_string_bytes) {
        error = fmt::format("prediction has {} bytes, more than the limit of {}; shorten it",
                            value.get_ref<const std::string&>().size(), limits.max_string_bytes);
        return false;
    }
    switch (schema.prediction.type) {
    case prediction_type::score: {
        const double score = value.is_number() ? value.get<double>() : -1;
        if (!value.is_number() || !(score >= 0 && score <= 1)) {
            error = fmt::format("prediction {} is not a score; send the probability of the positive class, a "
                                "number from 0 to 1",
                                show(value));
            return false;
        }
        out.prediction.kind = feature_value::kind::number;
        out.prediction.number = score;
        out.prediction_number = score;
        return true;
    }
    case prediction_type::class_label: {
        const auto number = read_class(value, schema.prediction, "prediction", error);
        if (!number) {
            return false;
        }
        out.prediction_number = *number;
        if (value.is_string()) {
            out.prediction.kind = feature_value::kind::text;
            out.prediction.text = value.get<std::string>();
        } else {
            // Classes given as 0/1 or false/true are monitored as the text "0" or "1".
            out.prediction.kind = feature_value::kind::text;
            out.prediction.text = *number == 1.0 ? "1" : "0";
        }
        return true;
    }
    case prediction_type::number:
        if (!value.is_number()) {
            error = fmt::format("prediction is a JSON {}; send a number", value.type_name());
            return false;
        }
        out.prediction.kind = feature_value::kind::number;
        out.prediction.number = value.get<double>();
        out.prediction_number = out.prediction.number;
        return true;
    }
    return false;
}

bool read_features(const json& object, const record_limits& limits, parsed_record& out, std::string& error)
{
    const auto found = object.find("features");
    if (found == object.end() || found->is_null()) {
        error = "field \"features\" is missing; add an object of feature names and values";
        return false;
    }
    if (!found->is_object()) {
        error = fmt::format("field \"features\" is a JSON {}; send an object of feature names and values",
                            found->type_name());
        return false;
    }
    if (found->size() > limits.max_features) {
        error = fmt::format("the record has {} features, more than the limit of {}; send at most {}", found->size(),
                            limits.max_features, limits.max_features);
        return false;
    }
    out.features.reserve(found->size());
    for (auto it = found->begin(); it != found->end(); ++it) {
        const std::string& name = it.key();
        if (name.empty() || name.size() > limits.max_name_bytes) {
            error = fmt::format("feature name {} has {} bytes; send names of 1 to {} bytes", quote_value(name),
                                name.size(), limits.max_name_bytes);
            return false;
        }
        parsed_feature feature;
        feature.name = name;
        const json& value = it.value();
        switch (value.type()) {
        case json::value_t::null:
            break;
        case json::value_t::boolean:
            feature.value.kind = feature_value::kind::boolean;
            feature.value.boolean = value.get<bool>();
            break;
        case json::value_t::number_integer:
        case json::value_t::number_unsigned:
        case json::value_t::number_float:
            feature.value.kind = feature_value::kind::number;
            feature.value.number = value.get<double>();
            break;
        case json::value_t::string:
            if (value.get_ref<const std::string&>().size() > limits.max_string_bytes) {
                error = fmt::format("feature {} has a string of {} bytes, more than the limit of {}; shorten it",
                                    quote_value(name), value.get_ref<const std::string&>().size(),
                                    limits.max_string_bytes);
                return false;
            }
            feature.value.kind = feature_value::kind::text;
            feature.value.text = value.get<std::string>();
            break;
        default:
            error = fmt::format("feature {} is a JSON {}; send a number, a string, a boolean or null",
                                quote_value(name), value.type_name());
            return false;
        }
        out.features.push_back(std::move(feature));
    }
    return true;
}

bool check_fields(const json& object, std::initializer_list<std::string_view> allowed, std::string& error)
{
    for (auto it = object.begin(); it != object.end(); ++it) {
        if (std::find(allowed.begin(), allowed.end(), it.key()) == allowed.end()) {
            std::string list;
            for (const auto name : allowed) {
                list += list.empty() ? "" : ", ";
                list += name;
            }
            error = fmt::format("unknown field {}; expected {}", quote_value(it.key()), list);
            return false;
        }
    }
    return true;
}

const model_schema* find_model(const json& object, const schema_set& schemas, const record_limits& limits,
                               std::string& model, std::string& error)
{
    std::optional<std::string> name;
    if (!read_name(object, "model", true, limits, name, error)) {
        return nullptr;
    }
    const model_schema* schema = schemas.find(*name);
    if (schema == nullptr) {
        error = fmt::format("unknown model {}; declare it in the model schema file or fix the name",
                            quote_value(*name));
        return nullptr;
    }
    model = std::move(*name);
    return schema;
}

std::optional<parsed_record> read_record(const json& object, const schema_set& schemas, const record_limits& limits,
                                         std::string& error)
{
    if (!check_fields(object, {"model", "version", "timestamp", "id", "features", "prediction"}, error)) {
        return std::nullopt;
    }
    parsed_record out;
    const model_schema* schema = find_model(object, schemas, limits, out.model, error);
    if (schema == nullptr) {
        return std::nullopt;
    }
    std::optional<std::string> version;
    std::optional<time_ms> time;
    if (!read_name(object, "version", true, limits, version, error) ||
        !read_name(object, "id", false, limits, out.id, error) || !read_time(object, time, error) ||
        !read_features(object, limits, out, error) || !read_prediction(object, *schema, limits, out, error)) {
        return std::nullopt;
    }
    out.version = std::move(*version);
    out.time = *time;
    return out;
}

std::optional<parsed_outcome> read_outcome(const json& object, const schema_set& schemas,
                                           const record_limits& limits, std::string& error)
{
    if (!check_fields(object, {"model", "version", "timestamp", "id", "outcome"}, error)) {
        return std::nullopt;
    }
    parsed_outcome out;
    const model_schema* schema = find_model(object, schemas, limits, out.model, error);
    if (schema == nullptr) {
        return std::nullopt;
    }
    std::optional<std::string> id;
    std::optional<time_ms> time;
    if (!read_name(object, "version", false, limits, out.version, error) ||
        !read_name(object, "id", true, limits, id, error) || !read_time(object, time, error)) {
        return std::nullopt;
    }
    out.id = std::move(*id);
    out.time = *time;
    const auto found = object.find("outcome");
    if (found == object.end() || found->is_null()) {
        error = "field \"outcome\" is missing; add the observed value";
        return std::nullopt;
    }
    if (schema->task == prediction_task::regression) {
        if (!found->is_number()) {
            error = fmt::format("outcome is a JSON {}; send the observed number", found->type_name());
            return std::nullopt;
        }
        out.outcome = found->get<double>();
        return out;
    }
    const auto number = read_class(*found, schema->prediction, "outcome", error);
    if (!number) {
        return std::nullopt;
    }
    out.outcome = *number;
    return out;
}

template <typename Item, typename Reader>
batch_result<Item> parse_batch(std::string_view body, std::string_view content_type, const schema_set& schemas,
                               const record_limits& limits, Reader reader)
{
    batch_result<Item> result;
    std::vector<element> elements;
    if (!split_body(body, content_type, limits, result, elements)) {
        return result;
    }
    result.items.reserve(elements.size());
    for (std::size_t index = 0; index < elements.size(); ++index) {
        std::string error;
        auto object = parse_object(elements[index], error);
        std::optional<Item> item;
        if (object) {
            item = reader(*object, schemas, limits, error);
        }
        if (!item) {
            result.errors.push_back({index, where(elements[index]) + error});
            continue;
        }
        item->index = index;
        result.items.push_back(std::move(*item));
    }
    return result;
}

bool digits(std::string_view text, std::size_t pos, std::size_t count)
{
    if (pos + count > text.size()) {
        return false;
    }
    for (std::size_t i = pos; i < pos + count; ++i) {
        if (text[i] < '0' || text[i] > '9') {
            return false;
        }
    }
    return true;
}

}  // namespace

feature_value owned_value::view() const
{
    switch (kind) {
    case feature_value::kind::null:
        return feature_value::null();
    case feature_value::kind::number:
        return feature_value::number(number);
    case feature_value::kind::text:
        return feature_value::text(text);
    case feature_value::kind::boolean:
        return feature_value::boolean(boolean);
    }
    return feature_value::null();
}

std::vector<named_feature_value> parsed_record::views() const
{
    std::vector<named_feature_value> out;
    out.reserve(features.size());
    for (const parsed_feature& feature : features) {
        out.push_back({feature.name, feature.value.view()});
    }
    return out;
}

std::string quote_value(std::string_view text)
{
    if (text.size() <= shown_bytes) {
        return "\"" + escape_bytes(text) + "\"";
    }
    return fmt::format("\"{}\"... ({} bytes)", escape_bytes(text.substr(0, shown_bytes)), text.size());
}

std::optional<time_ms> parse_rfc3339(std::string_view text, std::string& error)
{
    // YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM), 'T' and 'Z' in either case.
    bool ok = text.size() >= 20 && digits(text, 0, 4) && text[4] == '-' && digits(text, 5, 2) && text[7] == '-' &&
              digits(text, 8, 2) && (text[10] == 'T' || text[10] == 't') && digits(text, 11, 2) &&
              text[13] == ':' && digits(text, 14, 2) && text[16] == ':' && digits(text, 17, 2);
    std::size_t pos = 19;
    if (ok && pos < text.size() && text[pos] == '.') {
        const std::size_t begin = ++pos;
        while (pos < text.size() && digits(text, pos, 1)) {
            ++pos;
        }
        ok = pos > begin && pos - begin <= 9;
    }
    if (ok) {
        const std::string_view zone = text.substr(pos);
        ok = zone == "Z" || zone == "z" ||
             (zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && digits(zone, 1, 2) && zone[3] == ':' &&
              digits(zone, 4, 2));
    }
    if (!ok) {
        error = fmt::format("timestamp {} is not RFC 3339; send text such as \"2024-05-01T12:00:00Z\" or "
                            "\"2024-05-01T14:00:00.250+02:00\", or Unix milliseconds as a number",
                            quote_value(text));
        return std::nullopt;
    }
    std::optional<bool> unit;
    std::string problem;
    auto time = parse_sample_timestamp(text, unit, problem);
    if (!time) {
        error = fmt::format("timestamp {}: {}", quote_value(text), problem);
        return std::nullopt;
    }
    if (*time < static_cast<time_ms>(smallest_millis)) {
        error = fmt::format("timestamp {} is before 1973; send the time the prediction was made", quote_value(text));
        return std::nullopt;
    }
    return time;
}

record_batch parse_records(std::string_view body, std::string_view content_type, const schema_set& schemas,
                           const record_limits& limits)
{
    return parse_batch<parsed_record>(body, content_type, schemas, limits, read_record);
}

outcome_batch parse_outcomes(std::string_view body, std::string_view content_type, const schema_set& schemas,
                             const record_limits& limits)
{
    return parse_batch<parsed_outcome>(body, content_type, schemas, limits, read_outcome);
}

}  // namespace tocsin::model
