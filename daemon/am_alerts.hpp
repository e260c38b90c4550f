#pragma once
// Alertmanager's v2 alert API for other senders (Prometheus, vmalert, Grafana): the body of
// POST /api/v2/alerts, and the gettableAlert JSON of GET /api/v2/alerts.

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "routing/alert.hpp"
#include "routing/dispatcher.hpp"

namespace tocsin {

struct postable_alert_limits {
    std::size_t max_alerts = 10'000;        // per request
    std::size_t max_labels = 64;            // per alert
    std::size_t max_label_value_bytes = 4096;
    std::size_t max_annotation_bytes = 64 * 1024; // all annotations of one alert
};

// The alerts of one request that parsed, and one message per alert that did not. As in
// Alertmanager, the valid alerts are kept even when others fail. `fatal` is set (with its
// status) when the body as a whole is unusable.
struct postable_alerts {
    std::vector<alert> alerts;
    std::vector<std::string> errors;
    int fatal_status = 0;
    std::string fatal;
};

// Parses a JSON array of postableAlert. Empty label values are dropped; a missing startsAt is
// now (or endsAt when only that is given); a missing endsAt is now + resolve_timeout. Each
// alert's id is its label fingerprint and its source "api".
postable_alerts parse_postable_alerts(std::string_view body, time_ms now, std::chrono::milliseconds resolve_timeout,
                                      const postable_alert_limits& limits);

// A gettableAlert. `receivers` are the names of the receivers of the groups that contain it. A
// firing alert without an end shows now + resolve_timeout, as Alertmanager keeps alerts.
nlohmann::json gettable_alert(const alert& a, const mute_status& status, const std::vector<std::string>& receivers,
                              time_ms now, std::chrono::milliseconds resolve_timeout);

// The configuration file's text for /api/v2/status, with every value that may be a secret
// (keys naming a key, token, secret, password or credentials, and URLs) replaced by
// "<secret>", as Alertmanager masks them. Returns an empty string when `text` is not YAML.
std::string redacted_config(const std::string& text);

} // namespace tocsin
