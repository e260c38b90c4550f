#pragma once
// Helpers for dispatcher tests: config builders, alerts, a one-line description of each
// notification, and a harness that drives a dispatcher on a manual clock with a stand-in for
// the daemon's store, so tests can stop and restart it.

#include <catch2/catch.hpp>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "rules/clock.hpp"
#include "routing/dispatcher.hpp"

namespace tocsin::testing {


inline constexpr time_ms sec = 1000;
inline constexpr time_ms minute = 60 * sec;
inline constexpr time_ms hour = 60 * minute;

// Go duration notation, as in Alertmanager timelines: 30s, 5m30s, 1h0m10s.
inline std::string format_time(time_ms t)
{
    std::string out;
    if (t >= hour) {
        out += std::to_string(t / hour) + "h";
    }
    if (t >= minute) {
        out += std::to_string(t % hour / minute) + "m";
    }
    out += std::to_string(t % minute / sec) + "s";
    return out;
}

inline route_config make_root(std::vector<std::string> group_by, time_ms wait, time_ms interval, time_ms repeat,
                       std::string receiver = "hook")
{
    route_config r;
    r.key = "{}";
    r.receiver = std::move(receiver);
    r.group_by = std::move(group_by);
    r.group_wait = milliseconds(wait);
    r.group_interval = milliseconds(interval);
    r.repeat_interval = milliseconds(repeat);
    return r;
}

inline label_matcher matcher(std::string_view text)
{
    std::string error;
    auto m = label_matcher::parse(text, error);
    INFO(text << " -> " << error);
    REQUIRE(m.has_value());
    return *m;
}

// A child route inheriting the parent's settings, keyed as the loader keys it.
inline route_config make_child(const route_config& parent, std::string_view match, std::string receiver)
{
    route_config r = parent;
    r.routes.clear();
    r.matchers = {matcher(match)};
    r.key = parent.key + "/{" + std::string(match) + "}";
    r.receiver = std::move(receiver);
    return r;
}

inline receiver_config webhook_receiver(std::string name, bool send_resolved = true)
{
    receiver_config r;
    r.name = std::move(name);
    webhook_config w;
    w.send_resolved = send_resolved;
    r.webhooks.push_back(w);
    return r;
}

inline std::shared_ptr<const routing_config> make_config(route_config root, std::vector<receiver_config> receivers)
{
    auto c = std::make_shared<routing_config>();
    c->root = std::move(root);
    c->receivers = std::move(receivers);
    c->present = true;
    return c;
}

inline alert make_alert(std::uint64_t id, std::string alertname, std::string instance, time_ms starts_at,
                 std::vector<label> extra = {})
{
    alert a;
    a.id = id;
    extra.push_back({"alertname", std::move(alertname)});
    extra.push_back({"instance", std::move(instance)});
    a.labels = label_set(std::move(extra));
    a.starts_at = starts_at;
    a.updated_at = starts_at;
    return a;
}

inline alert resolved(alert a, time_ms at)
{
    a.ends_at = at;
    a.updated_at = at;
    return a;
}

// One line per notification: "@5m30s hook/webhook/0 firing[h1,h2] resolved[h3]", naming alerts
// by their instance label.
inline std::string describe(const notification& n)
{
    std::string out = "@" + format_time(n.created_at) + " " + n.integration.id() + " firing[";
    for (std::size_t i = 0; i < n.alerts.size(); ++i) {
        if (i == n.firing) {
            out += "] resolved[";
        } else if (i != 0) {
            out += ",";
        }
        out += std::string(n.alerts[i].labels.get("instance"));
    }
    if (n.firing == n.alerts.size()) {
        out += "] resolved[";
    }
    return out + "]";
}

// The store of the daemon, reduced to what take_changes() feeds it.
struct durable_store {
    std::map<std::uint64_t, alert> alerts;
    std::map<std::string, group_record> groups;
    std::map<std::pair<std::string, std::string>, nflog_record> nflog;
    std::map<std::pair<std::string, std::uint64_t>, alert> copies;

    void apply(dispatch_changes c)
    {
        for (auto& a : c.alerts_upserted) {
            alerts.insert_or_assign(a.id, std::move(a));
        }
        for (auto id : c.alerts_deleted) {
            alerts.erase(id);
        }
        for (auto& g : c.groups_upserted) {
            groups.insert_or_assign(g.group_key, std::move(g));
        }
        for (const auto& key : c.groups_deleted) {
            groups.erase(key);
        }
        for (auto& n : c.nflog_upserted) {
            nflog.insert_or_assign({n.group_key, n.integration_id}, std::move(n));
        }
        for (const auto& key : c.nflog_deleted) {
            nflog.erase(key);
        }
        for (auto& [key, a] : c.copies_upserted) {
            copies.insert_or_assign({key, a.id}, std::move(a));
        }
        for (const auto& key : c.copies_deleted) {
            copies.erase(key);
        }
    }

    dispatch_state state() const
    {
        dispatch_state s;
        for (const auto& [id, a] : alerts) {
            s.alerts.push_back(a);
        }
        for (const auto& [key, g] : groups) {
            s.groups.push_back(g);
        }
        for (const auto& [key, n] : nflog) {
            s.nflog.push_back(n);
        }
        for (const auto& [key, a] : copies) {
            s.copies.emplace_back(key.first, a);
        }
        return s;
    }
};

// Drives a dispatcher on a manual clock the way the daemon does: flush at each next_flush_at.
struct harness {
    explicit harness(std::shared_ptr<const routing_config> c) : config(std::move(c))
    {
        d = std::make_unique<dispatcher>(config, clock);
    }

    // Flushes every due group up to and including `t`, then sets the clock to `t`.
    void run_until(time_ms t)
    {
        while (auto next = d->next_flush_at()) {
            if (*next > t) {
                break;
            }
            clock.set_ms(std::max(*next, clock.now_ms()));
            flush();
        }
        clock.set_ms(std::max(t, clock.now_ms()));
    }

    void flush()
    {
        auto out = d->flush_due();
        for (auto& n : out) {
            log.push_back(describe(n));
            sent.push_back(std::move(n));
        }
        if (commit_every_flush || !out.empty()) {
            store.apply(d->take_changes());
        }
    }

    void post(alert a) { d->upsert(std::move(a)); }

    // Stops the process: with `clean`, the last changes reach the store first.
    void stop(bool clean)
    {
        if (clean) {
            store.apply(d->take_changes());
        }
        d.reset();
    }

    void start(time_ms at)
    {
        clock.set_ms(at);
        d = std::make_unique<dispatcher>(config, clock);
        d->restore(store.state());
    }

    manual_clock clock{0};
    std::shared_ptr<const routing_config> config;
    std::unique_ptr<dispatcher> d;
    std::vector<std::string> log;
    std::vector<notification> sent;
    durable_store store;
    bool commit_every_flush = true;
};

using lines = std::vector<std::string>;

} // namespace tocsin::testing
