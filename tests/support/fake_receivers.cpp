#include "support/fake_receivers.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <random>
#include <regex>
#include <stdexcept>

#include <httplib.h>

namespace tocsin::test {

namespace {

using json = nlohmann::json;

// PagerDuty limits an Events API payload to 512 KB. Alertmanager keeps its encoded events at or
// below 512000 bytes, so that is the limit enforced here.
constexpr std::size_t pagerduty_max_body_bytes = 512000;
constexpr std::size_t pagerduty_max_summary_chars = 1024;
constexpr std::size_t pagerduty_max_dedup_key_chars = 255;

// Slack message and Block Kit limits, in characters or items.
constexpr std::size_t slack_max_text_chars = 40000;
constexpr std::size_t slack_max_blocks = 50;
constexpr std::size_t slack_max_attachments = 100;
constexpr std::size_t slack_max_section_text_chars = 3000;
constexpr std::size_t slack_max_section_field_chars = 2000;
constexpr std::size_t slack_max_section_fields = 10;
constexpr std::size_t slack_max_header_chars = 150;
constexpr std::size_t slack_max_context_elements = 10;
constexpr std::size_t slack_max_actions_elements = 25;
constexpr std::size_t slack_max_markdown_block_chars = 12000;
constexpr std::size_t slack_max_block_id_chars = 255;
constexpr std::size_t slack_max_image_url_chars = 3000;
constexpr std::size_t slack_max_alt_text_chars = 2000;
constexpr std::size_t slack_max_footer_chars = 300;

class steady_ms_clock final : public tocsin::clock {
public:
    time_ms now_ms() const override
    {
        using namespace std::chrono;
        return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
    }
};

bool starts_with_ci(std::string_view text, std::string_view prefix)
{
    if (text.size() < prefix.size()) {
        return false;
    }
    for (std::size_t i = 0; i < prefix.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(text[i])) !=
            std::tolower(static_cast<unsigned char>(prefix[i]))) {
            return false;
        }
    }
    return true;
}

// True for "application/json" with or without parameters such as "; charset=utf-8".
bool is_media_type(std::string_view content_type, std::string_view media_type)
{
    if (!starts_with_ci(content_type, media_type)) {
        return false;
    }
    auto rest = content_type.substr(media_type.size());
    return rest.empty() || rest.front() == ';' || rest.front() == ' ';
}

std::optional<json> parse_json(std::string_view body, std::string* error = nullptr)
{
    try {
        return json::parse(body);
    } catch (const json::parse_error& e) {
        if (error != nullptr) {
            *error = e.what();
        }
        return std::nullopt;
    }
}

int hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

std::optional<std::string> percent_decode(std::string_view text)
{
    std::string out;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '+') {
            out += ' ';
        } else if (text[i] == '%') {
            if (i + 2 >= text.size()) {
                return std::nullopt;
            }
            int high = hex_value(text[i + 1]);
            int low = hex_value(text[i + 2]);
            if (high < 0 || low < 0) {
                return std::nullopt;
            }
            out += static_cast<char>(high * 16 + low);
            i += 2;
        } else {
            out += text[i];
        }
    }
    return out;
}

// Parses an application/x-www-form-urlencoded body; std::nullopt when malformed.
std::optional<std::map<std::string, std::string>> parse_form(std::string_view body)
{
    std::map<std::string, std::string> fields;
    while (!body.empty()) {
        auto amp = body.find('&');
        auto pair = body.substr(0, amp);
        body = amp == std::string_view::npos ? std::string_view{} : body.substr(amp + 1);
        if (pair.empty()) {
            continue;
        }
        auto eq = pair.find('=');
        auto name = percent_decode(pair.substr(0, eq));
        auto value = percent_decode(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1));
        if (!name || !value) {
            return std::nullopt;
        }
        fields[*name] = *value;
    }
    return fields;
}

std::string generate_uuid()
{
    static std::mutex mutex;
    static std::mt19937_64 generator{std::random_device{}()};
    std::uint64_t high = 0;
    std::uint64_t low = 0;
    {
        std::lock_guard lock(mutex);
        high = generator();
        low = generator();
    }
    high = (high & 0xffffffffffff0fffULL) | 0x0000000000004000ULL; // version 4
    low = (low & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;   // RFC 4122 variant
    char text[37];
    std::snprintf(text, sizeof text, "%08x-%04x-%04x-%04x-%012llx",
                  static_cast<unsigned>(high >> 32), static_cast<unsigned>((high >> 16) & 0xffff),
                  static_cast<unsigned>(high & 0xffff), static_cast<unsigned>(low >> 48),
                  static_cast<unsigned long long>(low & 0xffffffffffffULL));
    return text;
}

const json* member(const json& object, const char* name)
{
    auto it = object.find(name);
    return it == object.end() ? nullptr : &*it;
}

bool is_nonempty_string(const json* value)
{
    return value != nullptr && value->is_string() && !value->get_ref<const std::string&>().empty();
}

std::size_t chars_or_max(const std::string& text)
{
    return count_code_points(text).value_or(static_cast<std::size_t>(-1));
}

// ---- PagerDuty -------------------------------------------------------------------------------

const std::regex& iso8601_pattern()
{
    // Date, time, optional fraction, then Z or an offset with or without a colon, as PagerDuty's
    // own example "2015-07-17T08:42:58.315+0000" shows.
    static const std::regex pattern(
        R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})$)");
    return pattern;
}

int digits_at(const std::string& text, std::size_t pos, std::size_t count)
{
    return std::stoi(text.substr(pos, count));
}

// An ISO 8601 date-time of iso8601_pattern()'s shape whose fields are in range: a real day of
// its month, hour below 24, minute below 60, second up to 60 (a leap second), offset below 24h.
bool valid_iso8601(const std::string& text)
{
    if (!std::regex_match(text, iso8601_pattern())) {
        return false;
    }
    const int year = digits_at(text, 0, 4);
    const int month = digits_at(text, 5, 2);
    const int day = digits_at(text, 8, 2);
    static constexpr int month_days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (month < 1 || month > 12 || day < 1 || day > month_days[month - 1]) {
        return false;
    }
    const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (month == 2 && day == 29 && !leap) {
        return false;
    }
    if (digits_at(text, 11, 2) > 23 || digits_at(text, 14, 2) > 59 || digits_at(text, 17, 2) > 60) {
        return false;
    }
    const auto zone = text.find_first_of("Z+-", 19);
    if (text[zone] != 'Z') {
        const std::size_t minutes = text[zone + 3] == ':' ? zone + 4 : zone + 3;
        if (digits_at(text, zone + 1, 2) > 23 || digits_at(text, minutes, 2) > 59) {
            return false;
        }
    }
    return true;
}

void check_optional_string(const json& object, const char* name, const std::string& where,
                           std::vector<std::string>& errors)
{
    const json* value = member(object, name);
    if (value != nullptr && !value->is_string()) {
        errors.push_back("'" + where + name + "' must be a string");
    }
}

void validate_pagerduty_payload(const json& payload, bool required_fields, bool reject_over_limit,
                                std::vector<std::string>& errors)
{
    const json* summary = member(payload, "summary");
    if (summary == nullptr || (summary->is_string() && summary->get_ref<const std::string&>().empty())) {
        if (required_fields) {
            errors.emplace_back("'payload.summary' is missing or blank");
        }
    } else if (!summary->is_string()) {
        errors.emplace_back("'payload.summary' must be a string");
    } else {
        auto chars = count_code_points(summary->get_ref<const std::string&>());
        if (!chars) {
            errors.emplace_back("'payload.summary' is not valid UTF-8");
        } else if (*chars > pagerduty_max_summary_chars && reject_over_limit) {
            errors.push_back("'payload.summary' is " + std::to_string(*chars) +
                             " characters long; the maximum is 1024");
        }
    }

    const json* source = member(payload, "source");
    if (source == nullptr || (source->is_string() && source->get_ref<const std::string&>().empty())) {
        if (required_fields) {
            errors.emplace_back("'payload.source' is missing or blank");
        }
    } else if (!source->is_string()) {
        errors.emplace_back("'payload.source' must be a string");
    }

    const json* severity = member(payload, "severity");
    if (severity == nullptr) {
        if (required_fields) {
            errors.emplace_back("'payload.severity' is missing or blank");
        }
    } else {
        static const std::set<std::string> allowed{"critical", "error", "warning", "info"};
        if (!severity->is_string() || allowed.count(severity->get<std::string>()) == 0) {
            errors.push_back("'payload.severity' is invalid: " + severity->dump() +
                             " (must be one of critical, error, warning, info)");
        }
    }

    const json* timestamp = member(payload, "timestamp");
    if (timestamp != nullptr) {
        // NOTE: the timestamp check is an assumption; PagerDuty documents ISO 8601 but not how it
        // treats other strings.
        if (!timestamp->is_string() ||
            !std::regex_match(timestamp->get<std::string>(), iso8601_pattern())) {
            errors.push_back("'payload.timestamp' is not an ISO 8601 date-time: " + timestamp->dump());
        }
    }
    for (const char* name : {"component", "group", "class"}) {
        check_optional_string(payload, name, "payload.", errors);
    }
    const json* details = member(payload, "custom_details");
    if (details != nullptr && !details->is_object() && !details->is_null()) {
        errors.emplace_back("'payload.custom_details' must be an object");
    }
}

void validate_pagerduty_images_and_links(const json& event, bool reject_over_limit,
                                         std::vector<std::string>& errors)
{
    if (const json* images = member(event, "images"); images != nullptr) {
        if (!images->is_array()) {
            errors.emplace_back("'images' must be an array");
        } else {
            for (std::size_t i = 0; i < images->size(); ++i) {
                const json& image = (*images)[i];
                std::string where = "images[" + std::to_string(i) + "]";
                if (!image.is_object()) {
                    errors.push_back("'" + where + "' must be an object");
                    continue;
                }
                const json* src = member(image, "src");
                if (!is_nonempty_string(src)) {
                    if (reject_over_limit) {
                        errors.push_back("'" + where + ".src' is missing or blank");
                    }
                } else if (!starts_with_ci(src->get_ref<const std::string&>(), "https://") &&
                           reject_over_limit) {
                    errors.push_back("'" + where + ".src' must be an https URL, got " + src->dump());
                }
                check_optional_string(image, "href", where + ".", errors);
                check_optional_string(image, "alt", where + ".", errors);
            }
        }
    }
    if (const json* links = member(event, "links"); links != nullptr) {
        if (!links->is_array()) {
            errors.emplace_back("'links' must be an array");
        } else {
            for (std::size_t i = 0; i < links->size(); ++i) {
                const json& link = (*links)[i];
                std::string where = "links[" + std::to_string(i) + "]";
                if (!link.is_object()) {
                    errors.push_back("'" + where + "' must be an object");
                    continue;
                }
                if (!is_nonempty_string(member(link, "href")) && reject_over_limit) {
                    errors.push_back("'" + where + ".href' is missing or blank");
                }
                check_optional_string(link, "text", where + ".", errors);
            }
        }
    }
}

// ---- Slack -----------------------------------------------------------------------------------

// A Block Kit text object: {"type": "plain_text"|"mrkdwn", "text": "…"} with 1..max characters.
bool valid_text_object(const json* object, std::size_t max_chars, bool plain_text_only = false)
{
    if (object == nullptr || !object->is_object()) {
        return false;
    }
    const json* type = member(*object, "type");
    const json* text = member(*object, "text");
    if (type == nullptr || !type->is_string() || text == nullptr || !text->is_string()) {
        return false;
    }
    const auto& type_name = type->get_ref<const std::string&>();
    if (type_name != "plain_text" && (plain_text_only || type_name != "mrkdwn")) {
        return false;
    }
    std::size_t chars = chars_or_max(text->get_ref<const std::string&>());
    return chars >= 1 && chars <= max_chars;
}

bool valid_string_within(const json* value, std::size_t max_chars, bool required)
{
    if (value == nullptr) {
        return !required;
    }
    if (!value->is_string()) {
        return false;
    }
    std::size_t chars = chars_or_max(value->get_ref<const std::string&>());
    return chars <= max_chars && (!required || chars >= 1);
}

bool valid_block(const json& block)
{
    if (!block.is_object() || !is_nonempty_string(member(block, "type"))) {
        return false;
    }
    if (!valid_string_within(member(block, "block_id"), slack_max_block_id_chars, false)) {
        return false;
    }
    const auto& type = block["type"].get_ref<const std::string&>();
    if (type == "section") {
        const json* text = member(block, "text");
        const json* fields = member(block, "fields");
        if (text == nullptr && fields == nullptr) {
            return false;
        }
        if (text != nullptr && !valid_text_object(text, slack_max_section_text_chars)) {
            return false;
        }
        if (fields != nullptr) {
            if (!fields->is_array() || fields->empty() || fields->size() > slack_max_section_fields) {
                return false;
            }
            for (const auto& field : *fields) {
                if (!valid_text_object(&field, slack_max_section_field_chars)) {
                    return false;
                }
            }
        }
        return true;
    }
    if (type == "header") {
        return valid_text_object(member(block, "text"), slack_max_header_chars, true);
    }
    if (type == "context") {
        const json* elements = member(block, "elements");
        if (elements == nullptr || !elements->is_array() || elements->empty() ||
            elements->size() > slack_max_context_elements) {
            return false;
        }
        for (const auto& element : *elements) {
            if (!element.is_object()) {
                return false;
            }
            const json* element_type = member(element, "type");
            if (element_type != nullptr && *element_type == "image") {
                if (!valid_string_within(member(element, "image_url"), slack_max_image_url_chars, true) ||
                    !valid_string_within(member(element, "alt_text"), slack_max_alt_text_chars, true)) {
                    return false;
                }
            } else if (!valid_text_object(&element, slack_max_section_text_chars)) {
                return false;
            }
        }
        return true;
    }
    if (type == "actions") {
        const json* elements = member(block, "elements");
        if (elements == nullptr || !elements->is_array() || elements->empty() ||
            elements->size() > slack_max_actions_elements) {
            return false;
        }
        return std::all_of(elements->begin(), elements->end(), [](const json& element) {
            return element.is_object() && is_nonempty_string(member(element, "type"));
        });
    }
    if (type == "image") {
        return valid_string_within(member(block, "image_url"), slack_max_image_url_chars, true) &&
               valid_string_within(member(block, "alt_text"), slack_max_alt_text_chars, true);
    }
    if (type == "markdown") {
        return valid_string_within(member(block, "text"), slack_max_markdown_block_chars, true);
    }
    // Other block types (divider, rich_text, …) are accepted as they are.
    return true;
}

// ---- Alertmanager webhook ---------------------------------------------------------------------

const std::regex& rfc3339_pattern()
{
    // Go's time.Time marshals as RFC 3339 with an optional fraction and a colon in the offset.
    static const std::regex pattern(
        R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$)");
    return pattern;
}

void check_string_map(const json& object, const char* name, const std::string& where,
                      std::vector<std::string>& errors)
{
    const json* value = member(object, name);
    if (value == nullptr) {
        errors.push_back(where + name + " is missing");
        return;
    }
    if (!value->is_object()) {
        errors.push_back(where + name + " must be an object of strings");
        return;
    }
    for (const auto& [key, item] : value->items()) {
        if (!item.is_string()) {
            errors.push_back(where + name + "." + key + " must be a string");
        }
    }
}

void check_required_string(const json& object, const char* name, const std::string& where,
                           std::vector<std::string>& errors)
{
    const json* value = member(object, name);
    if (value == nullptr || !value->is_string()) {
        errors.push_back(where + name + " must be a string");
    }
}

void check_status(const json& object, const std::string& where, std::vector<std::string>& errors)
{
    const json* status = member(object, "status");
    if (status == nullptr || !status->is_string() || (*status != "firing" && *status != "resolved")) {
        errors.push_back(where + "status must be \"firing\" or \"resolved\"");
    }
}

void validate_webhook_alert(const json& alert, const std::string& where, std::vector<std::string>& errors)
{
    if (!alert.is_object()) {
        errors.push_back(where + " must be an object");
        return;
    }
    std::string prefix = where + ".";
    check_status(alert, prefix, errors);
    check_string_map(alert, "labels", prefix, errors);
    check_string_map(alert, "annotations", prefix, errors);
    for (const char* name : {"startsAt", "endsAt"}) {
        const json* time = member(alert, name);
        if (time == nullptr || !time->is_string() ||
            !std::regex_match(time->get<std::string>(), rfc3339_pattern())) {
            errors.push_back(prefix + name + " must be an RFC 3339 time");
        }
    }
    check_required_string(alert, "generatorURL", prefix, errors);
    static const std::regex fingerprint_pattern("^[0-9a-f]{16}$");
    const json* fingerprint = member(alert, "fingerprint");
    if (fingerprint == nullptr || !fingerprint->is_string() ||
        !std::regex_match(fingerprint->get<std::string>(), fingerprint_pattern)) {
        errors.push_back(prefix + "fingerprint must be 16 lower-case hex digits");
    }
}

void append_mrkdwn_strings_of_blocks(const json& blocks, std::vector<std::string>& out)
{
    if (!blocks.is_array()) {
        return;
    }
    auto add_text_object = [&out](const json* object) {
        if (object != nullptr && object->is_object() && object->value("type", "") == "mrkdwn") {
            const json* text = member(*object, "text");
            if (text != nullptr && text->is_string()) {
                out.push_back(text->get<std::string>());
            }
        }
    };
    for (const auto& block : blocks) {
        if (!block.is_object()) {
            continue;
        }
        add_text_object(member(block, "text"));
        if (block.value("type", "") == "markdown") {
            const json* text = member(block, "text");
            if (text != nullptr && text->is_string()) {
                out.push_back(text->get<std::string>());
            }
        }
        for (const char* list : {"fields", "elements"}) {
            const json* items = member(block, list);
            if (items != nullptr && items->is_array()) {
                for (const auto& item : *items) {
                    add_text_object(&item);
                }
            }
        }
    }
}

std::string to_lower(std::string text)
{
    std::transform(text.begin(), text.end(), text.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return text;
}

std::string pagerduty_error_body(const std::vector<std::string>& errors)
{
    // Error texts may quote invalid UTF-8 from the request; replace it so that dump() cannot throw.
    return json{{"status", "invalid event"}, {"message", "Event object is invalid"}, {"errors", errors}}
        .dump(-1, ' ', false, json::error_handler_t::replace);
}

// The routing key check shared by alert and change events.
void check_routing_key(const json& event, std::vector<std::string>& errors)
{
    const json* routing_key = member(event, "routing_key");
    if (!is_nonempty_string(routing_key)) {
        errors.emplace_back("'routing_key' is missing or blank");
    } else if (chars_or_max(routing_key->get<std::string>()) != 32) {
        errors.emplace_back("Length of 'routing_key' is incorrect (should be 32 characters)");
    }
}

std::string join(const std::vector<std::string>& items, std::string_view separator)
{
    std::string out;
    for (const auto& item : items) {
        if (!out.empty()) {
            out += separator;
        }
        out += item;
    }
    return out;
}

} // namespace

std::string_view to_string(receiver_kind kind)
{
    switch (kind) {
    case receiver_kind::pagerduty:
        return "pagerduty";
    case receiver_kind::slack:
        return "slack";
    case receiver_kind::slack_api:
        return "slack_api";
    case receiver_kind::webhook:
        return "webhook";
    case receiver_kind::pagerduty_change:
        return "pagerduty_change";
    }
    return "unknown";
}

std::optional<std::size_t> count_code_points(std::string_view utf8)
{
    std::size_t count = 0;
    std::size_t i = 0;
    while (i < utf8.size()) {
        auto lead = static_cast<unsigned char>(utf8[i]);
        std::size_t length = 0;
        std::uint32_t code_point = 0;
        if (lead < 0x80) {
            length = 1;
            code_point = lead;
        } else if (lead >= 0xc2 && lead <= 0xdf) {
            length = 2;
            code_point = lead & 0x1f;
        } else if (lead >= 0xe0 && lead <= 0xef) {
            length = 3;
            code_point = lead & 0x0f;
        } else if (lead >= 0xf0 && lead <= 0xf4) {
            length = 4;
            code_point = lead & 0x07;
        } else {
            return std::nullopt;
        }
        if (i + length > utf8.size()) {
            return std::nullopt;
        }
        for (std::size_t k = 1; k < length; ++k) {
            auto next = static_cast<unsigned char>(utf8[i + k]);
            if ((next & 0xc0) != 0x80) {
                return std::nullopt;
            }
            code_point = (code_point << 6) | (next & 0x3f);
        }
        // Overlong forms, UTF-16 surrogates and values above U+10FFFF are invalid.
        if ((length == 3 && code_point < 0x800) || (length == 4 && code_point < 0x10000) ||
            (code_point >= 0xd800 && code_point <= 0xdfff) || code_point > 0x10ffff) {
            return std::nullopt;
        }
        i += length;
        ++count;
    }
    return count;
}

std::vector<std::string> validate_pagerduty_event(const json& event, bool reject_over_limit)
{
    std::vector<std::string> errors;
    if (!event.is_object()) {
        errors.emplace_back("Event must be a JSON object");
        return errors;
    }

    check_routing_key(event, errors);

    const json* action = member(event, "event_action");
    std::string action_name;
    if (!is_nonempty_string(action)) {
        errors.emplace_back("'event_action' is missing or blank");
    } else {
        action_name = action->get<std::string>();
        if (action_name != "trigger" && action_name != "acknowledge" && action_name != "resolve") {
            errors.push_back("'event_action' is invalid: \"" + action_name +
                             "\" (must be one of trigger, acknowledge, resolve)");
            action_name.clear();
        }
    }

    const json* dedup_key = member(event, "dedup_key");
    if (dedup_key != nullptr && !dedup_key->is_string() && !dedup_key->is_null()) {
        errors.emplace_back("'dedup_key' must be a string");
    } else if (is_nonempty_string(dedup_key)) {
        auto chars = count_code_points(dedup_key->get_ref<const std::string&>());
        if (!chars) {
            errors.emplace_back("'dedup_key' is not valid UTF-8");
        } else if (*chars > pagerduty_max_dedup_key_chars && reject_over_limit) {
            errors.push_back("'dedup_key' is " + std::to_string(*chars) +
                             " characters long; the maximum is 255");
        }
    } else if (action_name == "acknowledge" || action_name == "resolve") {
        errors.push_back("'dedup_key' is missing or blank; it is required for " + action_name);
    }

    const json* payload = member(event, "payload");
    if (payload == nullptr || payload->is_null()) {
        if (action_name == "trigger") {
            errors.emplace_back("'payload' is missing; it is required for trigger");
        }
    } else if (!payload->is_object()) {
        errors.emplace_back("'payload' must be an object");
    } else {
        // Acknowledge and resolve need no payload, but one that is sent (Alertmanager sends it
        // on resolve) must still be well-formed.
        validate_pagerduty_payload(*payload, action_name == "trigger", reject_over_limit, errors);
    }

    check_optional_string(event, "client", "", errors);
    check_optional_string(event, "client_url", "", errors);
    validate_pagerduty_images_and_links(event, reject_over_limit, errors);
    return errors;
}

std::vector<std::string> validate_pagerduty_change_event(const json& event, bool reject_over_limit)
{
    std::vector<std::string> errors;
    if (!event.is_object()) {
        errors.emplace_back("Event must be a JSON object");
        return errors;
    }
    check_routing_key(event, errors);
    for (const auto& [name, value] : event.items()) {
        if (name == "event_action" || name == "dedup_key") {
            errors.push_back("'" + name + "' is not allowed in a change event");
        } else if (name != "routing_key" && name != "payload" && name != "links") {
            errors.push_back("'" + name + "' is not a field of a change event");
        }
    }

    const json* payload = member(event, "payload");
    if (payload == nullptr || payload->is_null()) {
        errors.emplace_back("'payload' is missing");
    } else if (!payload->is_object()) {
        errors.emplace_back("'payload' must be an object");
    } else {
        const json* summary = member(*payload, "summary");
        if (summary == nullptr || (summary->is_string() && summary->get_ref<const std::string&>().empty())) {
            errors.emplace_back("'payload.summary' is missing or blank");
        } else if (!summary->is_string()) {
            errors.emplace_back("'payload.summary' must be a string");
        } else if (auto chars = count_code_points(summary->get_ref<const std::string&>()); !chars) {
            errors.emplace_back("'payload.summary' is not valid UTF-8");
        } else if (*chars > pagerduty_max_summary_chars && reject_over_limit) {
            errors.push_back("'payload.summary' is " + std::to_string(*chars) +
                             " characters long; the maximum is 1024");
        }
        if (const json* timestamp = member(*payload, "timestamp");
            timestamp != nullptr && (!timestamp->is_string() || !valid_iso8601(timestamp->get<std::string>()))) {
            errors.push_back("'payload.timestamp' is not an ISO 8601 date-time: " + timestamp->dump());
        }
        check_optional_string(*payload, "source", "payload.", errors);
        if (const json* details = member(*payload, "custom_details"); details != nullptr && !details->is_object()) {
            errors.emplace_back("'payload.custom_details' must be an object");
        }
        // NOTE: PagerDuty does not document whether it rejects other payload members, such as an
        // alert's severity. Rejecting them here catches a sender that mixes up the two kinds of event.
        for (const auto& [name, value] : payload->items()) {
            if (name != "summary" && name != "timestamp" && name != "source" && name != "custom_details") {
                errors.push_back("'payload." + name + "' is not a field of a change event");
            }
        }
    }

    if (const json* links = member(event, "links"); links != nullptr) {
        if (!links->is_array()) {
            errors.emplace_back("'links' must be an array");
        } else {
            for (std::size_t i = 0; i < links->size(); ++i) {
                const json& link = (*links)[i];
                const std::string where = "links[" + std::to_string(i) + "]";
                if (!link.is_object()) {
                    errors.push_back("'" + where + "' must be an object");
                    continue;
                }
                if (!is_nonempty_string(member(link, "href"))) {
                    errors.push_back("'" + where + ".href' is missing or blank");
                }
                check_optional_string(link, "text", where + ".", errors);
            }
        }
    }
    return errors;
}

std::string validate_slack_message(const json& message)
{
    if (!message.is_object()) {
        return "invalid_payload";
    }
    const json* text = member(message, "text");
    if (text != nullptr && !text->is_string() && !text->is_null()) {
        return "invalid_payload";
    }
    bool has_text = is_nonempty_string(text);
    if (has_text) {
        auto chars = count_code_points(text->get_ref<const std::string&>());
        if (!chars) {
            return "invalid_payload";
        }
        // NOTE: Slack truncates top-level text beyond 40,000 characters instead of rejecting
        // it; rejecting here makes tests catch a sender that relies on the truncation.
        if (*chars > slack_max_text_chars) {
            return "msg_too_long";
        }
    }

    bool has_blocks = false;
    if (const json* blocks = member(message, "blocks"); blocks != nullptr && !blocks->is_null()) {
        if (!blocks->is_array()) {
            return "invalid_blocks_format";
        }
        if (blocks->size() > slack_max_blocks) {
            return "invalid_blocks";
        }
        if (!std::all_of(blocks->begin(), blocks->end(), valid_block)) {
            return "invalid_blocks";
        }
        has_blocks = !blocks->empty();
    }

    bool has_attachments = false;
    if (const json* attachments = member(message, "attachments");
        attachments != nullptr && !attachments->is_null()) {
        if (!attachments->is_array()) {
            return "invalid_attachments";
        }
        // NOTE: the error code for more than 100 attachments is not documented.
        if (attachments->size() > slack_max_attachments) {
            return "too_many_attachments";
        }
        for (const auto& attachment : *attachments) {
            if (!attachment.is_object()) {
                return "invalid_attachments";
            }
            if (!valid_string_within(member(attachment, "footer"), slack_max_footer_chars, false)) {
                return "invalid_attachments";
            }
            if (const json* blocks = member(attachment, "blocks"); blocks != nullptr) {
                if (!blocks->is_array() || !std::all_of(blocks->begin(), blocks->end(), valid_block)) {
                    return "invalid_blocks";
                }
            }
        }
        has_attachments = !attachments->empty();
    }

    if (!has_text && !has_blocks && !has_attachments) {
        return "no_text";
    }
    return {};
}

std::vector<std::string> validate_alertmanager_webhook(const json& notification)
{
    std::vector<std::string> errors;
    if (!notification.is_object()) {
        errors.emplace_back("the body must be a JSON object");
        return errors;
    }
    const json* version = member(notification, "version");
    if (version == nullptr || *version != "4") {
        errors.emplace_back("version must be the string \"4\"");
    }
    check_required_string(notification, "groupKey", "", errors);
    check_status(notification, "", errors);
    check_required_string(notification, "receiver", "", errors);
    check_string_map(notification, "groupLabels", "", errors);
    check_string_map(notification, "commonLabels", "", errors);
    check_string_map(notification, "commonAnnotations", "", errors);
    check_required_string(notification, "externalURL", "", errors);

    const json* truncated = member(notification, "truncatedAlerts");
    if (truncated == nullptr || !truncated->is_number_integer() || truncated->get<std::int64_t>() < 0) {
        errors.emplace_back("truncatedAlerts must be a non-negative integer");
    }

    const json* alerts = member(notification, "alerts");
    if (alerts == nullptr || !alerts->is_array() || alerts->empty()) {
        errors.emplace_back("alerts must be a non-empty array");
        return errors;
    }
    bool any_firing = false;
    for (std::size_t i = 0; i < alerts->size(); ++i) {
        validate_webhook_alert((*alerts)[i], "alerts[" + std::to_string(i) + "]", errors);
        if ((*alerts)[i].is_object() && (*alerts)[i].value("status", "") == "firing") {
            any_firing = true;
        }
    }
    // Alertmanager reports a group as firing while any of its alerts fires.
    const json* status = member(notification, "status");
    if (status != nullptr && status->is_string()) {
        if (*status == "resolved" && any_firing) {
            errors.emplace_back("status is \"resolved\" but an alert is firing");
        } else if (*status == "firing" && !any_firing) {
            errors.emplace_back("status is \"firing\" but no alert is firing");
        }
    }
    return errors;
}

decoded_mrkdwn decode_slack_mrkdwn(std::string_view text)
{
    decoded_mrkdwn out;
    auto unescape = [](std::string_view raw) {
        std::string plain;
        for (std::size_t i = 0; i < raw.size(); ++i) {
            if (raw[i] == '&') {
                auto rest = raw.substr(i);
                if (rest.substr(0, 5) == "&amp;") {
                    plain += '&';
                    i += 4;
                    continue;
                }
                if (rest.substr(0, 4) == "&lt;") {
                    plain += '<';
                    i += 3;
                    continue;
                }
                if (rest.substr(0, 4) == "&gt;") {
                    plain += '>';
                    i += 3;
                    continue;
                }
            }
            plain += raw[i];
        }
        return plain;
    };

    std::size_t i = 0;
    while (i < text.size()) {
        auto open = text.find('<', i);
        out.displayed += unescape(text.substr(i, open == std::string_view::npos ? open : open - i));
        if (open == std::string_view::npos) {
            break;
        }
        auto close = text.find('>', open + 1);
        if (close == std::string_view::npos) {
            // A '<' that starts no token shows as itself.
            out.displayed += unescape(text.substr(open));
            break;
        }
        auto token = text.substr(open + 1, close - open - 1);
        auto bar = token.find('|');
        std::string target{token.substr(0, bar)};
        std::string label = bar == std::string_view::npos ? std::string{} : unescape(token.substr(bar + 1));
        if (!target.empty() && target.front() == '!') {
            std::string name = target.substr(1);
            if (name.rfind("date^", 0) == 0) {
                out.displayed += label;
            } else {
                out.mentions.push_back(name);
                out.displayed += label.empty() ? "@" + name : label;
            }
        } else if (!target.empty() && target.front() == '@') {
            out.mentions.push_back(target);
            out.displayed += "@" + (label.empty() ? target.substr(1) : label);
        } else if (!target.empty() && target.front() == '#') {
            out.channels.push_back(target.substr(1));
            out.displayed += "#" + (label.empty() ? target.substr(1) : label);
        } else {
            slack_link link{unescape(target), label};
            out.displayed += label.empty() ? link.url : label;
            out.links.push_back(std::move(link));
        }
        i = close + 1;
    }
    return out;
}

std::vector<std::string> slack_mrkdwn_strings(const json& message)
{
    std::vector<std::string> out;
    if (!message.is_object()) {
        return out;
    }
    if (const json* text = member(message, "text"); text != nullptr && text->is_string()) {
        out.push_back(text->get<std::string>());
    }
    if (const json* blocks = member(message, "blocks"); blocks != nullptr) {
        append_mrkdwn_strings_of_blocks(*blocks, out);
    }
    const json* attachments = member(message, "attachments");
    if (attachments == nullptr || !attachments->is_array()) {
        return out;
    }
    for (const auto& attachment : *attachments) {
        if (!attachment.is_object()) {
            continue;
        }
        for (const char* name : {"pretext", "text", "fallback", "footer"}) {
            const json* value = member(attachment, name);
            if (value != nullptr && value->is_string()) {
                out.push_back(value->get<std::string>());
            }
        }
        if (const json* fields = member(attachment, "fields"); fields != nullptr && fields->is_array()) {
            for (const auto& field : *fields) {
                const json* value = field.is_object() ? member(field, "value") : nullptr;
                if (value != nullptr && value->is_string()) {
                    out.push_back(value->get<std::string>());
                }
            }
        }
        if (const json* blocks = member(attachment, "blocks"); blocks != nullptr) {
            append_mrkdwn_strings_of_blocks(*blocks, out);
        }
    }
    return out;
}

// ---- fake_receivers --------------------------------------------------------------------------

fake_receivers::fake_receivers(fake_receivers_options options)
    : options_(std::move(options))
{
    if (options_.clock == nullptr) {
        own_clock_ = std::make_unique<steady_ms_clock>();
        clock_ = own_clock_.get();
    } else {
        clock_ = options_.clock;
    }
}

fake_receivers::~fake_receivers()
{
    stop();
}

int fake_receivers::start(int port)
{
    if (server_) {
        throw std::runtime_error("fake_receivers::start called twice; create a new object instead");
    }
    server_ = std::make_unique<httplib::Server>();
    // Short keep-alive waits, so that stop() does not wait long for idle client connections.
    server_->set_keep_alive_timeout(1);

    auto route = [this](receiver_kind kind) {
        return [this, kind](const httplib::Request& request, httplib::Response& response) {
            handle(kind, request, response);
        };
    };
    server_->Post("/v2/enqueue", route(receiver_kind::pagerduty));
    server_->Post("/v2/change/enqueue", route(receiver_kind::pagerduty_change));
    server_->Post(R"(/services/.*)", route(receiver_kind::slack));
    server_->Post(R"(/api/chat\.(postMessage|update))", route(receiver_kind::slack_api));
    server_->Post(R"(/webhook/[^/]+)", route(receiver_kind::webhook));

    int bound = port == 0 ? server_->bind_to_any_port("127.0.0.1")
                          : (server_->bind_to_port("127.0.0.1", port) ? port : -1);
    if (bound <= 0) {
        server_.reset();
        throw std::runtime_error("cannot bind 127.0.0.1:" + std::to_string(port) +
                                 "; choose a free port or 0 for any");
    }
    port_ = bound;
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    // Server::stop() has no effect before the listen loop runs, so wait for it here.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!server_->is_running()) {
        if (std::chrono::steady_clock::now() > deadline) {
            throw std::runtime_error("the server on 127.0.0.1:" + std::to_string(port_) +
                                     " did not start listening within 5 s");
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return port_;
}

void fake_receivers::stop()
{
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    cv_.notify_all();
    if (server_) {
        server_->stop();
    }
    if (thread_.joinable()) {
        thread_.join();
    }
}

std::string fake_receivers::base_url() const
{
    return "http://127.0.0.1:" + std::to_string(port_);
}

void fake_receivers::set_request_listener(std::function<void(const received_request&)> listener)
{
    listener_ = std::move(listener);
}

void fake_receivers::script(receiver_kind kind, canned_response response)
{
    std::lock_guard lock(mutex_);
    scripts_[kind].push_back(std::move(response));
}

void fake_receivers::fail_next(receiver_kind kind, int count, int status, std::optional<int> retry_after_s)
{
    canned_response response;
    response.status = status;
    if (retry_after_s) {
        response.headers.emplace_back("Retry-After", std::to_string(*retry_after_s));
    }
    const bool pagerduty = kind == receiver_kind::pagerduty || kind == receiver_kind::pagerduty_change;
    if (pagerduty || kind == receiver_kind::slack_api) {
        response.content_type = "application/json";
        response.body = pagerduty
                            ? json{{"status", "error"}, {"message", "Scripted failure"}}.dump()
                            : json{{"ok", false}, {"error", status == 429 ? "ratelimited" : "fatal_error"}}.dump();
    } else {
        response.body = status == 429 ? "rate_limited" : "rollup_error";
    }
    std::lock_guard lock(mutex_);
    for (int i = 0; i < count; ++i) {
        scripts_[kind].push_back(response);
    }
}

std::size_t fake_receivers::scripted_left(receiver_kind kind) const
{
    std::lock_guard lock(mutex_);
    auto it = scripts_.find(kind);
    return it == scripts_.end() ? 0 : it->second.size();
}

void fake_receivers::add_slack_webhook(const std::string& path)
{
    std::lock_guard lock(mutex_);
    options_.slack_webhooks.insert(path);
}

void fake_receivers::revoke_slack_webhook(const std::string& path)
{
    std::lock_guard lock(mutex_);
    options_.revoked_slack_webhooks.insert(path);
}

std::vector<received_request> fake_receivers::requests() const
{
    std::lock_guard lock(mutex_);
    return requests_;
}

std::vector<received_request> fake_receivers::requests(receiver_kind kind) const
{
    std::lock_guard lock(mutex_);
    std::vector<received_request> out;
    std::copy_if(requests_.begin(), requests_.end(), std::back_inserter(out),
                 [kind](const received_request& r) { return r.kind == kind; });
    return out;
}

std::vector<accepted_event> fake_receivers::accepted(receiver_kind kind) const
{
    std::lock_guard lock(mutex_);
    std::vector<accepted_event> out;
    std::copy_if(accepted_.begin(), accepted_.end(), std::back_inserter(out),
                 [kind](const accepted_event& e) { return e.kind == kind; });
    return out;
}

std::vector<pagerduty_alert> fake_receivers::pagerduty_alerts() const
{
    std::lock_guard lock(mutex_);
    return alerts_;
}

std::optional<pagerduty_alert> fake_receivers::open_pagerduty_alert(const std::string& routing_key,
                                                                    const std::string& dedup_key) const
{
    std::lock_guard lock(mutex_);
    for (const auto& alert : alerts_) {
        if (alert.open && alert.routing_key == routing_key && alert.dedup_key == dedup_key) {
            return alert;
        }
    }
    return std::nullopt;
}

std::vector<json> fake_receivers::pagerduty_change_events() const
{
    std::lock_guard lock(mutex_);
    std::vector<json> out;
    for (const auto& event : accepted_) {
        if (event.kind == receiver_kind::pagerduty_change) {
            out.push_back(event.body);
        }
    }
    return out;
}

std::vector<slack_message> fake_receivers::slack_messages() const
{
    std::lock_guard lock(mutex_);
    return messages_;
}

std::optional<slack_message> fake_receivers::find_slack_message(const std::string& ts) const
{
    std::lock_guard lock(mutex_);
    for (const auto& message : messages_) {
        if (message.ts == ts) {
            return message;
        }
    }
    return std::nullopt;
}

int fake_receivers::hanging() const
{
    std::lock_guard lock(mutex_);
    return hanging_;
}

bool fake_receivers::wait_for_requests(std::size_t count, std::chrono::milliseconds timeout) const
{
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return requests_.size() >= count; });
}

bool fake_receivers::wait_for_hanging(int count, std::chrono::milliseconds timeout) const
{
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return hanging_ >= count; });
}

void fake_receivers::hold(std::chrono::milliseconds duration)
{
    std::unique_lock lock(mutex_);
    ++hanging_;
    cv_.notify_all();
    cv_.wait_for(lock, duration, [this] { return stopping_; });
    --hanging_;
    cv_.notify_all();
}

void fake_receivers::handle(receiver_kind kind, const httplib::Request& request, httplib::Response& response)
{
    received_request record;
    record.kind = kind;
    record.path = request.path;
    record.body = request.body;
    record.arrival_ms = clock_->now_ms();
    for (const auto& [name, value] : request.headers) {
        record.headers[to_lower(name)] = value;
    }

    std::optional<canned_response> scripted;
    {
        std::lock_guard lock(mutex_);
        auto it = scripts_.find(kind);
        if (it != scripts_.end() && !it->second.empty()) {
            scripted = std::move(it->second.front());
            it->second.pop_front();
        }
    }

    answer result;
    if (scripted) {
        if (scripted->hang.count() > 0) {
            hold(scripted->hang);
        }
        result.status = scripted->status;
        result.body = scripted->body;
        result.content_type = scripted->content_type;
        result.headers = scripted->headers;
        result.reason = "scripted answer";
        record.scripted = true;
        record.parsed = parse_json(request.body).value_or(json{});
    } else {
        switch (kind) {
        case receiver_kind::pagerduty:
            result = answer_pagerduty(request, record);
            break;
        case receiver_kind::slack:
            result = answer_slack_webhook(request, record);
            break;
        case receiver_kind::slack_api:
            result = answer_slack_api(request, record);
            break;
        case receiver_kind::webhook:
            result = answer_webhook(request, record);
            break;
        case receiver_kind::pagerduty_change:
            result = answer_pagerduty_change(request, record);
            break;
        }
    }

    response.status = result.status;
    for (const auto& [name, value] : result.headers) {
        response.set_header(name, value);
    }
    response.set_content(result.body, result.content_type.c_str());

    record.status = result.status;
    record.response_body = result.body;
    record.accepted = !record.scripted && result.reason.empty();
    record.reason = result.reason;
    {
        std::lock_guard lock(mutex_);
        requests_.push_back(record);
    }
    cv_.notify_all();
    if (listener_) {
        listener_(record);
    }
}

namespace {

// The checks of both PagerDuty endpoints: body size, media type and JSON. Returns the errors;
// none when `event` was parsed.
std::vector<std::string> pagerduty_envelope_errors(const httplib::Request& request, std::optional<json>& event)
{
    // NOTE: PagerDuty documents the 512 KB limit but not its response to a larger body, so
    // this stand-in responds as to any invalid event.
    if (request.body.size() > pagerduty_max_body_bytes) {
        return {"Event object is too large: " + std::to_string(request.body.size()) +
                " bytes; the maximum is 512000 bytes"};
    }
    // NOTE: PagerDuty does not document whether it rejects other content types. application/json
    // is the only request media type in its OpenAPI document, so others are rejected here.
    if (!is_media_type(request.get_header_value("Content-Type"), "application/json")) {
        return {"Content-Type must be application/json, got \"" + request.get_header_value("Content-Type") + "\""};
    }
    std::string parse_error;
    event = parse_json(request.body, &parse_error);
    if (!event) {
        return {"JSON parse error: " + parse_error};
    }
    return {};
}

} // namespace

fake_receivers::answer fake_receivers::pagerduty_rejection(const std::vector<std::string>& errors)
{
    answer result;
    result.status = 400;
    result.content_type = "application/json";
    result.body = pagerduty_error_body(errors);
    result.reason = join(errors, "; ");
    return result;
}

fake_receivers::answer fake_receivers::answer_pagerduty(const httplib::Request& request,
                                                        received_request& record)
{
    std::optional<json> event;
    if (auto errors = pagerduty_envelope_errors(request, event); !errors.empty()) {
        return pagerduty_rejection(std::move(errors));
    }
    record.parsed = *event;

    auto errors = validate_pagerduty_event(*event, options_.pagerduty_reject_over_limit);
    if (!errors.empty()) {
        return pagerduty_rejection(std::move(errors));
    }
    std::string routing_key = (*event)["routing_key"].get<std::string>();
    // NOTE: the response to a well-formed but unknown routing key is not documented.
    if (!options_.pagerduty_routing_key.empty() && routing_key != options_.pagerduty_routing_key) {
        return pagerduty_rejection({"Invalid routing key"});
    }

    std::string action = (*event)["event_action"].get<std::string>();
    std::string dedup_key;
    if (const json* key = member(*event, "dedup_key"); is_nonempty_string(key)) {
        dedup_key = key->get<std::string>();
    } else {
        dedup_key = generate_uuid();
    }

    std::string effect;
    {
        std::lock_guard lock(mutex_);
        auto open = std::find_if(alerts_.begin(), alerts_.end(), [&](const pagerduty_alert& alert) {
            return alert.open && alert.routing_key == routing_key && alert.dedup_key == dedup_key;
        });
        if (action == "trigger") {
            if (open != alerts_.end()) {
                ++open->trigger_count;
                effect = "updated";
            } else {
                pagerduty_alert alert;
                alert.routing_key = routing_key;
                alert.dedup_key = dedup_key;
                alert.opened_ms = record.arrival_ms;
                alerts_.push_back(std::move(alert));
                effect = "opened";
            }
        } else if (open == alerts_.end()) {
            // PagerDuty drops ack/resolve for a key that is not open on this routing key.
            effect = "dropped";
        } else if (action == "acknowledge") {
            open->acknowledged = true;
            effect = "acknowledged";
        } else {
            open->open = false;
            open->resolved_ms = record.arrival_ms;
            effect = "resolved";
        }
        accepted_.push_back({receiver_kind::pagerduty, request.path, *event, record.arrival_ms, dedup_key, effect});
    }

    answer result;
    result.status = 202;
    result.content_type = "application/json";
    result.body = json{{"status", "success"}, {"message", "Event processed"}, {"dedup_key", dedup_key}}.dump();
    return result;
}

fake_receivers::answer fake_receivers::answer_pagerduty_change(const httplib::Request& request,
                                                               received_request& record)
{
    // NOTE: the size and content type checks are those of /v2/enqueue; PagerDuty documents
    // neither for change events.
    std::optional<json> event;
    if (auto errors = pagerduty_envelope_errors(request, event); !errors.empty()) {
        return pagerduty_rejection(std::move(errors));
    }
    record.parsed = *event;

    auto errors = validate_pagerduty_change_event(*event, options_.pagerduty_reject_over_limit);
    if (!errors.empty()) {
        return pagerduty_rejection(std::move(errors));
    }
    if (!options_.pagerduty_routing_key.empty() &&
        (*event)["routing_key"].get<std::string>() != options_.pagerduty_routing_key) {
        return pagerduty_rejection({"Invalid routing key"});
    }
    {
        std::lock_guard lock(mutex_);
        accepted_.push_back(
            {receiver_kind::pagerduty_change, request.path, *event, record.arrival_ms, {}, "recorded"});
    }
    answer result;
    result.status = 202;
    result.content_type = "application/json";
    result.body = json{{"status", "success"}, {"message", "Change event processed"}}.dump();
    return result;
}

fake_receivers::answer fake_receivers::answer_slack_webhook(const httplib::Request& request,
                                                            received_request& record)
{
    auto reject = [](int status, std::string code) {
        answer result;
        result.status = status;
        result.body = code;
        result.reason = std::move(code);
        return result;
    };

    // A webhook path is /services/<team>/<bot>/<secret>, three non-empty segments.
    static const std::regex path_pattern("^/services/[^/]+/[^/]+/[^/]+$");
    {
        std::lock_guard lock(mutex_);
        if (!std::regex_match(request.path, path_pattern) ||
            (!options_.slack_webhooks.empty() && options_.slack_webhooks.count(request.path) == 0)) {
            // NOTE: the body no_service is observed on real hooks; its status 404 is not documented.
            return reject(404, "no_service");
        }
        if (options_.revoked_slack_webhooks.count(request.path) != 0) {
            return reject(400, "invalid_token");
        }
        if (options_.slack_rate_limit && rate_limited_locked("webhook " + request.path, record.arrival_ms)) {
            answer result = reject(429, "rate_limited");
            result.headers.emplace_back("Retry-After", "1");
            return result;
        }
    }

    auto content_type = request.get_header_value("Content-Type");
    std::optional<json> message;
    if (is_media_type(content_type, "application/json")) {
        message = parse_json(request.body);
    } else if (is_media_type(content_type, "application/x-www-form-urlencoded")) {
        auto form = parse_form(request.body);
        if (form && form->count("payload") != 0) {
            message = parse_json(form->at("payload"));
        }
    }
    if (!message || !message->is_object()) {
        return reject(400, "invalid_payload");
    }
    record.parsed = *message;

    if (auto code = validate_slack_message(*message); !code.empty()) {
        return reject(400, code);
    }
    {
        std::lock_guard lock(mutex_);
        if (options_.slack_rate_limit) {
            rate_windows_["webhook " + request.path].push_back(record.arrival_ms);
        }
        accepted_.push_back({receiver_kind::slack, request.path, *message, record.arrival_ms, {}, "posted"});
    }
    answer result;
    result.status = 200;
    result.body = "ok";
    return result;
}

fake_receivers::answer fake_receivers::answer_slack_api(const httplib::Request& request,
                                                        received_request& record)
{
    auto fail = [](std::string code) {
        answer result;
        result.status = 200; // Web API errors come with HTTP 200 and "ok": false
        result.content_type = "application/json";
        result.body = json{{"ok", false}, {"error", code}}.dump();
        result.reason = std::move(code);
        return result;
    };

    // Arguments come as JSON or as form fields; in a form, blocks and attachments are JSON text
    // and the token may be a field.
    auto content_type = request.get_header_value("Content-Type");
    json arguments;
    std::string form_token;
    if (is_media_type(content_type, "application/json")) {
        auto parsed = parse_json(request.body);
        if (!parsed || !parsed->is_object()) {
            return fail("invalid_json");
        }
        arguments = std::move(*parsed);
    } else if (is_media_type(content_type, "application/x-www-form-urlencoded")) {
        auto form = parse_form(request.body);
        if (!form) {
            return fail("invalid_form_data");
        }
        arguments = json::object();
        for (const auto& [name, value] : *form) {
            if (name == "token") {
                form_token = value;
            } else if (name == "blocks" || name == "attachments") {
                auto parsed = parse_json(value);
                if (!parsed) {
                    return fail(name == "blocks" ? "invalid_blocks_format" : "invalid_attachments");
                }
                arguments[name] = std::move(*parsed);
            } else {
                arguments[name] = value;
            }
        }
    } else {
        return fail("invalid_form_data");
    }
    record.parsed = arguments;

    std::string authorization = request.get_header_value("Authorization");
    std::string token = form_token;
    if (starts_with_ci(authorization, "Bearer ")) {
        token = authorization.substr(7);
    }
    if (token.empty()) {
        return fail("not_authed");
    }
    if (token != options_.slack_token) {
        return fail("invalid_auth");
    }

    bool is_update = request.path == "/api/chat.update";
    const json* channel = member(arguments, "channel");
    if (!is_nonempty_string(channel)) {
        return fail("channel_not_found");
    }
    // ts values must stay strings: a float loses the microsecond digits.
    for (const char* name : {"ts", "thread_ts"}) {
        const json* value = member(arguments, name);
        if (value != nullptr && !value->is_string() && !value->is_null()) {
            return fail("invalid_arguments");
        }
    }
    if (auto code = validate_slack_message(arguments); !code.empty()) {
        return fail(code);
    }

    std::lock_guard lock(mutex_);
    std::string channel_id = channel_id_locked(channel->get<std::string>(), !is_update);
    if (channel_id.empty()) {
        return fail("channel_not_found");
    }
    json content = arguments;
    content.erase("channel");
    content.erase("ts");

    answer result;
    result.status = 200;
    result.content_type = "application/json";

    if (is_update) {
        const json* ts = member(arguments, "ts");
        if (!is_nonempty_string(ts)) {
            return fail("message_not_found");
        }
        auto it = std::find_if(messages_.begin(), messages_.end(), [&](const slack_message& m) {
            return m.channel == channel_id && m.ts == ts->get_ref<const std::string&>();
        });
        if (it == messages_.end()) {
            return fail("message_not_found");
        }
        content.erase("thread_ts");
        it->content = content;
        ++it->edit_count;
        accepted_.push_back({receiver_kind::slack_api, request.path, arguments, record.arrival_ms, it->ts, "edited"});
        result.body = json{{"ok", true}, {"channel", channel_id}, {"ts", it->ts},
                           {"text", content.value("text", "")}}.dump();
        return result;
    }

    std::string thread_ts;
    if (const json* value = member(arguments, "thread_ts"); is_nonempty_string(value)) {
        thread_ts = value->get<std::string>();
        // A reply must name the parent's ts; a reply's own ts is not a thread.
        bool parent_exists = std::any_of(messages_.begin(), messages_.end(), [&](const slack_message& m) {
            return m.channel == channel_id && m.ts == thread_ts && m.thread_ts.empty();
        });
        // NOTE: the error code for an unknown parent ts is an assumption.
        if (!parent_exists) {
            return fail("thread_not_found");
        }
    }
    if (options_.slack_rate_limit && rate_limited_locked("channel " + channel_id, record.arrival_ms)) {
        answer limited = fail("ratelimited");
        limited.status = 429;
        limited.headers.emplace_back("Retry-After", "1");
        return limited;
    }
    if (options_.slack_rate_limit) {
        rate_windows_["channel " + channel_id].push_back(record.arrival_ms);
    }

    slack_message message;
    message.channel = channel_id;
    message.ts = next_ts_locked();
    message.thread_ts = thread_ts;
    message.content = content;
    messages_.push_back(message);
    accepted_.push_back({receiver_kind::slack_api, request.path, arguments, record.arrival_ms, message.ts,
                         thread_ts.empty() ? "posted" : "replied"});

    json posted = content;
    posted["type"] = "message";
    posted["ts"] = message.ts;
    result.body = json{{"ok", true}, {"channel", channel_id}, {"ts", message.ts}, {"message", posted}}.dump();
    return result;
}

fake_receivers::answer fake_receivers::answer_webhook(const httplib::Request& request,
                                                      received_request& record)
{
    auto reject = [](std::vector<std::string> errors) {
        answer result;
        result.status = 400;
        result.reason = join(errors, "; ");
        result.body = result.reason;
        return result;
    };
    if (!is_media_type(request.get_header_value("Content-Type"), "application/json")) {
        return reject({"Content-Type must be application/json, got \"" +
                       request.get_header_value("Content-Type") + "\""});
    }
    std::string parse_error;
    auto notification = parse_json(request.body, &parse_error);
    if (!notification) {
        return reject({"invalid JSON: " + parse_error});
    }
    record.parsed = *notification;
    auto errors = validate_alertmanager_webhook(*notification);
    if (!errors.empty()) {
        return reject(std::move(errors));
    }
    {
        std::lock_guard lock(mutex_);
        accepted_.push_back({receiver_kind::webhook, request.path, *notification, record.arrival_ms, {}, "received"});
    }
    answer result;
    result.status = 200;
    result.body = "ok";
    return result;
}

bool fake_receivers::rate_limited_locked(const std::string& key, std::int64_t now_ms)
{
    auto& window = rate_windows_[key];
    while (!window.empty() && window.front() <= now_ms - 1000) {
        window.pop_front();
    }
    return static_cast<int>(window.size()) >= options_.slack_rate_limit_burst;
}

std::string fake_receivers::next_ts_locked()
{
    using namespace std::chrono;
    auto now_us = duration_cast<microseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    last_ts_us_ = std::max<std::int64_t>(now_us, last_ts_us_ + 1);
    char text[32];
    std::snprintf(text, sizeof text, "%lld.%06lld", static_cast<long long>(last_ts_us_ / 1000000),
                  static_cast<long long>(last_ts_us_ % 1000000));
    return text;
}

std::string fake_receivers::channel_id_locked(const std::string& channel, bool create)
{
    for (const auto& [name, id] : channel_ids_) {
        if (id == channel) {
            return id;
        }
    }
    // A channel given by ID must be one this receiver handed out; chat.update needs the ID.
    static const std::regex id_pattern("^[CGD][A-Z0-9]{8,}$");
    if (std::regex_match(channel, id_pattern) || !create) {
        return {};
    }
    std::string name = !channel.empty() && channel.front() == '#' ? channel.substr(1) : channel;
    auto it = channel_ids_.find(name);
    if (it != channel_ids_.end()) {
        return it->second;
    }
    char id[16];
    std::snprintf(id, sizeof id, "C%010zu", static_cast<std::size_t>(123456789) + channel_ids_.size());
    channel_ids_[name] = id;
    return id;
}

} // namespace tocsin::test
