// PagerDuty change events (POST /v2/change/enqueue), without the routing key: the sender adds it
// when it sends, as for alert events. A change event has no event_action and no dedup_key.

#include <algorithm>
#include <set>

#include <fmt/format.h>

#include "notifiers/payload.hpp"
#include "notifiers/payload_detail.hpp"

namespace tocsin {

namespace {

using ordered_json = nlohmann::ordered_json;
using payload_detail::dump_json;
using payload_detail::trim;

// The same budget as alert events: 512,000 bytes less room for the routing key the sender adds.
constexpr std::size_t max_body_bytes = 512000 - 100;
constexpr std::size_t max_summary_chars = 1024;
// The source is cut to this length only when the event would not fit otherwise.
constexpr std::size_t max_source_chars_when_over = 1024;
constexpr const char* blank_summary = "tocsin change event";

// Leaves the largest members of `details` out until `size` (the body's size) fits
// max_body_bytes, then notes how many were left out. Returns the number left out.
std::size_t trim_details(ordered_json& details, std::size_t size)
{
    // The note costs at most this much, with its key and separator.
    constexpr std::size_t note_bytes = 120;
    std::vector<std::pair<std::size_t, std::string>> members; // (bytes, key)
    for (const auto& [key, value] : details.items()) {
        // "key":value and a separating comma.
        members.emplace_back(dump_json(ordered_json(key)).size() + 1 + dump_json(value).size() + 1, key);
    }
    std::stable_sort(members.begin(), members.end(),
                     [](const auto& a, const auto& b) { return a.first > b.first; });
    std::set<std::string> dropped;
    std::size_t budget = size + note_bytes;
    for (const auto& [bytes, key] : members) {
        if (budget <= max_body_bytes) {
            break;
        }
        dropped.insert(key);
        budget -= std::min(budget, bytes);
    }
    if (dropped.empty()) {
        return 0;
    }
    // A kept member named "omitted" would be overwritten by the note, so it is left out too.
    dropped.insert("omitted");
    ordered_json remaining = ordered_json::object();
    std::size_t omitted = 0;
    for (auto& [key, value] : details.items()) {
        if (dropped.contains(key)) {
            ++omitted;
        } else {
            remaining[key] = std::move(value);
        }
    }
    remaining["omitted"] =
        fmt::format("{} of the custom details left out to keep the event under PagerDuty's size limit", omitted);
    details = std::move(remaining);
    return omitted;
}

} // namespace

outbound_message build_pagerduty_change_event(const integration_ref& integration, const change_event& e)
{
    ordered_json payload = ordered_json::object();
    std::string summary = trim(e.summary);
    if (summary.empty()) {
        summary = blank_summary;
    }
    payload["summary"] = truncate_utf8(summary, max_summary_chars);
    if (e.timestamp != 0) {
        payload["timestamp"] = payload_detail::format_time(e.timestamp);
    }
    if (!trim(e.source).empty()) {
        payload["source"] = e.source;
    }
    if (e.custom_details.is_object()) {
        if (!e.custom_details.empty()) {
            payload["custom_details"] = ordered_json(e.custom_details);
        }
    } else if (!e.custom_details.is_null()) {
        payload["custom_details"] = ordered_json{{"value", ordered_json(e.custom_details)}};
    }

    ordered_json event = ordered_json::object();
    event["payload"] = std::move(payload);
    ordered_json links = ordered_json::array();
    for (const auto& [href, text] : e.links) {
        const std::string target = trim(href);
        if (target.empty()) {
            continue; // a link without href is invalid
        }
        ordered_json link = {{"href", target}};
        if (!text.empty()) {
            link["text"] = text;
        }
        links.push_back(std::move(link));
    }
    if (!links.empty()) {
        event["links"] = std::move(links);
    }

    // Size: leave out the largest details first, then the links, then cut the source. The
    // summary is already within 1024 code points, so the event always fits in the end.
    // No reference into `event` is kept across an erase, because ordered_json stores members in a vector.
    std::size_t size = dump_json(event).size();
    if (size > max_body_bytes && event["payload"].contains("custom_details")) {
        // One pass is exact but for the note's estimate; a second one covers that.
        for (int pass = 0; pass < 2 && size > max_body_bytes; ++pass) {
            trim_details(event["payload"]["custom_details"], size);
            size = dump_json(event).size();
        }
    }
    if (size > max_body_bytes && event.contains("links")) {
        event.erase("links");
        size = dump_json(event).size();
    }
    if (size > max_body_bytes && event["payload"].contains("source")) {
        ordered_json& source = event["payload"]["source"];
        source = truncate_utf8(source.get<std::string>(), max_source_chars_when_over);
    }

    outbound_message out;
    out.integration = integration;
    out.body = dump_json(event);
    out.resolved = false;
    out.alert_count = 0;
    return out; // dedup_key stays empty: that marks a change event for the sender
}

} // namespace tocsin
