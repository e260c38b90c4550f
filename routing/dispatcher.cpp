#include "routing/dispatcher.hpp"

#include <algorithm>
#include <deque>
#include <limits>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "rules/duration.hpp"
#include "rules/rule.hpp"
#include "routing/inhibit.hpp"
#include "routing/silences.hpp"

namespace tocsin {

namespace {

// A notification log entry outlives its last notification by repeat_interval plus this, so a
// group that comes back within that time is compared against what was last sent.
constexpr time_ms nflog_retention_ms = 5LL * 24 * 3'600'000;

using nflog_key = std::pair<std::string, std::string>; // (group_key, integration_id)

struct integration_slot {
    integration_kind kind;
    std::uint32_t index;
    bool send_resolved;
};

std::vector<integration_slot> integrations_of(const receiver_config& receiver)
{
    std::vector<integration_slot> out;
    auto add = [&out](integration_kind kind, const auto& list) {
        for (std::size_t i = 0; i < list.size(); ++i) {
            out.push_back({kind, static_cast<std::uint32_t>(i), list[i].send_resolved});
        }
    };
    add(integration_kind::webhook, receiver.webhooks);
    add(integration_kind::pagerduty, receiver.pagerduty);
    add(integration_kind::slack, receiver.slack);
    add(integration_kind::console, receiver.console);
    return out;
}

label_set group_labels_of(const route_config& route, const label_set& labels)
{
    if (route.group_by_all) {
        return labels;
    }
    std::vector<label> picked;
    for (const auto& name : route.group_by) {
        auto value = labels.get(name);
        if (!value.empty()) {
            picked.push_back({name, std::string(value)});
        }
    }
    return label_set(std::move(picked));
}

// Alertmanager's dedup decision for one integration (its DedupStage.needsUpdate), with the
// repeat check inclusive so that a reminder falls exactly on the tick repeat_interval after the
// last notification. `firing` and `resolved` are sorted fingerprints.
bool needs_update(const nflog_record* entry, const std::vector<std::uint64_t>& firing,
                  const std::vector<std::uint64_t>& resolved, bool send_resolved, milliseconds repeat, time_ms now)
{
    if (entry == nullptr) {
        return !firing.empty();
    }
    if (!std::includes(entry->firing.begin(), entry->firing.end(), firing.begin(), firing.end())) {
        return true;
    }
    if (firing.empty()) {
        // Everything resolved: notify only when the receiver last heard of firing alerts. This
        // applies regardless of send_resolved, so that the log forgets the firing alerts.
        return !entry->firing.empty();
    }
    if (send_resolved &&
        !std::includes(entry->resolved.begin(), entry->resolved.end(), resolved.begin(), resolved.end())) {
        return true;
    }
    return entry->sent_at + repeat.count() <= now;
}

// The order of `severity` values for copies: info < warning < error < critical < page. The rule
// engine has no "error" tier, but Alertmanager users route on it, so it sits between warning and
// critical. Returns nullopt for a missing or unknown value, which compares with nothing.
std::optional<int> severity_rank(std::string_view value)
{
    if (value == "error") {
        return 2 * static_cast<int>(severity::warning) + 1;
    }
    if (auto level = parse_severity(value)) {
        return 2 * static_cast<int>(*level);
    }
    return std::nullopt;
}

// True when both labels sets carry a known severity and `to` is the higher one.
bool severity_rose(const label_set& from, const label_set& to)
{
    auto before = severity_rank(from.get("severity"));
    auto after = severity_rank(to.get("severity"));
    return before && after && *before < *after;
}

struct sorted_alert {
    std::string sort_key; // label set in Prometheus notation
    const alert* value;
};

std::vector<std::uint64_t> fingerprints_of(const std::vector<sorted_alert>& alerts)
{
    std::vector<std::uint64_t> out;
    out.reserve(alerts.size());
    for (const auto& a : alerts) {
        out.push_back(a.value->fingerprint());
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

} // namespace

struct dispatcher::impl {
    struct group {
        std::string key;
        const route_config* route = nullptr;
        label_set labels;
        // Alerts by id: the alert's current version, or a copy kept after a label change moved
        // the alert out of this group. Copies are listed in `copies`, and the alert's entry does
        // not list this group.
        std::map<std::uint64_t, alert> alerts;
        std::set<std::uint64_t> copies;
        time_ms next_flush_at = 0;
        bool has_flushed = false;
        // Set when an alert of the group starts or stops flapping: the next flush notifies
        // even when the log shows the receiver already has this state.
        bool force_notify = false;
        // The state a tick compares to skip a group whose notifications cannot differ from its
        // last flush. recheck_at is when the group changes by itself (an alert's end or a
        // reminder), 0 for never.
        bool changed = true;
        std::uint64_t mute_epoch = 0;
        bool time_muted = false;
        time_ms recheck_at = 0;
        // Per notification log key: fingerprints of firing alerts that a rate limit kept from
        // being announced. Their resolves are owed to the receiver even if they never fired in a
        // notification, so a deferral loses nothing.
        std::map<std::string, std::vector<std::uint64_t>> deferred_firing;
    };

    // The state changes of one alert for flap detection.
    struct flap_state {
        std::deque<time_ms> changes; // times the alert turned firing or resolved, within the window
        bool flapping = false;
        bool start_announced = false; // the start notice went out
        bool stop_pending = false;    // it settled; the next flush gives its current state
        time_ms stop_check_at = 0;    // its entry in flap_timers_, or 0
    };

    // The storm guard of one receiver: recent arrivals, and the alerts its digest stands for.
    struct storm_state {
        std::deque<std::pair<time_ms, std::uint64_t>> arrivals; // (time, alert id) within the window
        bool taking = false;    // new arrivals join `members`
        bool announced = false; // the digest went out firing
        std::set<std::uint64_t> members;
        time_ms started_at = 0;
        std::string group_key; // of the digest notifications
        std::uint64_t digest_id = 0;
        // The highest severity among the alerts that started the storm. A later alert of a
        // higher severity is notified on its own, so a storm of warnings hides no page.
        std::optional<int> top_rank;
        std::string top_severity;
        std::size_t announced_count = 0; // members when the digest last went out
        alert last_digest;               // as last sent, for its resolve
    };

    struct alert_entry {
        alert current;
        std::vector<std::string> group_keys; // the groups that hold `current`
        time_ms orphan_expiry = 0;           // the alert's time in orphan_expiry_, or 0 when not listed there
    };

    struct group_target {
        const route_config* route;
        std::string key;
        label_set labels;
    };

    struct saved_timer {
        time_ms next_flush_at;
        bool has_flushed;
    };

    impl(std::shared_ptr<const routing_config> config, const clock& clock) : clock_(clock)
    {
        install_config(std::move(config));
    }

    void install_config(std::shared_ptr<const routing_config> config)
    {
        config_ = std::move(config);
        routes_by_key_.clear();
        if (config_->present) {
            index_routes(config_->root);
        }
        inhibitor_ = std::make_unique<inhibitor>(config_->inhibit_rules);
        ++mute_epoch_;
        intervals_.clear();
        for (const auto& t : config_->time_intervals) {
            intervals_.emplace(t.name, &t.specs);
        }
        for (const auto& [id, entry] : alerts_) {
            inhibitor_->observe(entry.current);
        }
    }

    // True when the route's mute_time_intervals hold at `now`, or it has active_time_intervals
    // and none holds.
    bool route_muted(const route_config& route, time_ms now) const
    {
        auto holds = [&](const std::string& name) {
            auto it = intervals_.find(name);
            return it != intervals_.end() && any_contains(*it->second, now);
        };
        if (std::any_of(route.mute_time_intervals.begin(), route.mute_time_intervals.end(), holds)) {
            return true;
        }
        return !route.active_time_intervals.empty() &&
               std::none_of(route.active_time_intervals.begin(), route.active_time_intervals.end(), holds);
    }

    // True when flapping, a storm digest, an active silence or a firing source alert mutes `a`.
    // Also true when
    // `a` is a firing copy in `g` of an alert that now fires at a higher severity, because a
    // lower tier is not notified on its own while the higher one fires.
    bool muted(const group& g, const alert& a, time_ms now) const
    {
        if (flapping_quiet(a.id) || storm_holds(g.route->receiver, a.id)) {
            return true;
        }
        if (g.copies.contains(a.id) && !a.resolved_at(now)) {
            auto it = alerts_.find(a.id);
            if (it != alerts_.end() && !it->second.current.resolved_at(now) &&
                severity_rose(a.labels, it->second.current.labels)) {
                return true;
            }
        }
        return (silences_ != nullptr && silences_->mutes(a.labels, now)) || inhibitor_->inhibited(a.id, a.labels, now);
    }

    void index_routes(const route_config& route)
    {
        routes_by_key_.emplace(route.key, &route);
        for (const auto& child : route.routes) {
            index_routes(child);
        }
    }

    std::vector<group_target> targets_for(const label_set& labels) const
    {
        std::vector<group_target> out;
        if (!config_->present) {
            return out;
        }
        for (const route_config* route : match_routes(config_->root, labels)) {
            label_set group_labels = group_labels_of(*route, labels);
            std::string key = route->key + ":" + group_labels.to_string();
            out.push_back({route, std::move(key), std::move(group_labels)});
        }
        return out;
    }

    void mark_group(const std::string& key)
    {
        if (!quiet_groups_) {
            dirty_groups_.insert(key);
        }
    }

    void set_timer(group& g, time_ms at)
    {
        timers_.erase({g.next_flush_at, g.key});
        g.next_flush_at = at;
        timers_.insert({at, g.key});
        mark_group(g.key);
    }

    group& ensure_group(const std::string& key, const route_config* route, const label_set& labels, time_ms now)
    {
        auto it = groups_.find(key);
        if (it != groups_.end()) {
            it->second->route = route;
            return *it->second;
        }
        auto g = std::make_unique<group>();
        g->key = key;
        g->route = route;
        g->labels = labels;
        g->next_flush_at = now + route->group_wait.count();
        timers_.insert({g->next_flush_at, key});
        mark_group(key);
        return *groups_.emplace(key, std::move(g)).first->second;
    }

    // Adds or replaces an alert in `g`, replacing a copy of it there. Like Alertmanager, a group
    // that has not flushed yet flushes at once when the alert started more than group_wait ago.
    void put_in_group(group& g, const alert& a, time_ms now)
    {
        drop_copy(g, a.id);
        g.alerts.insert_or_assign(a.id, a);
        g.changed = true;
        if (!a.resolved_at(now) && !a.acknowledged()) {
            for (const auto& step : g.route->escalate) {
                if (a.starts_at + step.after.count() > now) {
                    escalation_timers_.insert({a.starts_at + step.after.count(), g.key});
                }
            }
        }
        if (!g.has_flushed && a.starts_at + g.route->group_wait.count() <= now && g.next_flush_at > now) {
            set_timer(g, now);
        }
    }

    void put_copy(group& g, alert copy)
    {
        const std::uint64_t id = copy.id;
        g.alerts.insert_or_assign(id, std::move(copy));
        g.copies.insert(id);
        g.changed = true;
        copy_groups_[id].insert(g.key);
        dirty_copies_.insert({g.key, id});
    }

    // Removes alert `id` from the copies of `g`. The caller erases or replaces its entry in
    // g.alerts.
    void drop_copy(group& g, std::uint64_t id)
    {
        if (g.copies.erase(id) == 0) {
            return;
        }
        g.changed = true;
        auto it = copy_groups_.find(id);
        if (it != copy_groups_.end()) {
            it->second.erase(g.key);
            if (it->second.empty()) {
                copy_groups_.erase(it);
            }
        }
        dirty_copies_.insert({g.key, id});
    }

    void remove_group(std::string key) // a copy: the group that owns the original goes away
    {
        auto it = groups_.find(key);
        for (std::uint64_t id : std::set<std::uint64_t>(it->second->copies)) {
            drop_copy(*it->second, id);
        }
        timers_.erase({it->second->next_flush_at, key});
        groups_.erase(it);
        mark_group(key);
    }

    void set_orphan(alert_entry& entry)
    {
        clear_orphan(entry);
        if (entry.group_keys.empty() && entry.current.ends_at != 0) {
            entry.orphan_expiry = entry.current.ends_at;
            orphan_expiry_.insert({entry.orphan_expiry, entry.current.id});
        }
    }

    void clear_orphan(alert_entry& entry)
    {
        if (entry.orphan_expiry != 0) {
            orphan_expiry_.erase({entry.orphan_expiry, entry.current.id});
            entry.orphan_expiry = 0;
        }
    }

    void erase_alert(std::unordered_map<std::uint64_t, alert_entry>::iterator it)
    {
        inhibitor_->forget(it->first);
        clear_orphan(it->second);
        dirty_alerts_.insert(it->first);
        alerts_.erase(it);
    }

    // Puts the alert into every group its labels route to.
    void route_alert(alert_entry& entry, time_ms now)
    {
        for (auto& t : targets_for(entry.current.labels)) {
            group& g = ensure_group(t.key, t.route, t.labels, now);
            put_in_group(g, entry.current, now);
            entry.group_keys.push_back(t.key);
        }
    }

    void upsert(alert a)
    {
        const time_ms now = clock_.now_ms();
        const std::uint64_t id = a.id;
        dirty_alerts_.insert(id);
        auto found = alerts_.find(id);
        const bool was_firing = found != alerts_.end() && !found->second.current.resolved_at(now);
        const bool changed = was_firing == a.resolved_at(now);
        if (found == alerts_.end()) {
            auto& entry = alerts_.emplace(id, alert_entry{std::move(a), {}, 0}).first->second;
            inhibitor_->observe(entry.current);
            route_alert(entry, now);
            if (!entry.current.resolved_at(now)) {
                note_arrival(entry, now);
            }
            update_copies(entry.current, now);
            finish_upsert(alerts_.find(id), now);
            if (changed) {
                record_change(id, now);
            }
            return;
        }

        alert_entry& entry = found->second;
        const bool resolved = a.resolved_at(now);
        if (was_firing && !a.acknowledged()) {
            // An acknowledgement holds for the whole firing episode; senders do not repeat it.
            a.acknowledged_at = entry.current.acknowledged_at;
            a.acknowledged_by = entry.current.acknowledged_by;
            a.ack_comment = entry.current.ack_comment;
        }
        std::vector<group_target> targets = targets_for(a.labels);
        if (resolved) {
            // A resolve goes only to the groups that contain the alert, because no other group
            // announced it firing.
            std::erase_if(targets, [&entry](const group_target& t) {
                return std::find(entry.group_keys.begin(), entry.group_keys.end(), t.key) == entry.group_keys.end();
            });
        }

        for (const auto& key : entry.group_keys) {
            bool stays = std::any_of(targets.begin(), targets.end(), [&key](const group_target& t) { return t.key == key; });
            if (!stays) {
                put_copy(*groups_.at(key), copy_on_leaving(entry.current, a, now));
            }
        }

        // An escalation is announced at once rather than at the group's next tick.
        const bool escalated = !resolved && severity_rose(entry.current.labels, a.labels);
        const bool end_moved = entry.current.ends_at != a.ends_at;
        entry.current = std::move(a);
        inhibitor_->observe(entry.current);
        entry.group_keys.clear();
        for (auto& t : targets) {
            group& g = ensure_group(t.key, t.route, t.labels, now);
            put_in_group(g, entry.current, now);
            if (escalated && g.has_flushed && g.next_flush_at > now) {
                set_timer(g, now);
            }
            entry.group_keys.push_back(t.key);
        }
        update_copies(entry.current, now);
        if (changed && !resolved) {
            note_arrival(entry, now);
        } else if (end_moved) {
            note_member_change(id, now); // resolved now, or a sender's endsAt moved
        }
        finish_upsert(found, now);
        if (changed) {
            record_change(id, now);
        }
    }

    // -- storm guard -------------------------------------------------------------------------

    // True when alert `id` belongs to a storm of `receiver`, so its digest stands for it.
    bool storm_holds(const std::string& receiver, std::uint64_t id) const
    {
        if (storms_.empty()) {
            return false;
        }
        auto it = storms_.find(receiver);
        return it != storms_.end() && it->second.members.contains(id);
    }

    // Counts a new firing alert (or a new firing episode) for each receiver with a storm guard
    // among the groups it joined. Past max_new_alerts within the window, a storm starts: the
    // alerts of the window join it and its digest goes out at the next flush.
    void note_arrival(const alert_entry& entry, time_ms now)
    {
        std::set<std::string> receivers;
        for (const auto& key : entry.group_keys) {
            receivers.insert(groups_.at(key)->route->receiver);
        }
        for (const auto& name : receivers) {
            const receiver_config* receiver = config_->find_receiver(name);
            if (receiver == nullptr || !receiver->storm_guard.enabled()) {
                continue;
            }
            const storm_guard_config& guard = receiver->storm_guard;
            storm_state& s = storms_[name];
            s.arrivals.emplace_back(now, entry.current.id);
            while (!s.arrivals.empty() && s.arrivals.front().first <= now - guard.window.count()) {
                s.arrivals.pop_front();
            }
            if (s.taking) {
                if (s.members.empty()) {
                    start_digest(name, s, {entry.current.id}, now); // the last digest resolved mid-flood
                    continue;
                }
                const auto rank = severity_rank(entry.current.labels.get("severity"));
                if (rank && (!s.top_rank || *rank > *s.top_rank)) {
                    continue; // a higher tier than the storm's is notified on its own
                }
                s.members.insert(entry.current.id);
                if (s.announced && s.members.size() >= 2 * s.announced_count) {
                    s.announced = false; // the flood doubled: the digest goes out again with its count
                    storm_timers_.insert({now, name});
                }
                continue;
            }
            if (s.arrivals.size() > guard.max_new_alerts) {
                std::vector<std::uint64_t> ids;
                for (const auto& [at, id] : s.arrivals) {
                    ids.push_back(id);
                }
                if (s.members.empty()) {
                    start_digest(name, s, ids, now);
                } else {
                    // A storm whose digest still stands for firing alerts takes the new flood too.
                    s.members.insert(ids.begin(), ids.end());
                    s.announced = false;
                    storm_timers_.insert({now, name});
                }
                s.taking = true;
                ++mute_epoch_;
            } else {
                schedule_storm_check(name, s, guard);
            }
        }
    }

    // A new digest for storm `s` that stands for the alerts `ids`: it goes out at the next flush.
    void start_digest(const std::string& name, storm_state& s, const std::vector<std::uint64_t>& ids, time_ms now)
    {
        ++mute_epoch_;
        s.members.insert(ids.begin(), ids.end());
        s.top_rank.reset();
        s.top_severity.clear();
        for (std::uint64_t id : ids) {
            auto it = alerts_.find(id);
            if (it == alerts_.end()) {
                continue;
            }
            const std::string_view severity = it->second.current.labels.get("severity");
            if (auto rank = severity_rank(severity); rank && (!s.top_rank || *rank > *s.top_rank)) {
                s.top_rank = rank;
                s.top_severity = std::string(severity);
            }
        }
        s.announced_count = 0;
        s.announced = false;
        s.started_at = now;
        s.group_key = fmt::format("storm/{}@{}", name, now);
        s.digest_id = label_set{{"receiver", name}, {"storm", std::to_string(now)}}.fingerprint();
        ++storms_started_;
        storm_timers_.insert({now, name});
    }

    // A member of a storm resolved: its storm checks whether its digest can resolve.
    void note_member_change(std::uint64_t id, time_ms now)
    {
        for (const auto& [name, s] : storms_) {
            if (s.members.contains(id)) {
                storm_timers_.insert({now, name});
            }
        }
    }

    // Schedules the next check of a storm. While it takes alerts, that is when the window will
    // contain max_new_alerts or fewer arrivals, otherwise when its arrivals leave the window.
    void schedule_storm_check(const std::string& name, const storm_state& s, const storm_guard_config& guard)
    {
        if (s.arrivals.empty()) {
            return;
        }
        const std::size_t keep = s.taking ? guard.max_new_alerts : 0;
        if (s.arrivals.size() <= keep) {
            return;
        }
        storm_timers_.insert({s.arrivals[s.arrivals.size() - 1 - keep].first + guard.window.count(), name});
    }

    void check_storms(time_ms now, std::vector<notification>& out)
    {
        for (auto& [name, ended] : ended_storms_) {
            if (const receiver_config* receiver = config_->find_receiver(name)) {
                send_digest(*receiver, ended, now, true, out);
            }
        }
        ended_storms_.clear();
        std::set<std::string> due;
        while (!storm_timers_.empty() && storm_timers_.begin()->first <= now) {
            due.insert(storm_timers_.begin()->second);
            storm_timers_.erase(storm_timers_.begin());
        }
        for (const auto& name : due) {
            auto it = storms_.find(name);
            if (it == storms_.end()) {
                continue;
            }
            storm_state& s = it->second;
            const receiver_config* receiver = config_->find_receiver(name);
            if (receiver == nullptr || !receiver->storm_guard.enabled()) {
                continue; // replace_config() drops such storms
            }
            const storm_guard_config& guard = receiver->storm_guard;
            while (!s.arrivals.empty() && s.arrivals.front().first <= now - guard.window.count()) {
                s.arrivals.pop_front();
            }
            if (s.taking && s.arrivals.size() <= guard.max_new_alerts) {
                s.taking = false;
            }
            if (!s.members.empty()) {
                std::size_t firing = 0;
                time_ms next_end = 0; // the earliest end in the future, from a sender's endsAt
                for (std::uint64_t id : s.members) {
                    auto a = alerts_.find(id);
                    if (a == alerts_.end() || a->second.current.resolved_at(now)) {
                        continue;
                    }
                    ++firing;
                    const time_ms ends_at = a->second.current.ends_at;
                    if (ends_at != 0 && (next_end == 0 || ends_at < next_end)) {
                        next_end = ends_at;
                    }
                }
                if (next_end != 0) {
                    storm_timers_.insert({next_end, name});
                }
                if (!s.announced && firing > 0) {
                    send_digest(*receiver, s, now, false, out);
                    s.announced = true;
                    s.announced_count = s.members.size();
                } else if (firing == 0) {
                    // Every alert of the digest resolved. While the flood goes on, new alerts
                    // start a new digest.
                    if (s.announced_count > 0) {
                        send_digest(*receiver, s, now, true, out);
                    }
                    s.members.clear();
                    s.announced = false;
                    ++mute_epoch_;
                }
            }
            if (s.members.empty() && s.arrivals.empty()) {
                storms_.erase(it);
                continue;
            }
            schedule_storm_check(name, s, guard);
        }
    }

    void send_digest(const receiver_config& receiver, storm_state& s, time_ms now, bool resolved,
                     std::vector<notification>& out)
    {
        alert digest;
        if (resolved) {
            // The labels it fired with, so receivers match the resolve to it.
            digest = s.last_digest;
            digest.ends_at = now;
            digest.updated_at = now;
            digest.annotations = {
                {"description", fmt::format("Every one of the {} alerts this digest stood for has resolved.",
                                            s.members.size())},
                {"summary", fmt::format("Alert storm over for receiver {}", receiver.name)},
            };
        } else {
            digest = digest_alert(receiver, s, now);
            s.last_digest = digest;
        }
        for (const auto& slot : integrations_of(receiver)) {
            if (resolved && !slot.send_resolved) {
                continue;
            }
            notification n;
            n.integration = integration_ref{receiver.name, slot.kind, slot.index};
            n.route_key = "storm";
            n.group_key = s.group_key;
            n.group_labels = label_set{{"alertname", "AlertStorm"}, {"receiver", receiver.name}};
            n.alerts.push_back(digest);
            n.firing = resolved ? 0 : 1;
            n.created_at = now;
            n.storm_digest = true;
            out.push_back(std::move(n));
        }
    }

    // Builds the alert of a digest notification: how many alerts the storm contains and how many
    // still fire, the labels all of them share, and the most common values of the others.
    alert digest_alert(const receiver_config& receiver, const storm_state& s, time_ms now) const
    {
        const std::size_t total = s.members.size();
        std::size_t listed = 0; // members still held; resolved ones leave once announced
        std::size_t firing = 0;
        std::map<std::string, std::map<std::string, std::size_t>> values; // name -> value -> count
        for (std::uint64_t id : s.members) {
            auto it = alerts_.find(id);
            if (it == alerts_.end()) {
                continue;
            }
            const alert& a = it->second.current;
            ++listed;
            firing += a.resolved_at(now) ? 0 : 1;
            for (const auto& l : a.labels.items()) {
                ++values[l.name][l.value];
            }
        }
        std::vector<std::string> shared;
        std::vector<std::pair<std::size_t, std::string>> varied; // (distinct values, name)
        for (const auto& [name, counts] : values) {
            if (counts.size() == 1 && counts.begin()->second == listed) {
                shared.push_back(fmt::format("{}=\"{}\"", name, counts.begin()->first));
            } else {
                varied.emplace_back(counts.size(), name);
            }
        }
        std::sort(varied.begin(), varied.end());
        std::string top;
        constexpr std::size_t max_labels = 5;
        constexpr std::size_t max_values = 3;
        for (std::size_t i = 0; i < varied.size() && i < max_labels; ++i) {
            const auto& counts = values.at(varied[i].second);
            std::vector<std::pair<std::size_t, std::string>> ranked;
            for (const auto& [value, count] : counts) {
                ranked.emplace_back(count, value);
            }
            std::sort(ranked.begin(), ranked.end(), [](const auto& x, const auto& y) {
                return x.first != y.first ? x.first > y.first : x.second < y.second;
            });
            std::vector<std::string> parts;
            for (std::size_t j = 0; j < ranked.size() && j < max_values; ++j) {
                parts.push_back(fmt::format("{} ({})", ranked[j].second, ranked[j].first));
            }
            if (ranked.size() > max_values) {
                parts.push_back(fmt::format("{} more values", ranked.size() - max_values));
            }
            top += fmt::format("\n{}: {}", varied[i].second, fmt::join(parts, ", "));
        }

        alert d;
        d.id = s.digest_id;
        std::vector<label> labels{{"alertname", "AlertStorm"}, {"receiver", receiver.name}};
        if (!s.top_severity.empty()) {
            labels.push_back({"severity", s.top_severity});
        }
        d.labels = label_set(std::move(labels));
        d.starts_at = s.started_at;
        d.updated_at = now;
        d.source = "storm";
        d.annotations = {
            {"description",
             fmt::format("{} of {} alerts still fire. Labels they all share: {}.{}{}\nEach alert stays listed "
                         "in GET /api/v2/alerts.",
                         firing, total, shared.empty() ? "none" : fmt::format("{}", fmt::join(shared, ", ")),
                         top.empty() ? "" : "\nMost common values:", top)},
            {"summary", fmt::format("Alert storm: more than {} new alerts for receiver {} within {}; this digest "
                                    "stands for {} of them",
                                    receiver.storm_guard.max_new_alerts, receiver.name,
                                    format_duration(receiver.storm_guard.window), total)},
        };
        return d;
    }

    // -- acknowledgements --------------------------------------------------------------------

    ack_outcome set_ack(std::uint64_t id, std::string by, std::string comment, time_ms at)
    {
        const time_ms now = clock_.now_ms();
        auto it = alerts_.find(id);
        if (it == alerts_.end()) {
            return ack_outcome::not_found;
        }
        alert_entry& entry = it->second;
        if (entry.current.resolved_at(now)) {
            return ack_outcome::resolved;
        }
        entry.current.acknowledged_at = at;
        entry.current.acknowledged_by = std::move(by);
        entry.current.ack_comment = std::move(comment);
        entry.current.updated_at = now;
        dirty_alerts_.insert(id);
        for (const auto& key : entry.group_keys) {
            group& g = *groups_.at(key);
            g.alerts.insert_or_assign(id, entry.current);
            g.changed = true;
            if (at == 0 && !g.route->escalate.empty()) {
                escalation_timers_.insert({now, key}); // steps already due go out now
            }
        }
        return ack_outcome::done;
    }

    // -- flap detection --------------------------------------------------------------------

    // True while a flapping alert's changes are held: after its start notice and until the
    // notification of its settled state.
    bool flapping_quiet(std::uint64_t id) const
    {
        auto it = flaps_.find(id);
        return it != flaps_.end() && it->second.flapping && it->second.start_announced;
    }

    // True while the alert must stay in its groups: flapping, or settled with its state not
    // given yet.
    bool flapping_held(std::uint64_t id) const
    {
        auto it = flaps_.find(id);
        return it != flaps_.end() && (it->second.flapping || it->second.stop_pending);
    }

    void annotate_flapping(alert& a) const
    {
        auto it = flaps_.find(a.id);
        if (it == flaps_.end()) {
            return;
        }
        const flap_config& f = config_->flap_detection;
        if (it->second.flapping && !it->second.start_announced) {
            a.annotations.emplace_back(
                "flapping", fmt::format("started: {} changes between firing and resolved within {}; further changes "
                                        "are held until it settles",
                                        it->second.changes.size(), format_duration(f.window)));
        } else if (it->second.stop_pending) {
            a.annotations.emplace_back("flapping", "stopped: the state in this notification is current");
        }
    }

    // After a flush of a group that contains alert `id`: the start or stop notice went out.
    void settle_announcements(std::uint64_t id)
    {
        auto it = flaps_.find(id);
        if (it == flaps_.end()) {
            return;
        }
        if (it->second.flapping) {
            it->second.start_announced = true;
        } else if (it->second.stop_pending) {
            it->second.stop_pending = false;
        }
        if (!it->second.flapping && !it->second.stop_pending && it->second.changes.empty()) {
            flaps_.erase(it);
        }
    }

    // Records a change between firing and resolved, and starts flapping when the window
    // contains start_at_changes of them.
    void record_change(std::uint64_t id, time_ms now)
    {
        const flap_config& f = config_->flap_detection;
        if (!f.enabled()) {
            return;
        }
        flap_state& state = flaps_[id];
        state.changes.push_back(now);
        while (!state.changes.empty() && state.changes.front() <= now - f.window.count()) {
            state.changes.pop_front();
        }
        if (!state.flapping && state.changes.size() >= f.start_at_changes) {
            state.flapping = true;
            state.start_announced = false;
            state.stop_pending = false;
            flush_groups_of(id, now);
        }
        if (state.flapping) {
            schedule_stop_check(id, state);
        } else if (state.changes.size() == 1 && !state.stop_pending) {
            // Forgotten once its only change leaves the window.
            schedule_stop_check(id, state);
        }
    }

    // The time at which no more than stop_at_changes changes remain within the window (for a
    // flapping alert), or at which the history empties (for the others).
    void schedule_stop_check(std::uint64_t id, flap_state& state)
    {
        const flap_config& f = config_->flap_detection;
        const std::size_t keep = state.flapping ? f.stop_at_changes : 0;
        if (state.stop_check_at != 0) {
            flap_timers_.erase({state.stop_check_at, id});
            state.stop_check_at = 0;
        }
        if (state.changes.size() <= keep) {
            return;
        }
        state.stop_check_at = state.changes[state.changes.size() - 1 - keep] + f.window.count();
        flap_timers_.insert({state.stop_check_at, id});
    }

    void check_flap_stops(time_ms now)
    {
        const flap_config& f = config_->flap_detection;
        while (!flap_timers_.empty() && flap_timers_.begin()->first <= now) {
            const std::uint64_t id = flap_timers_.begin()->second;
            flap_timers_.erase(flap_timers_.begin());
            auto it = flaps_.find(id);
            if (it == flaps_.end()) {
                continue;
            }
            flap_state& state = it->second;
            state.stop_check_at = 0;
            while (!state.changes.empty() && state.changes.front() <= now - f.window.count()) {
                state.changes.pop_front();
            }
            if (state.flapping && state.changes.size() <= f.stop_at_changes) {
                stop_flapping(id, state, now);
            } else if (state.flapping) {
                schedule_stop_check(id, state);
            } else if (state.changes.empty() && !state.stop_pending) {
                flaps_.erase(it);
            }
        }
    }

    // Ends flapping and has the alert's groups give its current state at once.
    void stop_flapping(std::uint64_t id, flap_state& state, time_ms now)
    {
        state.flapping = false;
        state.stop_pending = state.start_announced;
        state.start_announced = false;
        flush_groups_of(id, now);
    }

    // Brings the flush of every group that contains alert `id` forward to now, forcing a
    // notification.
    void flush_groups_of(std::uint64_t id, time_ms now)
    {
        auto it = alerts_.find(id);
        if (it == alerts_.end()) {
            return;
        }
        for (const auto& key : it->second.group_keys) {
            group& g = *groups_.at(key);
            g.force_notify = true;
            g.changed = true;
            if (g.next_flush_at > now) {
                set_timer(g, now);
            }
        }
    }

    // The copy that a group keeps when the alert leaves it: the old version, still firing when
    // the severity rose, so the group sends nothing for the move. Otherwise the group hears a
    // resolve, with the final annotations when the alert itself resolved.
    static alert copy_on_leaving(const alert& old, const alert& next, time_ms now)
    {
        alert copy = old;
        if (copy.resolved_at(now)) {
            return copy; // resolved before it moved; that resolve is still to be announced
        }
        if (next.resolved_at(now)) {
            resolve_with(copy, next, now);
        } else if (!severity_rose(old.labels, next.labels)) {
            copy.ends_at = now;
            copy.updated_at = now;
        }
        return copy;
    }

    // Resolves `copy` at the time `final_version` resolved, with its annotations, so the resolve
    // shows the values at recovery.
    static void resolve_with(alert& copy, const alert& final_version, time_ms now)
    {
        copy.ends_at = final_version.ends_at;
        copy.annotations = final_version.annotations;
        copy.updated_at = now;
    }

    // Brings the firing copies of `current` in other groups up to date. A firing copy is the
    // alert at a lower severity, so it resolves when the alert resolves, when the severity falls
    // to its level or below, or when the severity is no longer comparable.
    void update_copies(const alert& current, time_ms now)
    {
        auto found = copy_groups_.find(current.id);
        if (found == copy_groups_.end()) {
            return;
        }
        for (const auto& key : found->second) {
            groups_.at(key)->changed = true;
            alert& copy = groups_.at(key)->alerts.at(current.id);
            if (copy.resolved_at(now)) {
                continue;
            }
            if (current.resolved_at(now)) {
                resolve_with(copy, current, now);
            } else if (severity_rose(copy.labels, current.labels)) {
                continue;
            } else {
                copy.ends_at = now;
                copy.updated_at = now;
            }
            dirty_copies_.insert({key, current.id});
        }
    }

    // An alert in no group is kept while it fires (the API still lists it) and dropped once
    // resolved, because no receiver is left to tell.
    void finish_upsert(std::unordered_map<std::uint64_t, alert_entry>::iterator it, time_ms now)
    {
        alert_entry& entry = it->second;
        if (entry.group_keys.empty() && entry.current.resolved_at(now)) {
            erase_alert(it);
            return;
        }
        set_orphan(entry);
    }

    void put_nflog(nflog_record record)
    {
        nflog_key key{record.group_key, record.integration_id};
        auto it = nflog_.find(key);
        if (it != nflog_.end()) {
            nflog_expiry_.erase({it->second.expires_at, key});
            it->second = std::move(record);
        } else {
            it = nflog_.emplace(key, std::move(record)).first;
        }
        nflog_expiry_.insert({it->second.expires_at, key});
        dirty_nflog_.insert(std::move(key));
    }

    // NOTE: expiry runs only inside flush_due(), and next_flush_at() ignores it, so with no
    // groups left an expired entry stays until the caller flushes for another reason.
    void expire(time_ms now)
    {
        while (!nflog_expiry_.empty() && nflog_expiry_.begin()->first <= now) {
            nflog_key key = nflog_expiry_.begin()->second;
            nflog_expiry_.erase(nflog_expiry_.begin());
            nflog_.erase(key);
            dirty_nflog_.insert(std::move(key));
        }
        while (!orphan_expiry_.empty() && orphan_expiry_.begin()->first <= now) {
            auto it = alerts_.find(orphan_expiry_.begin()->second);
            erase_alert(it);
        }
    }

    std::vector<notification> flush_due()
    {
        const time_ms now = clock_.now_ms();
        expire(now);
        check_flap_stops(now);

        // Collected first: a flush reschedules its group, and a zero group_interval would
        // otherwise bring the same group back in this loop.
        std::vector<std::string> due;
        for (auto it = timers_.begin(); it != timers_.end() && it->first <= now; ++it) {
            due.push_back(it->second);
        }
        note_silence_changes(now);
        std::vector<notification> out;
        std::set<std::string> flushed;
        for (const auto& key : due) {
            group& g = *groups_.at(key);
            if (unchanged_since_flush(g, now)) {
                reschedule_quietly(g, now);
                continue;
            }
            flush_group(g, now, out);
            flushed.insert(key);
        }

        // Escalation steps that fell due between ticks. A group flushed above has just checked them.
        std::set<std::string> escalating;
        while (!escalation_timers_.empty() && escalation_timers_.begin()->first <= now) {
            escalating.insert(escalation_timers_.begin()->second);
            escalation_timers_.erase(escalation_timers_.begin());
        }
        for (const auto& key : escalating) {
            auto it = groups_.find(key);
            if (it == groups_.end() || flushed.contains(key)) {
                continue;
            }
            const flush_lists lists = collect(*it->second, now);
            if (!notify_escalations(*it->second, lists, now, out)) {
                escalation_timers_.insert({retry_at_, key});
            }
        }

        check_storms(now, out);
        notifications_ += out.size();
        return out;
    }

    // Bumps the mute epoch when the silences changed, or one started or ended, since the last
    // flush_due().
    void note_silence_changes(time_ms now)
    {
        if (silences_ != nullptr && (silences_->generation() != silence_generation_ ||
                                     silences_->starts_or_ends_between(last_flush_due_, now))) {
            silence_generation_ = silences_->generation();
            ++mute_epoch_;
        }
        last_flush_due_ = now;
    }

    // True when a flush of `g` now would notify nothing that its last flush did not: its alerts
    // did not change, muting did not change, and no alert ended and no reminder fell due by
    // itself. Alertmanager re-sorts and compares every group at every tick instead.
    // NOTE: with inhibit rules every group is flushed in full, because a source alert that
    // ends by its endsAt changes inhibition without a change to any group.
    bool unchanged_since_flush(const group& g, time_ms now) const
    {
        return config_->inhibit_rules.empty() && g.has_flushed && !g.changed && !g.force_notify &&
               g.mute_epoch == mute_epoch_ && (g.recheck_at == 0 || now < g.recheck_at) &&
               g.time_muted == route_muted(*g.route, now);
    }

    // Moves the timer of a skipped group to its next tick.
    void reschedule_quietly(group& g, time_ms now) { set_timer(g, next_tick(g, now)); }

    // The tick of `g` after the current one, or one group interval from now when the process
    // was down or stalled past it.
    static time_ms next_tick(const group& g, time_ms now)
    {
        const time_ms next = g.next_flush_at + g.route->group_interval.count();
        return next <= now ? now + g.route->group_interval.count() : next;
    }

    // The earliest time after `now` at which `g` changes by itself: an alert reaches its endsAt,
    // or a receiver of the route or of an escalation step is due a reminder. 0 when never.
    time_ms next_recheck(const group& g, time_ms now) const
    {
        time_ms at = 0;
        auto consider = [&at, now](time_ms t) {
            if (t > now && (at == 0 || t < at)) {
                at = t;
            }
        };
        for (const auto& [id, a] : g.alerts) {
            consider(a.ends_at);
        }
        auto reminders = [&](const std::string& receiver_name, const std::string& log_key) {
            const receiver_config* receiver = config_->find_receiver(receiver_name);
            if (receiver == nullptr) {
                return;
            }
            for (const auto& slot : integrations_of(*receiver)) {
                auto entry = nflog_.find({log_key, integration_ref{receiver->name, slot.kind, slot.index}.id()});
                if (entry != nflog_.end() && !entry->second.firing.empty()) {
                    consider(entry->second.sent_at + g.route->repeat_interval.count());
                }
            }
        };
        reminders(g.route->receiver, g.key);
        for (std::size_t i = 0; i < g.route->escalate.size(); ++i) {
            reminders(g.route->escalate[i].receiver, escalation_key(g.key, static_cast<std::uint32_t>(i + 1)));
        }
        return at;
    }

    // The alerts of a group at a flush: the firing ones that are not muted, and every resolved
    // one with whether it is muted, each part ordered by labels.
    struct flush_lists {
        std::vector<sorted_alert> firing;
        std::vector<sorted_alert> resolved;
        std::vector<bool> resolved_muted;
    };

    flush_lists collect(const group& g, time_ms now) const
    {
        flush_lists lists;
        // Outside its active times or inside its mute times, a route sends no firing alerts.
        const bool time_muted = route_muted(*g.route, now);
        for (const auto& [id, a] : g.alerts) {
            if (!a.resolved_at(now)) {
                if (!time_muted && !muted(g, a, now)) {
                    lists.firing.push_back({a.labels.to_string(), &a});
                }
            } else {
                lists.resolved.push_back({a.labels.to_string(), &a});
            }
        }
        auto by_labels = [](const sorted_alert& x, const sorted_alert& y) { return x.sort_key < y.sort_key; };
        std::sort(lists.firing.begin(), lists.firing.end(), by_labels);
        std::sort(lists.resolved.begin(), lists.resolved.end(), by_labels);
        for (const auto& r : lists.resolved) {
            lists.resolved_muted.push_back(time_muted || muted(g, *r.value, now));
        }
        return lists;
    }

    // Flushes a group, as Alertmanager's pipeline does: muted alerts (silenced or inhibited)
    // are left out, and an integration with nothing left is skipped with its notification log
    // unchanged. Then the escalation steps that are due get their share.
    void flush_group(group& g, time_ms now, std::vector<notification>& out)
    {
        const flush_lists lists = collect(g, now);
        bool deferred = false;
        time_ms retry_at = std::numeric_limits<time_ms>::max();
        if (const receiver_config* receiver = config_->find_receiver(g.route->receiver)) {
            if (!notify_receiver(g, *receiver, g.key, lists.firing, lists, 0, g.force_notify, now, out)) {
                deferred = true;
                retry_at = std::min(retry_at, retry_at_);
            }
        }
        if (!notify_escalations(g, lists, now, out)) {
            deferred = true;
            retry_at = std::min(retry_at, retry_at_);
        }

        // Resolved alerts leave the group whether they were announced or needed no
        // notification, unless a rate limit deferred the notification that carries them.
        std::vector<std::uint64_t> leaving;
        if (!deferred) {
            leaving.reserve(lists.resolved.size());
            for (const auto& r : lists.resolved) {
                // A flapping alert stays in its group, so its state is there to give when it settles.
                if (!flapping_held(r.value->id)) {
                    leaving.push_back(r.value->id);
                }
            }
        }
        for (std::uint64_t id : leaving) {
            if (g.copies.contains(id)) {
                drop_copy(g, id);
                g.alerts.erase(id);
                continue;
            }
            g.alerts.erase(id);
            auto it = alerts_.find(id);
            if (it == alerts_.end()) {
                continue;
            }
            auto& keys = it->second.group_keys;
            auto pos = std::find(keys.begin(), keys.end(), g.key);
            if (pos == keys.end()) {
                continue;
            }
            keys.erase(pos);
            if (keys.empty()) {
                erase_alert(it);
            }
        }

        if (!deferred) {
            g.force_notify = false;
            for (const auto& [id, a] : g.alerts) {
                settle_announcements(id);
            }
            g.changed = false;
            g.mute_epoch = mute_epoch_;
            g.time_muted = route_muted(*g.route, now);
            g.recheck_at = next_recheck(g, now);
        }
        g.has_flushed = true;
        set_timer(g, std::min(next_tick(g, now), retry_at));
        if (g.alerts.empty()) {
            remove_group(g.key);
        }
    }

    // Sends each escalation step its due share of the group: the unacknowledged firing alerts
    // that started at least `after` ago, and the resolves of alerts the step announced. Returns
    // false when a rate limit deferred a step; retry_at_ is then when it has room.
    bool notify_escalations(group& g, const flush_lists& lists, time_ms now, std::vector<notification>& out)
    {
        bool sent_all = true;
        time_ms retry_at = std::numeric_limits<time_ms>::max();
        for (std::size_t i = 0; i < g.route->escalate.size(); ++i) {
            const escalation_step& step = g.route->escalate[i];
            const receiver_config* receiver = config_->find_receiver(step.receiver);
            if (receiver == nullptr) {
                continue;
            }
            std::vector<sorted_alert> due;
            for (const auto& a : lists.firing) {
                if (!a.value->acknowledged() && a.value->starts_at + step.after.count() <= now) {
                    due.push_back(a);
                }
            }
            const auto level = static_cast<std::uint32_t>(i + 1);
            if (!notify_receiver(g, *receiver, escalation_key(g.key, level), due, lists, level, false, now, out)) {
                sent_all = false;
                retry_at = std::min(retry_at, retry_at_);
            }
        }
        retry_at_ = retry_at;
        return sent_all;
    }

    static std::string escalation_key(const std::string& group_key, std::uint32_t level)
    {
        return fmt::format("{}:escalation={}", group_key, level);
    }

    // Notifies the integrations of `receiver` about group `g` under the notification log key
    // `log_key`: the `firing` alerts, and of the group's resolved alerts the ones the integration
    // should hear. At level 0 (the route's own receiver) those are the resolves that are not
    // muted and, so that an incident opened before a silence still closes, the muted ones it last
    // heard of as firing. At an escalation level only the latter, since it hears nothing else.
    // Returns false, changing nothing, when the receiver's rate_limit has no room for the
    // notification; retry_at_ is then the time it will.
    bool notify_receiver(group& g, const receiver_config& receiver, const std::string& log_key,
                         const std::vector<sorted_alert>& firing, const flush_lists& lists, std::uint32_t level,
                         bool force, time_ms now, std::vector<notification>& out)
    {
        struct planned {
            integration_ref ref;
            std::string integration_id;
            std::vector<sorted_alert> resolved;
            std::vector<std::uint64_t> resolved_fps;
            bool send;
        };
        const std::vector<std::uint64_t> firing_fps = fingerprints_of(firing);
        const auto deferred = g.deferred_firing.find(log_key);
        auto was_deferred = [&deferred, &g](std::uint64_t fp) {
            return deferred != g.deferred_firing.end() &&
                   std::binary_search(deferred->second.begin(), deferred->second.end(), fp);
        };
        std::vector<planned> plans;
        for (const auto& slot : integrations_of(receiver)) {
            integration_ref ref{receiver.name, slot.kind, slot.index};
            std::string integration_id = ref.id();
            auto entry = nflog_.find({log_key, integration_id});
            const nflog_record* previous = entry == nflog_.end() ? nullptr : &entry->second;
            std::vector<sorted_alert> resolved;
            for (std::size_t i = 0; i < lists.resolved.size(); ++i) {
                const alert& a = *lists.resolved[i].value;
                const bool announced_firing = previous != nullptr && std::binary_search(previous->firing.begin(),
                                                                                        previous->firing.end(),
                                                                                        a.fingerprint());
                const bool audible = level == 0 && !lists.resolved_muted[i];
                if (audible || ((announced_firing || was_deferred(a.fingerprint())) && !flapping_quiet(a.id))) {
                    resolved.push_back(lists.resolved[i]);
                }
            }
            if (firing.empty() && resolved.empty()) {
                continue;
            }
            std::vector<std::uint64_t> resolved_fps = fingerprints_of(resolved);
            const bool owed = std::any_of(resolved_fps.begin(), resolved_fps.end(), was_deferred);
            if (!force && !owed &&
                !needs_update(previous, firing_fps, resolved_fps, slot.send_resolved, g.route->repeat_interval, now)) {
                continue;
            }
            // Without send_resolved the resolved alerts stay out, and a notification of
            // nothing but resolves is not sent. The log still records the new state.
            const bool send = slot.send_resolved || !firing.empty();
            if (!slot.send_resolved) {
                resolved.clear();
            }
            plans.push_back({std::move(ref), std::move(integration_id), std::move(resolved), std::move(resolved_fps),
                             send});
        }
        const bool sends = std::any_of(plans.begin(), plans.end(), [](const planned& p) { return p.send; });
        if (sends && rate_limited(receiver, now)) {
            ++rate_limited_;
            auto& owed = g.deferred_firing[log_key];
            owed.insert(owed.end(), firing_fps.begin(), firing_fps.end());
            std::sort(owed.begin(), owed.end());
            owed.erase(std::unique(owed.begin(), owed.end()), owed.end());
            return false;
        }
        if (!plans.empty()) {
            g.deferred_firing.erase(log_key);
        }
        for (auto& p : plans) {
            if (p.send) {
                out.push_back(make_notification(g, std::move(p.ref), log_key, level, firing, p.resolved, now));
                if (level > 0) {
                    ++escalations_;
                }
            }
            nflog_record record;
            record.group_key = log_key;
            record.integration_id = std::move(p.integration_id);
            record.firing = firing_fps;
            record.resolved = std::move(p.resolved_fps);
            record.sent_at = now;
            record.expires_at = now + g.route->repeat_interval.count() + nflog_retention_ms;
            put_nflog(std::move(record));
        }
        if (sends && receiver.rate_limit.enabled()) {
            sent_times_[receiver.name].push_back(now);
        }
        return true;
    }

    // True when `receiver` sent rate_limit.max_notifications within the window before `now`;
    // retry_at_ is then the time the oldest of them leaves the window.
    bool rate_limited(const receiver_config& receiver, time_ms now)
    {
        if (!receiver.rate_limit.enabled()) {
            return false;
        }
        auto it = sent_times_.find(receiver.name);
        if (it == sent_times_.end()) {
            return false;
        }
        auto& times = it->second;
        const time_ms window = receiver.rate_limit.window.count();
        while (!times.empty() && times.front() <= now - window) {
            times.pop_front();
        }
        if (times.size() < receiver.rate_limit.max_notifications) {
            return false;
        }
        retry_at_ = times[times.size() - receiver.rate_limit.max_notifications] + window;
        return true;
    }

    notification make_notification(const group& g, integration_ref ref, const std::string& group_key,
                                   std::uint32_t level, const std::vector<sorted_alert>& firing,
                                   const std::vector<sorted_alert>& resolved, time_ms now)
    {
        notification n;
        n.integration = std::move(ref);
        n.route_key = g.route->key;
        n.group_key = group_key;
        n.group_labels = g.labels;
        n.dedup = g.route->dedup;
        n.escalation_level = level;
        n.alerts.reserve(firing.size() + resolved.size());
        for (const auto& a : firing) {
            n.alerts.push_back(*a.value);
        }
        for (const auto& a : resolved) {
            n.alerts.push_back(*a.value);
        }
        for (alert& a : n.alerts) {
            annotate_flapping(a);
            if (level > 0 && !a.resolved_at(now)) {
                const escalation_step& step = g.route->escalate[level - 1];
                a.annotations.emplace_back(
                    "escalation", fmt::format("step {}: firing for {} or more without an acknowledgement",
                                              level, format_duration(step.after)));
                std::sort(a.annotations.begin(), a.annotations.end());
            }
        }
        n.firing = firing.size();
        n.created_at = now;
        return n;
    }

    std::unordered_map<std::string, saved_timer> timers_by_key() const
    {
        std::unordered_map<std::string, saved_timer> out;
        for (const auto& [key, g] : groups_) {
            out.emplace(key, saved_timer{g->next_flush_at, g->has_flushed});
        }
        return out;
    }

    // Gives groups that existed before the timers they had, and marks as changed only the
    // groups that appeared or disappeared.
    void apply_saved_timers(const std::unordered_map<std::string, saved_timer>& saved)
    {
        quiet_groups_ = true;
        for (auto& [key, g] : groups_) {
            auto it = saved.find(key);
            if (it != saved.end()) {
                g->has_flushed = it->second.has_flushed;
                set_timer(*g, it->second.next_flush_at);
            }
        }
        quiet_groups_ = false;
        for (const auto& [key, g] : groups_) {
            if (!saved.contains(key)) {
                dirty_groups_.insert(key);
            }
        }
        for (const auto& [key, timer] : saved) {
            if (!groups_.contains(key)) {
                dirty_groups_.insert(key);
            }
        }
    }

    void replace_config(std::shared_ptr<const routing_config> config)
    {
        const time_ms now = clock_.now_ms();
        const auto saved = timers_by_key();
        auto old_groups = std::move(groups_);
        groups_.clear();
        timers_.clear();
        copy_groups_.clear();
        // The old groups point at routes of the old config, so it must live until they are gone.
        const auto previous_config = config_;
        install_config(std::move(config));
        quiet_groups_ = true;

        // Resolves not yet announced and copies stay in their group while its route exists, so
        // a reload neither drops nor repeats them. A copy whose alert now routes to its group
        // gives way to the alert below.
        for (const auto& [key, old] : old_groups) {
            for (std::uint64_t id : old->copies) {
                dirty_copies_.insert({key, id}); // looked up again in take_changes()
            }
            auto route = routes_by_key_.find(old->route->key);
            if (route == routes_by_key_.end()) {
                continue;
            }
            for (const auto& [id, a] : old->alerts) {
                const bool is_copy = old->copies.contains(id);
                if (!is_copy && !a.resolved_at(now)) {
                    continue;
                }
                group& g = ensure_group(key, route->second, old->labels, now);
                if (is_copy) {
                    put_copy(g, a);
                } else {
                    g.alerts.insert_or_assign(id, a);
                }
            }
        }

        for (auto it = alerts_.begin(); it != alerts_.end();) {
            alert_entry& entry = it->second;
            std::vector<std::string> old_keys = std::move(entry.group_keys);
            entry.group_keys.clear();
            if (entry.current.resolved_at(now)) {
                for (const auto& key : old_keys) {
                    if (groups_.contains(key)) {
                        entry.group_keys.push_back(key);
                    }
                }
            } else {
                route_alert(entry, now);
                leave_resolved_copies(entry, old_keys, old_groups, now);
            }
            if (entry.group_keys.empty() && entry.current.resolved_at(now)) {
                clear_orphan(entry);
                inhibitor_->forget(it->first);
                dirty_alerts_.insert(it->first);
                it = alerts_.erase(it);
                continue;
            }
            set_orphan(entry);
            ++it;
        }
        quiet_groups_ = false;
        apply_saved_timers(saved);

        // Storms of receivers that no longer have a storm guard end: their alerts are on their
        // own, and an announced digest resolves at the next flush. The others are checked
        // against their new settings at once.
        for (auto it = storms_.begin(); it != storms_.end();) {
            const receiver_config* receiver = config_->find_receiver(it->first);
            if (receiver == nullptr || !receiver->storm_guard.enabled()) {
                if (receiver != nullptr && it->second.announced_count > 0 && !it->second.members.empty()) {
                    ended_storms_.emplace_back(it->first, std::move(it->second));
                }
                it = storms_.erase(it);
            } else {
                storm_timers_.insert({now, it->first});
                ++it;
            }
        }

        if (!config_->flap_detection.enabled()) {
            // Flap detection is off: flapping alerts go back to being notified on each change,
            // starting with their current state where it differs from what was last sent.
            for (auto& [id, state] : flaps_) {
                if (state.flapping) {
                    auto entry = alerts_.find(id);
                    if (entry != alerts_.end()) {
                        for (const auto& key : entry->second.group_keys) {
                            group& g = *groups_.at(key);
                            if (g.next_flush_at > now) {
                                set_timer(g, now);
                            }
                        }
                    }
                }
            }
            flaps_.clear();
            flap_timers_.clear();
        }
    }

    // After a reload, a firing alert that no longer reaches a group of a surviving route leaves
    // a resolved copy there, as a label change does.
    void leave_resolved_copies(const alert_entry& entry, const std::vector<std::string>& old_keys,
                               const std::unordered_map<std::string, std::unique_ptr<group>>& old_groups, time_ms now)
    {
        for (const auto& key : old_keys) {
            if (std::find(entry.group_keys.begin(), entry.group_keys.end(), key) != entry.group_keys.end()) {
                continue;
            }
            const group& old = *old_groups.at(key);
            auto route = routes_by_key_.find(old.route->key);
            if (route == routes_by_key_.end()) {
                continue;
            }
            alert copy = entry.current;
            copy.ends_at = now;
            copy.updated_at = now;
            group& g = ensure_group(key, route->second, old.labels, now);
            put_copy(g, std::move(copy));
        }
    }

    void restore(const dispatch_state& state)
    {
        const time_ms now = clock_.now_ms();
        quiet_groups_ = true;
        for (const auto& a : state.alerts) {
            auto [it, inserted] = alerts_.insert_or_assign(a.id, alert_entry{a, {}, 0});
            (void)inserted;
            inhibitor_->observe(a);
            route_alert(it->second, now);
            finish_upsert(it, now);
        }
        restore_copies(state, now);
        quiet_groups_ = false;

        std::unordered_map<std::string, saved_timer> saved;
        for (const auto& r : state.groups) {
            saved.insert_or_assign(r.group_key, saved_timer{r.next_flush_at, r.has_flushed});
        }
        apply_saved_timers(saved);

        for (const auto& r : state.nflog) {
            nflog_key key{r.group_key, r.integration_id};
            nflog_.insert_or_assign(key, r);
            nflog_expiry_.insert({r.expires_at, std::move(key)});
        }
    }

    // Puts saved copies back into their groups. A copy is dropped (and deleted from the store)
    // when its group's route is gone from the config or the alert itself now routes there.
    void restore_copies(const dispatch_state& state, time_ms now)
    {
        std::unordered_map<std::string, const group_record*> records;
        for (const auto& r : state.groups) {
            records.insert_or_assign(r.group_key, &r);
        }
        for (const auto& [key, copy] : state.copies) {
            const route_config* route = nullptr;
            auto record = records.find(key);
            if (record != records.end()) {
                auto found = routes_by_key_.find(record->second->route_key);
                route = found == routes_by_key_.end() ? nullptr : found->second;
            }
            auto existing = groups_.find(key);
            const bool alert_there = existing != groups_.end() && existing->second->alerts.contains(copy.id) &&
                                     !existing->second->copies.contains(copy.id);
            if (route == nullptr || alert_there) {
                dirty_copies_.insert({key, copy.id});
                continue;
            }
            group& g = ensure_group(key, route, record->second->group_labels, now);
            g.alerts.insert_or_assign(copy.id, copy);
            g.copies.insert(copy.id);
            copy_groups_[copy.id].insert(key);
        }
    }

    dispatch_changes take_changes()
    {
        dispatch_changes out;
        std::vector<std::uint64_t> alert_ids(dirty_alerts_.begin(), dirty_alerts_.end());
        std::sort(alert_ids.begin(), alert_ids.end());
        for (std::uint64_t id : alert_ids) {
            auto it = alerts_.find(id);
            if (it != alerts_.end()) {
                out.alerts_upserted.push_back(it->second.current);
            } else {
                out.alerts_deleted.push_back(id);
            }
        }

        std::vector<std::string> group_keys(dirty_groups_.begin(), dirty_groups_.end());
        std::sort(group_keys.begin(), group_keys.end());
        for (auto& key : group_keys) {
            auto it = groups_.find(key);
            if (it != groups_.end()) {
                out.groups_upserted.push_back(record_of(*it->second));
            } else {
                out.groups_deleted.push_back(std::move(key));
            }
        }

        for (const auto& key : dirty_nflog_) {
            auto it = nflog_.find(key);
            if (it != nflog_.end()) {
                out.nflog_upserted.push_back(it->second);
            } else {
                out.nflog_deleted.push_back(key);
            }
        }

        for (const auto& [key, id] : dirty_copies_) {
            auto it = groups_.find(key);
            if (it != groups_.end() && it->second->copies.contains(id)) {
                out.copies_upserted.emplace_back(key, it->second->alerts.at(id));
            } else {
                out.copies_deleted.emplace_back(key, id);
            }
        }

        dirty_alerts_.clear();
        dirty_groups_.clear();
        dirty_nflog_.clear();
        dirty_copies_.clear();
        return out;
    }

    static group_record record_of(const group& g)
    {
        return group_record{g.key, g.route->key, g.labels, g.next_flush_at, g.has_flushed};
    }

    std::shared_ptr<const routing_config> config_;
    const clock& clock_;
    std::unordered_map<std::string, const route_config*> routes_by_key_;
    std::unordered_map<std::uint64_t, alert_entry> alerts_;
    std::unordered_map<std::string, std::unique_ptr<group>> groups_;
    std::set<std::pair<time_ms, std::string>> timers_;          // (next_flush_at, group key)
    std::map<nflog_key, nflog_record> nflog_;
    std::set<std::pair<time_ms, nflog_key>> nflog_expiry_;      // (expires_at, key)
    std::set<std::pair<time_ms, std::uint64_t>> orphan_expiry_; // (ends_at, alert id) of alerts in no group
    std::unordered_map<std::uint64_t, std::set<std::string>> copy_groups_; // alert id -> keys of groups with a copy
    // Keys changed since the last take_changes(). They are looked up again when taken, so the
    // last state of each key wins.
    std::unordered_set<std::uint64_t> dirty_alerts_;
    std::unordered_set<std::string> dirty_groups_;
    std::set<nflog_key> dirty_nflog_;
    std::set<std::pair<std::string, std::uint64_t>> dirty_copies_; // (group key, alert id)
    bool quiet_groups_ = false; // set while a reload or restore decides which groups changed
    std::unique_ptr<inhibitor> inhibitor_;
    // NOTE: flap histories live in memory only; after a restart an alert's changes are notified
    // one by one until it flaps again.
    std::unordered_map<std::uint64_t, flap_state> flaps_;
    std::set<std::pair<time_ms, std::uint64_t>> flap_timers_; // (stop_check_at, alert id)
    std::unordered_map<std::string, const std::vector<time_interval_spec>*> intervals_; // by name, into config_
    const silence_store* silences_ = nullptr; // owned by the caller; null mutes nothing
    std::set<std::pair<time_ms, std::string>> escalation_timers_; // (due at, group key); stale ones do nothing
    // NOTE: rate limit windows and storms live in memory only: after a restart a receiver's
    // window starts empty, and the alerts of a storm are notified on their own.
    std::unordered_map<std::string, std::deque<time_ms>> sent_times_; // receiver -> notifications in its window
    std::map<std::string, storm_state> storms_;                      // by receiver name
    std::vector<std::pair<std::string, storm_state>> ended_storms_;   // ended by a reload; resolves due
    std::set<std::pair<time_ms, std::string>> storm_timers_;          // (check at, receiver)
    time_ms retry_at_ = 0; // set when notify_receiver() defers: when the rate limit has room
    // Bumped by every change that can alter which alerts are muted; see unchanged_since_flush().
    std::uint64_t mute_epoch_ = 1;
    std::uint64_t silence_generation_ = 0;
    time_ms last_flush_due_ = 0;
    std::uint64_t notifications_ = 0;
    std::uint64_t escalations_ = 0;
    std::uint64_t rate_limited_ = 0;
    std::uint64_t storms_started_ = 0;
};

dispatcher::dispatcher(std::shared_ptr<const routing_config> config, const clock& clock)
    : impl_(std::make_unique<impl>(std::move(config), clock))
{
}

dispatcher::~dispatcher() = default;

void dispatcher::upsert(alert a)
{
    impl_->upsert(std::move(a));
}

bool dispatcher::annotate(std::uint64_t id, const std::string& name, const std::string& value, bool announce)
{
    const alert* held = find(id);
    if (held == nullptr) {
        return false;
    }
    const time_ms now = impl_->clock_.now_ms();
    alert a = *held;
    std::erase_if(a.annotations, [&name](const auto& kv) { return kv.first == name; });
    if (!value.empty()) {
        a.annotations.emplace_back(name, value);
        std::sort(a.annotations.begin(), a.annotations.end());
    }
    const bool firing = !a.resolved_at(now);
    impl_->upsert(std::move(a));
    if (announce && firing) {
        // Only groups that have notified: one still in group_wait includes the annotation when
        // it first flushes.
        auto it = impl_->alerts_.find(id);
        if (it != impl_->alerts_.end()) {
            for (const auto& key : it->second.group_keys) {
                auto& g = *impl_->groups_.at(key);
                if (g.has_flushed) {
                    g.force_notify = true;
                    g.changed = true;
                    if (g.next_flush_at > now) {
                        impl_->set_timer(g, now);
                    }
                }
            }
        }
    }
    return true;
}

std::vector<notification> dispatcher::flush_due()
{
    return impl_->flush_due();
}

std::optional<time_ms> dispatcher::next_flush_at() const
{
    std::optional<time_ms> next;
    if (!impl_->timers_.empty()) {
        next = impl_->timers_.begin()->first;
    }
    auto earliest = [&next](time_ms at) { next = next ? std::min(*next, at) : at; };
    if (!impl_->flap_timers_.empty()) {
        earliest(impl_->flap_timers_.begin()->first);
    }
    if (!impl_->escalation_timers_.empty()) {
        earliest(impl_->escalation_timers_.begin()->first);
    }
    if (!impl_->storm_timers_.empty()) {
        earliest(impl_->storm_timers_.begin()->first);
    }
    if (!impl_->ended_storms_.empty()) {
        earliest(impl_->clock_.now_ms());
    }
    return next;
}

void dispatcher::replace_config(std::shared_ptr<const routing_config> config)
{
    impl_->replace_config(std::move(config));
}

void dispatcher::restore(const dispatch_state& state)
{
    impl_->restore(state);
}

dispatch_changes dispatcher::take_changes()
{
    return impl_->take_changes();
}

std::vector<alert> dispatcher::alerts() const
{
    std::vector<alert> out;
    out.reserve(impl_->alerts_.size());
    for (const auto& [id, entry] : impl_->alerts_) {
        out.push_back(entry.current);
    }
    std::sort(out.begin(), out.end(), [](const alert& x, const alert& y) { return x.id < y.id; });
    return out;
}

const alert* dispatcher::find(std::uint64_t id) const
{
    auto it = impl_->alerts_.find(id);
    return it == impl_->alerts_.end() ? nullptr : &it->second.current;
}

std::vector<group_info> dispatcher::groups() const
{
    std::vector<group_info> out;
    out.reserve(impl_->groups_.size());
    for (const auto& [key, g] : impl_->groups_) {
        group_info info;
        info.group_key = key;
        info.route_key = g->route->key;
        info.receiver = g->route->receiver;
        info.group_labels = g->labels;
        for (const auto& [id, a] : g->alerts) {
            info.alert_ids.push_back(id);
        }
        info.next_flush_at = g->next_flush_at;
        out.push_back(std::move(info));
    }
    std::sort(out.begin(), out.end(), [](const group_info& x, const group_info& y) { return x.group_key < y.group_key; });
    return out;
}

void dispatcher::set_silences(const silence_store* silences)
{
    impl_->silences_ = silences;
    ++impl_->mute_epoch_;
}

mute_status dispatcher::mute_status_of(std::uint64_t id, const label_set& labels) const
{
    mute_status out;
    const time_ms now = impl_->clock_.now_ms();
    if (impl_->silences_ != nullptr) {
        out.silenced_by = impl_->silences_->muted_by(labels, now);
    }
    out.inhibited_by = impl_->inhibitor_->inhibited_by(id, labels, now);
    out.storms = storms_of(id);
    if (const alert* a = find(id); a != nullptr && a->acknowledged()) {
        out.acknowledged_by = a->acknowledged_by;
        out.ack_comment = a->ack_comment;
        out.acknowledged_at = a->acknowledged_at;
    }
    return out;
}

dispatcher_stats dispatcher::stats() const
{
    dispatcher_stats s;
    s.alerts = impl_->alerts_.size();
    s.groups = impl_->groups_.size();
    s.nflog_entries = impl_->nflog_.size();
    s.notifications = impl_->notifications_;
    s.escalations = impl_->escalations_;
    s.rate_limited = impl_->rate_limited_;
    s.storms_started = impl_->storms_started_;
    for (const auto& [name, storm] : impl_->storms_) {
        s.storms += storm.members.empty() ? 0 : 1;
    }
    return s;
}

ack_outcome dispatcher::acknowledge(std::uint64_t id, std::string by, std::string comment)
{
    return impl_->set_ack(id, std::move(by), std::move(comment), impl_->clock_.now_ms());
}

ack_outcome dispatcher::unacknowledge(std::uint64_t id)
{
    return impl_->set_ack(id, {}, {}, 0);
}

std::vector<storm_info> dispatcher::storms() const
{
    std::vector<storm_info> out;
    const time_ms now = impl_->clock_.now_ms();
    for (const auto& [name, storm] : impl_->storms_) {
        if (storm.members.empty()) {
            continue;
        }
        storm_info info;
        info.receiver = name;
        info.started_at = storm.started_at;
        info.taking = storm.taking;
        for (std::uint64_t id : storm.members) {
            auto it = impl_->alerts_.find(id);
            if (it != impl_->alerts_.end()) {
                ++info.alerts;
                info.firing += it->second.current.resolved_at(now) ? 0 : 1;
            }
        }
        out.push_back(std::move(info));
    }
    return out;
}

std::vector<std::string> dispatcher::storms_of(std::uint64_t id) const
{
    std::vector<std::string> out;
    for (const auto& [name, storm] : impl_->storms_) {
        if (storm.members.contains(id)) {
            out.push_back(name);
        }
    }
    return out;
}

} // namespace tocsin
