#pragma once
// An alert as routing and notification see it: labels, annotations and its time span. It comes
// from the rule engine or, later, from other senders through the Alertmanager API.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "rules/clock.hpp"
#include "rules/labels.hpp"

namespace tocsin {

using annotation_list = std::vector<std::pair<std::string, std::string>>; // sorted by name

struct alert {
    // Identity across label changes. For rule alerts it is the engine's alert id, which stays
    // the same when the severity moves between tiers; for alerts received from other senders
    // it is the label fingerprint.
    std::uint64_t id = 0;
    label_set labels;        // alertname and severity included
    annotation_list annotations;
    time_ms starts_at = 0;   // when it started firing
    // 0 while the alert fires with no known end. Otherwise the alert counts as resolved from
    // this time on: the rule engine sets it when the alert resolves, and Alertmanager API
    // senders set it in the future as a resolve timeout.
    time_ms ends_at = 0;
    time_ms updated_at = 0;  // clock time of the last change
    std::string generator_url;
    std::string source = "rules"; // "rules" (this daemon's rule engine) or "api"
    // Set through the acknowledgement API while the alert fires, and kept until the alert
    // resolves: a new firing episode starts unacknowledged. Acknowledged alerts are not escalated.
    std::string acknowledged_by;
    std::string ack_comment;
    time_ms acknowledged_at = 0; // 0: not acknowledged
    bool acknowledged() const { return acknowledged_at != 0; }

    // Notification logs compare label fingerprints, so a severity change is a change to announce.
    std::uint64_t fingerprint() const { return labels.fingerprint(); }
    bool resolved_at(time_ms now) const { return ends_at != 0 && ends_at <= now; }
};

} // namespace tocsin
