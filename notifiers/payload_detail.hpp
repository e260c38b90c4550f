#pragma once
// Private to the payload builders (payload*.cpp): the compiled templates of a routing config and
// the helpers every integration's builder shares.

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "notifiers/payload.hpp"

namespace tocsin {

struct compiled_templates {
    gotmpl::template_set set;
    // Inline template of each non-empty field, keyed by field_key().
    std::map<std::string, std::size_t, std::less<>> inline_index;
};

namespace payload_detail {

// "pagerduty_configs[0]": the integration's path within its receiver, as the config spells it.
std::string integration_path(const integration_ref& ref);

// The key of one inline template field: receiver name and field path, for example
// "pd" + "pagerduty_configs[0].description", joined by the control byte 0x1f, which a YAML
// name can contain only when written as an escape.
std::string field_key(std::string_view receiver, std::string_view field_path);

// A rendered template field.
struct field_text {
    std::string text;
    bool from_receiver = false; // rendered from the receiver's own template, not a default
    std::string marker;         // "(template error: ...)" when the receiver's template failed
};

// Renders the template fields of one integration, falling back to defaults on render errors and
// recording each error in the build result.
class field_renderer {
public:
    field_renderer(const compiled_templates& templates, const notification& n, build_result& result);

    bool configured(std::string_view field) const;

    // Renders the receiver's template of `field` with `data`. When the field has no template,
    // renders the named default `default_name` with `default_data`; when that is missing or
    // fails, returns `builtin`. A failing receiver template falls back the same way and sets
    // `marker`, counts a template error and adds a log line.
    field_text render(std::string_view field, const nlohmann::json& data, std::string_view default_name,
                      const nlohmann::json& default_data, std::string_view builtin = {});

    // The full name of `field` for messages: pagerduty_configs[0].description.
    std::string field_path(std::string_view field) const;

private:
    const compiled_templates& templates_;
    const notification& notification_;
    build_result& result_;
    std::string prefix_;
};

// "2024-01-02T03:04:05.678Z"; Go's zero time "0001-01-01T00:00:00Z" for 0.
std::string format_time(time_ms t);

// Alertmanager's subject: "[FIRING:2] DiskFull db (prod)", computed without templates, for when
// the default template set lacks "__subject".
std::string builtin_subject(const notification& n);

// Serializes a payload. Invalid UTF-8 from labels or templates becomes U+FFFD instead of an
// exception.
std::string dump_json(const nlohmann::ordered_json& body);
std::string dump_json(const nlohmann::json& body);

// Number of UTF-16 code units of `text`, which is at least its number of code points. Limits
// counted this way hold whichever of the two a receiver counts.
std::size_t utf16_length(std::string_view text);

// Trims spaces, tabs and newlines at both ends.
std::string trim(std::string_view text);

// The notification with only the alerts the integration sends: resolved alerts are dropped when
// `send_resolved` is false, as Alertmanager does.
notification filter_resolved(const notification& n, bool send_resolved);

enum class severity_rank : std::uint8_t { none, info, warning, error, critical };

// The highest tier of the `severity` label among the firing alerts, or among all alerts when
// none fires. Page and critical rank critical, and a value outside the known tiers ranks error.
severity_rank highest_severity(const notification& n);
const char* severity_name(severity_rank rank);

std::string template_error_marker(std::string_view error);

build_result build_pagerduty(const notification& n, const pagerduty_config& config,
                             const routing_config& routing, const compiled_templates& templates);
build_result build_slack(const notification& n, const slack_config& config, const routing_config& routing,
                         const compiled_templates& templates);
build_result build_webhook(const notification& n, const webhook_config& config, const routing_config& routing);
build_result build_console(const notification& n, const console_config& config, const routing_config& routing);

} // namespace payload_detail
} // namespace tocsin
