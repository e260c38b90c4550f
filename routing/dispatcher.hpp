#pragma once
// Aggregation groups, their timers and the notification log, on an injected clock.
//
// Semantics follow Alertmanager's dispatcher and dedup stage:
// - An alert is routed (match_routes) and joins one group per matching route, keyed by the
//   route key and the values of the route's group_by labels.
// - A new group flushes group_wait after its first alert (at once when that alert started more
//   than group_wait ago), then every group_interval, counted from the previous scheduled flush.
// - At a flush, each integration of the route's receiver is notified when, per its notification
//   log entry: it has never been notified and something fires; a firing alert was not in the
//   last notification; everything resolved and the last notification had firing alerts; it
//   sends resolved alerts and one resolved since the last notification; or repeat_interval has
//   passed since the last notification. A notification holds every firing alert of the group
//   (and the resolved ones when send_resolved), never a part of them.
// - Resolved alerts leave a group after the flush that included them; an empty group is removed.
// - An alert keeps its id when its labels change. A group it leaves keeps a copy with the old
//   labels: a firing copy when the severity rose (as separate warning and critical alerts would
//   in Alertmanager), otherwise a resolved one. Copies resolve with the alert.
// - At a flush, alerts muted by an active silence or by an inhibit rule are left out, as in
//   Alertmanager (see flush_group() for the one exception, resolves of announced alerts). So
//   is the firing copy of an alert's lower tier while the alert fires at a higher one.
// - A rise in an alert's severity flushes its groups at once instead of at their next tick.
// - A route inside one of its mute_time_intervals, or outside all its active_time_intervals,
//   sends no firing alerts. Its groups announce them at the first tick after the window.
// - Escalation (route.escalate): an unacknowledged firing alert `after` its start is
//   also sent to the step's receiver, under its own notification log entry, and that receiver
//   hears its resolve. Steps are checked at the moment they fall due, not at the next tick.
// - A receiver's rate_limit defers a group's notification until the window has room; the group
//   keeps its resolved alerts meanwhile, so the notification that goes out has the latest state.
// - A receiver's storm_guard: when more than max_new_alerts new alerts reach it within the
//   window, they are held like silenced alerts and one digest notification stands for them.
// - Group timers, copies and the notification log are part of the durable state
//   (take_changes()), so a restart or a reload neither sends again what was sent nor forgets a
//   resolve.
//
// Thread safety: none. One owner calls every member function.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "rules/clock.hpp"
#include "routing/alert.hpp"
#include "routing/config.hpp"

namespace tocsin {

enum class integration_kind : std::uint8_t { webhook, pagerduty, slack, console };
const char* to_string(integration_kind k);

// One *_configs entry of a receiver.
struct integration_ref {
    std::string receiver;
    integration_kind kind = integration_kind::webhook;
    std::uint32_t index = 0; // position within the receiver's list of that kind
    // "receiver/slack/0": stable across restarts, used as a key in the store and in metrics.
    std::string id() const;
    bool operator==(const integration_ref&) const = default;
};

struct notification {
    integration_ref integration;
    std::string route_key;
    std::string group_key; // route key + ":" + group labels, e.g. {}/{team="db"}:{alertname="Disk"}
    label_set group_labels;
    dedup_scope dedup = dedup_scope::group;
    std::vector<alert> alerts; // firing alerts first, then resolved ones; each part ordered by labels
    std::size_t firing = 0;    // how many of `alerts` fire
    time_ms created_at = 0;
    std::uint32_t escalation_level = 0; // 0: the route's receiver; N: step N of route.escalate
    bool storm_digest = false;          // the one alert in `alerts` summarizes an alert storm
    bool all_resolved() const { return firing == 0; }
};

// Durable forms.
struct group_record {
    std::string group_key;
    std::string route_key;
    label_set group_labels;
    time_ms next_flush_at = 0;
    bool has_flushed = false;
};

struct nflog_record {
    std::string group_key;
    std::string integration_id;
    std::vector<std::uint64_t> firing;   // label fingerprints in the last notification, sorted
    std::vector<std::uint64_t> resolved; // sorted
    time_ms sent_at = 0;
    time_ms expires_at = 0; // dropped after this; refreshed on each notification
};

struct dispatch_state {
    std::vector<alert> alerts;
    std::vector<group_record> groups;
    std::vector<nflog_record> nflog;
    std::vector<std::pair<std::string, alert>> copies; // (group_key, copy) for copies left by label changes
};

// The changes since the last take_changes(), applied to the store in one transaction together
// with the outbox entries of the same flush.
struct dispatch_changes {
    std::vector<alert> alerts_upserted;
    std::vector<std::uint64_t> alerts_deleted; // alert ids
    std::vector<group_record> groups_upserted;
    std::vector<std::string> groups_deleted;
    std::vector<nflog_record> nflog_upserted;
    std::vector<std::pair<std::string, std::string>> nflog_deleted; // (group_key, integration_id)
    std::vector<std::pair<std::string, alert>> copies_upserted;      // (group_key, copy)
    std::vector<std::pair<std::string, std::uint64_t>> copies_deleted; // (group_key, alert id)
    bool empty() const;
};

struct group_info {
    std::string group_key;
    std::string route_key;
    std::string receiver;
    label_set group_labels;
    std::vector<std::uint64_t> alert_ids;
    time_ms next_flush_at = 0;
};

// Why an alert is not notified: the ids of the active silences that match it and of the
// firing alerts that inhibit it. Both empty for an alert that is notified.
struct mute_status {
    std::vector<std::string> silenced_by;
    std::vector<std::uint64_t> inhibited_by;
    bool muted() const { return !silenced_by.empty() || !inhibited_by.empty(); }
    // Also shown with the alert: the receivers whose storm digest stands for it, and its
    // acknowledgement (acknowledged_at 0 when there is none).
    std::vector<std::string> storms;
    std::string acknowledged_by;
    std::string ack_comment;
    time_ms acknowledged_at = 0;
};

class silence_store;

struct dispatcher_stats {
    std::size_t alerts = 0;
    std::size_t groups = 0;
    std::size_t nflog_entries = 0;
    std::size_t storms = 0;           // alert storms with a digest out or due
    std::uint64_t notifications = 0;  // produced by flush_due() since start
    std::uint64_t escalations = 0;    // of those, sent to an escalation step's receiver
    std::uint64_t rate_limited = 0;   // group notifications deferred by a receiver's rate_limit
    std::uint64_t storms_started = 0;
};

enum class ack_outcome : std::uint8_t { done, not_found, resolved };

// An alert storm of one receiver (see storm_guard_config).
struct storm_info {
    std::string receiver;
    time_ms started_at = 0;
    bool taking = false;       // new alerts for the receiver still join it
    std::size_t alerts = 0;    // the alerts its digest stands for
    std::size_t firing = 0;    // of those, still firing
};

class dispatcher {
public:
    dispatcher(std::shared_ptr<const routing_config> config, const clock& clock);
    ~dispatcher();
    dispatcher(const dispatcher&) = delete;
    dispatcher& operator=(const dispatcher&) = delete;

    // Adds, updates or resolves an alert, matched by alert::id. When its labels change so that it
    // leaves a group, that group keeps a copy with the old labels. The copy keeps firing when the
    // `severity` label rose (info < warning < error < critical < page), so the move sends nothing
    // there. Otherwise it is resolved now, so that group announces the resolve at its next tick.
    // A firing copy resolves when the alert resolves, taking the alert's final annotations, or
    // when the alert's severity no longer ranks above the copy's. An alert that moves back into a
    // group replaces its copy there.
    void upsert(alert a);

    // Sets annotation `name` of alert `id` to `value` (an empty value removes it). With
    // `announce`, the groups of a firing alert that have notified before send it again at
    // once, so their receivers see the annotation (a Slack thread reply, a PagerDuty trigger
    // with the same dedup_key). Returns false when the alert is unknown.
    bool annotate(std::uint64_t id, const std::string& name, const std::string& value, bool announce);

    // Flushes every group whose time has come and returns the notifications to send.
    std::vector<notification> flush_due();

    // The earliest next flush, or nullopt when there are no groups.
    std::optional<time_ms> next_flush_at() const;

    // Installs a reloaded routing config. Every alert is routed again. A group whose key still
    // exists keeps its timer and has_flushed, so a reload sends nothing by itself. Groups of
    // removed routes are dropped; new groups start with group_wait.
    void replace_config(std::shared_ptr<const routing_config> config);

    // Loads state saved by a previous process. Call before the first upsert(). Alerts are routed
    // with the current config; saved group timers apply to groups with the same key. A saved copy
    // returns to its group unless the group's route is gone or the alert itself now routes there.
    void restore(const dispatch_state& state);

    dispatch_changes take_changes();

    // Mutes the alerts that active silences of `silences` match, from the next flush on. The
    // store is the caller's and must outlive the dispatcher; null (the default) mutes none.
    void set_silences(const silence_store* silences);

    // The silences and source alerts that mute an alert with this id and labels now.
    mute_status mute_status_of(std::uint64_t id, const label_set& labels) const;

    // Records that `by` acknowledged firing alert `id` (with an optional comment) for its current
    // firing episode: it is no longer escalated. Acknowledging again replaces the record.
    ack_outcome acknowledge(std::uint64_t id, std::string by, std::string comment);
    // Withdraws the acknowledgement; escalation steps that are due then go out at once.
    ack_outcome unacknowledge(std::uint64_t id);

    std::vector<storm_info> storms() const;
    // The receivers whose storm digest stands for alert `id`.
    std::vector<std::string> storms_of(std::uint64_t id) const;

    std::vector<alert> alerts() const;
    // The current version of alert `id`, or null.
    const alert* find(std::uint64_t id) const;
    std::vector<group_info> groups() const;
    dispatcher_stats stats() const;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

} // namespace tocsin
