#include <catch2/catch.hpp>

#include <map>
#include <set>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "rules/clock.hpp"
#include "routing/dispatcher.hpp"
#include "routing/silences.hpp"

#include "dispatch_harness.hpp"

using namespace tocsin;
using namespace tocsin::testing;

TEST_CASE("dispatcher repeats only on group_interval ticks")
{
    harness h(make_config(make_root({"alertname"}, 30 * sec, 5 * minute, 7 * minute), {webhook_receiver("hook")}));
    h.post(make_alert(1, "X", "h1", 0));
    h.run_until(1 * minute);
    h.post(make_alert(2, "X", "h2", 1 * minute));
    h.run_until(16 * minute);
    h.post(resolved(make_alert(1, "X", "h1", 0), 16 * minute));
    h.post(resolved(make_alert(2, "X", "h2", 1 * minute), 16 * minute));
    h.run_until(2 * hour);

    CHECK(h.log == lines{
                       "@30s hook/webhook/0 firing[h1] resolved[]",
                       "@5m30s hook/webhook/0 firing[h1,h2] resolved[]",
                       "@15m30s hook/webhook/0 firing[h1,h2] resolved[]",
                       "@20m30s hook/webhook/0 firing[] resolved[h1,h2]",
                   });
    CHECK(h.d->groups().empty());
    CHECK(h.d->alerts().empty());
    CHECK_FALSE(h.d->next_flush_at().has_value());
}

TEST_CASE("dispatcher announces a partial resolve at the next tick")
{
    harness h(make_config(make_root({"alertname"}, 1 * minute, 2 * minute, 6 * hour), {webhook_receiver("hook")}));
    for (std::uint64_t i = 1; i <= 3; ++i) {
        h.post(make_alert(i, "HighLatency", "h" + std::to_string(i), 0));
    }
    h.run_until(4 * minute);
    h.post(resolved(make_alert(2, "HighLatency", "h2", 0), 4 * minute));
    h.run_until(10 * minute);
    h.post(resolved(make_alert(1, "HighLatency", "h1", 0), 10 * minute));
    h.post(resolved(make_alert(3, "HighLatency", "h3", 0), 10 * minute));
    h.run_until(1 * hour);

    CHECK(h.log == lines{
                       "@1m0s hook/webhook/0 firing[h1,h2,h3] resolved[]",
                       "@5m0s hook/webhook/0 firing[h1,h3] resolved[h2]",
                       "@11m0s hook/webhook/0 firing[] resolved[h1,h3]",
                   });
    REQUIRE(h.sent.size() == 3);
    CHECK(h.sent[1].firing == 2);
    CHECK(h.sent[2].all_resolved());
}

TEST_CASE("dispatcher without send_resolved sends no resolves")
{
    harness h(make_config(make_root({"alertname"}, 1 * minute, 2 * minute, 6 * hour),
                          {webhook_receiver("hook", false)}));
    for (std::uint64_t i = 1; i <= 3; ++i) {
        h.post(make_alert(i, "HighLatency", "h" + std::to_string(i), 0));
    }
    h.run_until(4 * minute);
    h.post(resolved(make_alert(2, "HighLatency", "h2", 0), 4 * minute));
    h.run_until(10 * minute);
    h.post(resolved(make_alert(1, "HighLatency", "h1", 0), 10 * minute));
    h.post(resolved(make_alert(3, "HighLatency", "h3", 0), 10 * minute));
    h.run_until(1 * hour);

    CHECK(h.log == lines{"@1m0s hook/webhook/0 firing[h1,h2,h3] resolved[]"});
    // The log still records that everything resolved, so a new alert counts as new.
    REQUIRE(h.store.nflog.size() == 1);
    const auto& entry = h.store.nflog.begin()->second;
    CHECK(entry.firing.empty());
    CHECK(entry.resolved.size() == 2);
    CHECK(entry.sent_at == 11 * minute);
    CHECK(h.d->groups().empty());
}

TEST_CASE("dispatcher reload with an identical config sends nothing")
{
    auto config = make_config(make_root({"alertname"}, 10 * sec, 1 * hour, 4 * hour), {webhook_receiver("hook")});
    harness h(config);
    h.post(make_alert(1, "Disk", "h1", 0));
    h.run_until(20 * sec);
    h.post(make_alert(2, "Disk", "h2", 20 * sec));
    h.run_until(40 * sec);
    h.d->replace_config(make_config(config->root, config->receivers));
    CHECK(h.d->flush_due().empty());
    CHECK(h.d->next_flush_at() == 1 * hour + 10 * sec);
    h.run_until(5 * hour);

    CHECK(h.log == lines{
                       "@10s hook/webhook/0 firing[h1] resolved[]",
                       "@1h0m10s hook/webhook/0 firing[h1,h2] resolved[]",
                   });
}

TEST_CASE("dispatcher reload frees the old config safely")
{
    // Only the dispatcher keeps the first config, so the reload frees it; under AddressSanitizer
    // any later use of its routes fails this test.
    harness h(make_config(make_root({"alertname"}, 10 * sec, 1 * hour, 4 * hour), {webhook_receiver("hook")}));
    h.post(make_alert(1, "Disk", "h1", 0));
    h.run_until(20 * sec);
    h.d->replace_config(make_config(make_root({"alertname"}, 10 * sec, 1 * hour, 4 * hour), {webhook_receiver("hook")}));
    h.d->replace_config(make_config(make_root({"alertname"}, 10 * sec, 1 * hour, 4 * hour), {webhook_receiver("hook")}));
    h.run_until(2 * hour);
    CHECK(h.log == lines{"@10s hook/webhook/0 firing[h1] resolved[]"});
}

TEST_CASE("dispatcher reload with an unrelated route change sends nothing")
{
    auto config = make_config(make_root({"alertname"}, 10 * sec, 1 * hour, 4 * hour), {webhook_receiver("hook")});
    harness h(config);
    h.post(make_alert(1, "Disk", "h1", 0));
    h.run_until(20 * sec);
    h.post(make_alert(2, "Disk", "h2", 20 * sec));
    h.run_until(40 * sec);

    route_config root = config->root;
    root.routes.push_back(make_child(root, R"(team="db")", "db"));
    h.d->replace_config(make_config(root, {webhook_receiver("hook"), webhook_receiver("db")}));
    CHECK(h.d->flush_due().empty());
    CHECK(h.d->take_changes().groups_upserted.empty());
    h.run_until(5 * hour);

    CHECK(h.log == lines{
                       "@10s hook/webhook/0 firing[h1] resolved[]",
                       "@1h0m10s hook/webhook/0 firing[h1,h2] resolved[]",
                   });
}

TEST_CASE("dispatcher reload never sends part of a group")
{
    auto config = make_config(make_root({"alertname"}, 10 * sec, 1 * hour, 4 * hour), {webhook_receiver("hook")});
    harness h(config);
    for (std::uint64_t i = 1; i <= 20; ++i) {
        h.post(make_alert(i, "Disk", "h" + std::to_string(i), 0));
    }
    h.run_until(60 * sec);
    h.d->replace_config(make_config(config->root, config->receivers));
    CHECK(h.d->flush_due().empty());
    h.run_until(4 * hour + 10 * sec);

    REQUIRE(h.sent.size() == 2);
    CHECK(format_time(h.sent[0].created_at) == "10s");
    CHECK(format_time(h.sent[1].created_at) == "4h0m10s");
    for (const auto& n : h.sent) {
        CHECK(n.alerts.size() == 20);
        CHECK(n.firing == 20);
    }
}

TEST_CASE("dispatcher restart after a clean stop sends no repeat")
{
    harness h(make_config(make_root({"alertname"}, 30 * sec, 5 * minute, 4 * hour), {webhook_receiver("hook")}));
    h.post(make_alert(1, "Down", "h1", 0));
    h.run_until(10 * minute);
    h.stop(true);
    h.start(10 * minute + 20 * sec);
    h.post(make_alert(1, "Down", "h1", 0));
    h.run_until(5 * hour);

    CHECK(h.log == lines{
                       "@30s hook/webhook/0 firing[h1] resolved[]",
                       "@4h0m30s hook/webhook/0 firing[h1] resolved[]",
                   });
}

TEST_CASE("dispatcher restart after a kill sends no repeat")
{
    harness h(make_config(make_root({"alertname"}, 30 * sec, 5 * minute, 4 * hour), {webhook_receiver("hook")}));
    // Only flushes that produced notifications reach the store, as when the outbox commit is
    // the last write before the kill.
    h.commit_every_flush = false;
    h.post(make_alert(1, "Down", "h1", 0));
    h.run_until(10 * minute);
    h.stop(false);
    REQUIRE(h.store.groups.size() == 1);
    CHECK(h.store.groups.begin()->second.next_flush_at == 5 * minute + 30 * sec);

    h.start(10 * minute + 20 * sec);
    h.post(make_alert(1, "Down", "h1", 0));
    // The saved timer lies in the past: the group flushes at once and finds nothing to send.
    CHECK(h.d->next_flush_at() == 5 * minute + 30 * sec);
    CHECK(h.d->flush_due().empty());
    CHECK(h.d->next_flush_at() == 10 * minute + 30 * sec);
    h.run_until(5 * hour);

    CHECK(h.log == lines{
                       "@30s hook/webhook/0 firing[h1] resolved[]",
                       "@4h0m30s hook/webhook/0 firing[h1] resolved[]",
                   });
}

TEST_CASE("dispatcher restart with a new alert sends one notification")
{
    harness h(make_config(make_root({"alertname"}, 30 * sec, 5 * minute, 4 * hour), {webhook_receiver("hook")}));
    h.post(make_alert(1, "Down", "h1", 0));
    h.run_until(10 * minute);
    h.stop(true);
    h.start(10 * minute + 20 * sec);
    h.post(make_alert(1, "Down", "h1", 0));
    h.post(make_alert(2, "Down", "h2", 10 * minute + 10 * sec));
    h.run_until(4 * hour);

    CHECK(h.log == lines{
                       "@30s hook/webhook/0 firing[h1] resolved[]",
                       "@10m30s hook/webhook/0 firing[h1,h2] resolved[]",
                   });
}

TEST_CASE("dispatcher restart delivers a resolve from the downtime once")
{
    harness h(make_config(make_root({"alertname"}, 30 * sec, 5 * minute, 4 * hour), {webhook_receiver("hook")}));
    h.post(make_alert(1, "Down", "h1", 0));
    h.run_until(10 * minute);
    h.stop(true);
    h.start(10 * minute + 20 * sec);
    h.post(resolved(make_alert(1, "Down", "h1", 0), 10 * minute + 5 * sec));
    h.run_until(11 * minute);
    // The sender repeats the resolved alert, which was announced already.
    h.post(resolved(make_alert(1, "Down", "h1", 0), 10 * minute + 5 * sec));
    h.run_until(5 * hour);

    CHECK(h.log == lines{
                       "@30s hook/webhook/0 firing[h1] resolved[]",
                       "@10m30s hook/webhook/0 firing[] resolved[h1]",
                   });
    CHECK(h.d->groups().empty());
    CHECK(h.d->alerts().empty());
    CHECK(h.store.alerts.empty());
    CHECK(h.store.groups.empty());
}

TEST_CASE("dispatcher keeps groups of different instances apart")
{
    route_config root = make_root({"alertname", "instance"}, 30 * sec, 5 * minute, 4 * hour, "pd");
    receiver_config pd;
    pd.name = "pd";
    pd.pagerduty.emplace_back();
    harness h(make_config(root, {pd}));
    h.post(make_alert(1, "DiskFull", "h1", 0, {{"severity", "warning"}}));
    h.post(make_alert(2, "DiskFull", "h2", 0, {{"severity", "warning"}}));
    h.run_until(2 * minute);
    h.post(make_alert(1, "DiskFull", "h1", 0, {{"severity", "critical"}}));
    h.run_until(10 * minute);
    h.post(resolved(make_alert(1, "DiskFull", "h1", 0, {{"severity", "critical"}}), 10 * minute));
    h.run_until(15 * minute);

    CHECK(h.log == lines{
                       "@30s pd/pagerduty/0 firing[h1] resolved[]",
                       "@30s pd/pagerduty/0 firing[h2] resolved[]",
                       // The escalation goes out at once; the group's ticks then count from it.
                       "@2m0s pd/pagerduty/0 firing[h1] resolved[]",
                       "@12m0s pd/pagerduty/0 firing[] resolved[h1]",
                   });
    REQUIRE(h.sent.size() == 4);
    const std::string k1 = R"({}:{alertname="DiskFull", instance="h1"})";
    const std::string k2 = R"({}:{alertname="DiskFull", instance="h2"})";
    CHECK(h.sent[0].group_key == k1);
    CHECK(h.sent[1].group_key == k2);
    CHECK(h.sent[2].group_key == k1);
    CHECK(h.sent[3].group_key == k1);
    CHECK(h.sent[0].group_labels == label_set{{"alertname", "DiskFull"}, {"instance", "h1"}});
    CHECK(h.sent[0].alerts[0].labels.get("severity") == "warning");
    CHECK(h.sent[2].alerts[0].labels.get("severity") == "critical");
    CHECK(h.sent[2].route_key == "{}");
    REQUIRE(h.d->groups().size() == 1);
    CHECK(h.d->groups()[0].group_key == k2);
}

TEST_CASE("dispatcher continue route feeds two groups")
{
    route_config root = make_root({"alertname"}, 30 * sec, 5 * minute, 4 * hour, "default");
    route_config db = make_child(root, R"(team="db")", "db");
    db.continue_matching = true;
    db.dedup = dedup_scope::alert;
    root.routes.push_back(db);
    root.routes.push_back(make_child(root, R"(severity="page")", "pager"));
    harness h(make_config(root, {webhook_receiver("default"), webhook_receiver("db"), webhook_receiver("pager")}));
    h.post(make_alert(1, "Lag", "h1", 0, {{"team", "db"}, {"severity", "page"}}));
    h.post(make_alert(2, "Lag", "h2", 0, {{"team", "web"}}));
    h.run_until(1 * minute);

    // Groups due at the same time flush in group key order.
    CHECK(h.log == lines{
                       "@30s pager/webhook/0 firing[h1] resolved[]",
                       "@30s db/webhook/0 firing[h1] resolved[]",
                       "@30s default/webhook/0 firing[h2] resolved[]",
                   });
    REQUIRE(h.sent.size() == 3);
    CHECK(h.sent[0].group_key == R"({}/{severity="page"}:{alertname="Lag"})");
    CHECK(h.sent[0].dedup == dedup_scope::group);
    CHECK(h.sent[1].group_key == R"({}/{team="db"}:{alertname="Lag"})");
    CHECK(h.sent[1].dedup == dedup_scope::alert);
    CHECK(h.sent[2].group_key == R"({}:{alertname="Lag"})");
    CHECK(h.d->stats().groups == 3);
    CHECK(h.d->stats().alerts == 2);
}

TEST_CASE("dispatcher group_by_all groups by every label")
{
    route_config root = make_root({}, 30 * sec, 5 * minute, 4 * hour);
    root.group_by_all = true;
    harness h(make_config(root, {webhook_receiver("hook")}));
    h.post(make_alert(1, "X", "h1", 0));
    h.post(make_alert(2, "X", "h2", 0));
    h.run_until(1 * minute);

    REQUIRE(h.sent.size() == 2);
    CHECK(h.sent[0].group_labels == h.sent[0].alerts[0].labels);
    CHECK(h.sent[0].group_key == R"({}:{alertname="X", instance="h1"})");
    CHECK(h.sent[1].group_key == R"({}:{alertname="X", instance="h2"})");
}

TEST_CASE("dispatcher group labels leave out absent labels")
{
    harness h(make_config(make_root({"alertname", "cluster"}, 30 * sec, 5 * minute, 4 * hour),
                          {webhook_receiver("hook")}));
    h.post(make_alert(1, "X", "h1", 0));
    h.run_until(1 * minute);
    REQUIRE(h.sent.size() == 1);
    CHECK(h.sent[0].group_labels == label_set{{"alertname", "X"}});
    CHECK(h.sent[0].group_key == R"({}:{alertname="X"})");
}

TEST_CASE("dispatcher label change moves an alert between groups")
{
    harness h(make_config(make_root({"team"}, 30 * sec, 5 * minute, 4 * hour), {webhook_receiver("hook")}));
    h.post(make_alert(1, "X", "h1", 0, {{"team", "a"}}));
    h.run_until(1 * minute);
    h.post(make_alert(1, "X", "h1", 0, {{"team", "b"}}));
    auto groups = h.d->groups();
    REQUIRE(groups.size() == 2);
    CHECK(groups[0].group_key == R"({}:{team="a"})");
    CHECK(groups[1].group_key == R"({}:{team="b"})");
    // The new group flushes at once: its alert started more than group_wait ago.
    CHECK(groups[1].next_flush_at == 1 * minute);
    h.run_until(10 * minute);

    CHECK(h.log == lines{
                       "@30s hook/webhook/0 firing[h1] resolved[]",
                       "@1m0s hook/webhook/0 firing[h1] resolved[]",
                       "@5m30s hook/webhook/0 firing[] resolved[h1]",
                   });
    REQUIRE(h.sent.size() == 3);
    CHECK(h.sent[1].group_key == R"({}:{team="b"})");
    CHECK(h.sent[2].group_key == R"({}:{team="a"})");
    CHECK(h.sent[2].alerts[0].ends_at == 1 * minute);
    CHECK(h.sent[2].alerts[0].labels.get("team") == "a");
    groups = h.d->groups();
    REQUIRE(groups.size() == 1);
    CHECK(groups[0].group_key == R"({}:{team="b"})");
    REQUIRE(h.d->alerts().size() == 1);
    CHECK(h.d->alerts()[0].labels.get("team") == "b");
}

TEST_CASE("dispatcher new alert joining a group waits for the tick")
{
    harness h(make_config(make_root({"alertname"}, 30 * sec, 5 * minute, 4 * hour), {webhook_receiver("hook")}));
    h.post(make_alert(1, "X", "h1", 0));
    h.run_until(1 * minute);
    // Started long ago, but the group has flushed already, so group_interval applies.
    h.post(make_alert(2, "X", "h2", -1 * hour));
    CHECK(h.d->next_flush_at() == 5 * minute + 30 * sec);
}

TEST_CASE("dispatcher late flush reschedules from now")
{
    harness h(make_config(make_root({"alertname"}, 30 * sec, 5 * minute, 4 * hour), {webhook_receiver("hook")}));
    h.post(make_alert(1, "X", "h1", 0));
    h.clock.set_ms(20 * minute);
    REQUIRE(h.d->flush_due().size() == 1);
    CHECK(h.d->next_flush_at() == 25 * minute);
    h.clock.set_ms(26 * minute);
    CHECK(h.d->flush_due().empty());
    // Counted from the scheduled time, not from the late flush.
    CHECK(h.d->next_flush_at() == 30 * minute);
}

TEST_CASE("dispatcher flushes due groups in timer order")
{
    harness h(make_config(make_root({"instance"}, 30 * sec, 5 * minute, 4 * hour), {webhook_receiver("hook")}));
    h.post(make_alert(1, "X", "h1", 0));
    h.clock.set_ms(10 * sec);
    h.post(make_alert(2, "X", "h0", 10 * sec));
    h.clock.set_ms(1 * minute);
    const auto out = h.d->flush_due();
    REQUIRE(out.size() == 2);
    CHECK(out[0].alerts[0].labels.get("instance") == "h1");
    CHECK(out[1].alerts[0].labels.get("instance") == "h0");
}

TEST_CASE("dispatcher notifies each integration with its own log")
{
    receiver_config team;
    team.name = "team";
    team.webhooks.emplace_back();
    team.slack.emplace_back(); // send_resolved defaults to false for Slack
    team.console.emplace_back();
    harness h(make_config(make_root({"alertname"}, 30 * sec, 5 * minute, 4 * hour, "team"), {team}));
    h.post(make_alert(1, "X", "h1", 0));
    h.post(make_alert(2, "X", "h2", 0));
    h.run_until(1 * minute);
    h.post(resolved(make_alert(2, "X", "h2", 0), 1 * minute));
    h.run_until(6 * minute);

    CHECK(h.log == lines{
                       "@30s team/webhook/0 firing[h1,h2] resolved[]",
                       "@30s team/slack/0 firing[h1,h2] resolved[]",
                       "@30s team/console/0 firing[h1,h2] resolved[]",
                       "@5m30s team/webhook/0 firing[h1] resolved[h2]",
                       "@5m30s team/console/0 firing[h1] resolved[h2]",
                   });
    CHECK(h.store.nflog.size() == 3);
    CHECK(h.store.nflog.at({R"({}:{alertname="X"})", "team/slack/0"}).sent_at == 30 * sec);
    CHECK(h.store.nflog.at({R"({}:{alertname="X"})", "team/webhook/0"}).sent_at == 5 * minute + 30 * sec);
}

TEST_CASE("dispatcher treats an end time in the future as firing")
{
    harness h(make_config(make_root({"alertname"}, 30 * sec, 5 * minute, 4 * hour), {webhook_receiver("hook")}));
    alert a = make_alert(1, "X", "h1", 0);
    a.source = "api";
    a.ends_at = 3 * minute;
    h.post(a);
    h.run_until(10 * minute);
    CHECK(h.log == lines{
                       "@30s hook/webhook/0 firing[h1] resolved[]",
                       "@5m30s hook/webhook/0 firing[] resolved[h1]",
                   });
}

TEST_CASE("dispatcher alert that only resolved in between is not announced")
{
    harness h(make_config(make_root({"alertname"}, 30 * sec, 5 * minute, 4 * hour), {webhook_receiver("hook")}));
    h.post(make_alert(1, "X", "h1", 0));
    h.post(resolved(make_alert(1, "X", "h1", 0), 10 * sec));
    h.clock.set_ms(10 * sec);
    h.post(resolved(make_alert(1, "X", "h1", 0), 10 * sec));
    h.run_until(10 * minute);
    CHECK(h.log.empty());
    CHECK(h.d->groups().empty());
    CHECK(h.d->alerts().empty());
}

TEST_CASE("dispatcher reload drops groups of removed routes")
{
    route_config root = make_root({"alertname"}, 30 * sec, 5 * minute, 4 * hour, "default");
    root.routes.push_back(make_child(root, R"(team="db")", "db"));
    harness h(make_config(root, {webhook_receiver("default"), webhook_receiver("db")}));
    h.post(make_alert(1, "X", "h1", 0, {{"team", "db"}}));
    h.run_until(1 * minute);
    h.d->take_changes();

    route_config plain = make_root({"alertname"}, 30 * sec, 5 * minute, 4 * hour, "default");
    h.d->replace_config(make_config(plain, {webhook_receiver("default")}));
    auto changes = h.d->take_changes();
    CHECK(changes.groups_deleted == std::vector<std::string>{R"({}/{team="db"}:{alertname="X"})"});
    REQUIRE(changes.groups_upserted.size() == 1);
    CHECK(changes.groups_upserted[0].group_key == R"({}:{alertname="X"})");
    // A new group: the alert started more than group_wait ago, so it flushes at once.
    CHECK(changes.groups_upserted[0].next_flush_at == 1 * minute);
    h.run_until(2 * minute);
    CHECK(h.log == lines{
                       "@30s db/webhook/0 firing[h1] resolved[]",
                       "@1m0s default/webhook/0 firing[h1] resolved[]",
                   });
}

TEST_CASE("dispatcher reload keeps a pending resolve")
{
    auto config = make_config(make_root({"alertname"}, 30 * sec, 5 * minute, 4 * hour), {webhook_receiver("hook")});
    harness h(config);
    h.post(make_alert(1, "X", "h1", 0));
    h.post(make_alert(2, "X", "h2", 0));
    h.run_until(1 * minute);
    h.post(resolved(make_alert(2, "X", "h2", 0), 1 * minute));
    h.d->replace_config(make_config(config->root, config->receivers));
    CHECK(h.d->flush_due().empty());
    h.run_until(6 * minute);
    CHECK(h.log == lines{
                       "@30s hook/webhook/0 firing[h1,h2] resolved[]",
                       "@5m30s hook/webhook/0 firing[h1] resolved[h2]",
                   });
}

TEST_CASE("dispatcher take_changes reports the last state once")
{
    harness h(make_config(make_root({"alertname"}, 30 * sec, 5 * minute, 4 * hour), {webhook_receiver("hook")}));
    h.post(make_alert(1, "X", "h1", 0));
    h.post(make_alert(1, "X", "h1", 0, {{"severity", "page"}}));
    h.post(make_alert(2, "X", "h2", 0));
    auto changes = h.d->take_changes();
    REQUIRE(changes.alerts_upserted.size() == 2);
    CHECK(changes.alerts_upserted[0].labels.get("severity") == "page");
    REQUIRE(changes.groups_upserted.size() == 1);
    CHECK(changes.groups_upserted[0].next_flush_at == 30 * sec);
    CHECK_FALSE(changes.groups_upserted[0].has_flushed);
    CHECK(h.d->take_changes().empty());

    h.clock.set_ms(30 * sec);
    REQUIRE(h.d->flush_due().size() == 1);
    changes = h.d->take_changes();
    CHECK(changes.alerts_upserted.empty());
    REQUIRE(changes.groups_upserted.size() == 1);
    CHECK(changes.groups_upserted[0].next_flush_at == 5 * minute + 30 * sec);
    CHECK(changes.groups_upserted[0].has_flushed);
    REQUIRE(changes.nflog_upserted.size() == 1);
    CHECK(changes.nflog_upserted[0].integration_id == "hook/webhook/0");
    CHECK(changes.nflog_upserted[0].firing.size() == 2);
    CHECK(changes.nflog_upserted[0].expires_at == 30 * sec + 4 * hour + 5 * 24 * hour);

    h.post(resolved(make_alert(1, "X", "h1", 0), 1 * minute));
    h.post(resolved(make_alert(2, "X", "h2", 0), 1 * minute));
    h.clock.set_ms(5 * minute + 30 * sec);
    REQUIRE(h.d->flush_due().size() == 1);
    changes = h.d->take_changes();
    CHECK(changes.alerts_upserted.empty());
    CHECK(changes.alerts_deleted == std::vector<std::uint64_t>{1, 2});
    CHECK(changes.groups_upserted.empty());
    CHECK(changes.groups_deleted == std::vector<std::string>{R"({}:{alertname="X"})"});
    CHECK(changes.nflog_upserted.size() == 1);
}

TEST_CASE("dispatcher drops expired log entries")
{
    harness h(make_config(make_root({"alertname"}, 30 * sec, 5 * minute, 4 * hour), {webhook_receiver("hook")}));
    h.post(make_alert(1, "X", "h1", 0));
    h.run_until(1 * minute);
    h.post(resolved(make_alert(1, "X", "h1", 0), 1 * minute));
    h.run_until(6 * minute);
    REQUIRE(h.log.size() == 2);
    h.d->take_changes();
    CHECK(h.d->stats().nflog_entries == 1);

    const time_ms expiry = 5 * minute + 30 * sec + 4 * hour + 5 * 24 * hour;
    h.clock.set_ms(expiry - 1);
    h.d->flush_due();
    CHECK(h.d->stats().nflog_entries == 1);
    h.clock.set_ms(expiry);
    h.d->flush_due();
    CHECK(h.d->stats().nflog_entries == 0);
    auto changes = h.d->take_changes();
    REQUIRE(changes.nflog_deleted.size() == 1);
    CHECK(changes.nflog_deleted[0].second == "hook/webhook/0");
}

TEST_CASE("dispatcher without a route keeps alerts ungrouped")
{
    auto config = std::make_shared<routing_config>();
    config->root.key = "{}";
    harness h(config);
    h.post(make_alert(1, "X", "h1", 0));
    alert timed = make_alert(2, "X", "h2", 0);
    timed.ends_at = 5 * minute;
    h.post(timed);
    CHECK(h.d->groups().empty());
    CHECK_FALSE(h.d->next_flush_at().has_value());
    CHECK(h.d->alerts().size() == 2);
    h.clock.set_ms(5 * minute);
    CHECK(h.d->flush_due().empty());
    REQUIRE(h.d->alerts().size() == 1);
    CHECK(h.d->alerts()[0].id == 1);
    h.post(resolved(make_alert(1, "X", "h1", 0), 5 * minute));
    CHECK(h.d->alerts().empty());
}

TEST_CASE("dispatcher restore applies saved timers and log")
{
    harness h(make_config(make_root({"alertname"}, 30 * sec, 5 * minute, 4 * hour), {webhook_receiver("hook")}));
    h.post(make_alert(1, "X", "h1", 0));
    h.run_until(1 * minute);
    h.stop(true);
    h.start(2 * minute);
    CHECK(h.d->take_changes().empty());
    auto groups = h.d->groups();
    REQUIRE(groups.size() == 1);
    CHECK(groups[0].next_flush_at == 5 * minute + 30 * sec);
    CHECK(h.d->stats().nflog_entries == 1);
    CHECK(h.d->stats().alerts == 1);
}

TEST_CASE("dispatcher handles 100k alerts per change")
{
    constexpr std::uint64_t count = 100'000;
    constexpr std::uint64_t groups = 100;
    harness h(make_config(make_root({"alertname"}, 30 * sec, 5 * minute, 4 * hour), {webhook_receiver("hook")}));
    for (std::uint64_t i = 0; i < count; ++i) {
        h.post(make_alert(i + 1, "A" + std::to_string(i % groups), "h" + std::to_string(i), 0));
    }
    auto changes = h.d->take_changes();
    CHECK(changes.alerts_upserted.size() == count);
    CHECK(changes.groups_upserted.size() == groups);

    h.clock.set_ms(30 * sec);
    auto out = h.d->flush_due();
    REQUIRE(out.size() == groups);
    std::size_t alerts_sent = 0;
    for (const auto& n : out) {
        alerts_sent += n.firing;
    }
    CHECK(alerts_sent == count);
    changes = h.d->take_changes();
    CHECK(changes.alerts_upserted.empty());
    CHECK(changes.groups_upserted.size() == groups);
    CHECK(changes.nflog_upserted.size() == groups);

    // One change touches one group and reports one alert.
    h.clock.set_ms(1 * minute);
    h.post(resolved(make_alert(1, "A0", "h0", 0), 1 * minute));
    changes = h.d->take_changes();
    CHECK(changes.alerts_upserted.size() == 1);
    CHECK(changes.groups_upserted.empty());
    h.clock.set_ms(5 * minute + 30 * sec);
    out = h.d->flush_due();
    REQUIRE(out.size() == 1);
    CHECK(out[0].firing == count / groups - 1);
    CHECK(out[0].alerts.size() == count / groups);
    changes = h.d->take_changes();
    CHECK(changes.alerts_deleted == std::vector<std::uint64_t>{1});
    CHECK(h.d->stats().alerts == count - 1);
    CHECK(h.d->stats().notifications == groups + 1);
}

TEST_CASE("dispatcher reload that redirects an alert resolves it")
{
    route_config root = make_root({"alertname"}, 30 * sec, 5 * minute, 4 * hour, "default");
    root.routes.push_back(make_child(root, R"(team="db")", "db"));
    harness h(make_config(root, {webhook_receiver("default"), webhook_receiver("db"), webhook_receiver("prod")}));
    h.post(make_alert(1, "X", "h1", 0, {{"team", "db"}, {"env", "prod"}}));
    h.run_until(1 * minute);

    // A new sibling in front takes the alert; the db route keeps its key.
    route_config redirected = root;
    redirected.routes.insert(redirected.routes.begin(), make_child(root, R"(env="prod")", "prod"));
    h.d->replace_config(make_config(redirected, {webhook_receiver("default"), webhook_receiver("db"),
                                                 webhook_receiver("prod")}));
    h.run_until(10 * minute);

    CHECK(h.log == lines{
                       "@30s db/webhook/0 firing[h1] resolved[]",
                       "@1m0s prod/webhook/0 firing[h1] resolved[]",
                       "@5m30s db/webhook/0 firing[] resolved[h1]",
                   });
    REQUIRE(h.d->groups().size() == 1);
    CHECK(h.d->groups()[0].receiver == "prod");
}

namespace {

// Slack for everything, PagerDuty for the severities that `page_match` selects, both sending
// resolves, grouped by alertname.
std::shared_ptr<const routing_config> severity_config(std::string_view page_match = R"(severity="critical")")
{
    route_config root = make_root({"alertname"}, 30 * sec, 5 * minute, 4 * hour, "slack");
    root.routes.push_back(make_child(root, page_match, "pd"));
    receiver_config slack;
    slack.name = "slack";
    slack.slack.emplace_back();
    slack.slack.back().send_resolved = true;
    receiver_config pd;
    pd.name = "pd";
    pd.pagerduty.emplace_back();
    return make_config(root, {slack, pd});
}

// Alert 1 as the rule engine reports it at one severity tier: the id stays, labels change.
alert disk_alert(std::string severity, std::string summary)
{
    alert a = make_alert(1, "DiskFull", "h1", 0, {{"severity", std::move(severity)}});
    a.annotations = {{"summary", std::move(summary)}};
    return a;
}

const std::string slack_group = R"({}:{alertname="DiskFull"})";
const std::string pd_group = R"({}/{severity="critical"}:{alertname="DiskFull"})";

std::string summary_of(const alert& a)
{
    for (const auto& [name, value] : a.annotations) {
        if (name == "summary") {
            return value;
        }
    }
    return "";
}

} // namespace

TEST_CASE("dispatcher escalation keeps the lower group firing")
{
    harness h(severity_config());
    h.post(disk_alert("warning", "disk 85%"));
    h.run_until(2 * minute);
    h.post(disk_alert("critical", "disk 92%"));
    h.run_until(9 * minute);

    // Slack heard nothing of the move; its group keeps the warning as a firing copy.
    CHECK(h.log == lines{
                       "@30s slack/slack/0 firing[h1] resolved[]",
                       "@2m0s pd/pagerduty/0 firing[h1] resolved[]",
                   });
    REQUIRE(h.store.copies.size() == 1);
    const alert& saved = h.store.copies.begin()->second;
    CHECK(h.store.copies.begin()->first.first == slack_group);
    CHECK(saved.labels.get("severity") == "warning");
    CHECK(saved.ends_at == 0);
    CHECK(h.d->groups().size() == 2);

    alert recovered = resolved(disk_alert("critical", "disk 40%"), 9 * minute);
    h.post(recovered);
    h.run_until(1 * hour);

    CHECK(h.log == lines{
                       "@30s slack/slack/0 firing[h1] resolved[]",
                       "@2m0s pd/pagerduty/0 firing[h1] resolved[]",
                       "@10m30s slack/slack/0 firing[] resolved[h1]",
                       "@12m0s pd/pagerduty/0 firing[] resolved[h1]",
                   });
    REQUIRE(h.sent.size() == 4);
    const alert& slack_resolve = h.sent[2].alerts.at(0);
    CHECK(h.sent[2].group_key == slack_group);
    CHECK(slack_resolve.labels.get("severity") == "warning");
    CHECK(summary_of(slack_resolve) == "disk 40%");
    CHECK(slack_resolve.ends_at == 9 * minute);
    CHECK(h.sent[3].group_key == pd_group);
    CHECK(summary_of(h.sent[3].alerts.at(0)) == "disk 40%");
    CHECK(h.d->groups().empty());
    CHECK(h.d->alerts().empty());
    CHECK(h.store.copies.empty());
    CHECK(h.store.groups.empty());
    CHECK(h.store.alerts.empty());
}

TEST_CASE("dispatcher de-escalation resolves only the higher group")
{
    harness h(severity_config());
    h.post(disk_alert("warning", "disk 85%"));
    h.run_until(2 * minute);
    h.post(disk_alert("critical", "disk 92%"));
    h.run_until(4 * minute);
    h.post(disk_alert("warning", "disk 88%"));
    auto changes = h.d->take_changes();
    // The alert replaced its copy in the Slack group, and the PagerDuty group keeps a resolved one.
    REQUIRE(changes.copies_deleted.size() == 1);
    CHECK(changes.copies_deleted[0].first == slack_group);
    REQUIRE(changes.copies_upserted.size() == 1);
    CHECK(changes.copies_upserted[0].first == pd_group);
    CHECK(changes.copies_upserted[0].second.ends_at == 4 * minute);
    h.store.apply(std::move(changes));
    h.run_until(20 * minute);

    CHECK(h.log == lines{
                       "@30s slack/slack/0 firing[h1] resolved[]",
                       "@2m0s pd/pagerduty/0 firing[h1] resolved[]",
                       "@7m0s pd/pagerduty/0 firing[] resolved[h1]",
                   });
    REQUIRE(h.sent.size() == 3);
    CHECK(h.sent[2].alerts.at(0).labels.get("severity") == "critical");
    auto groups = h.d->groups();
    REQUIRE(groups.size() == 1);
    CHECK(groups[0].group_key == slack_group);
    REQUIRE(h.d->alerts().size() == 1);
    CHECK(h.d->alerts()[0].labels.get("severity") == "warning");
    CHECK(h.store.copies.empty());

    h.post(resolved(disk_alert("warning", "disk 50%"), 20 * minute));
    h.run_until(1 * hour);
    REQUIRE(h.log.size() == 4);
    CHECK(h.log[3] == "@20m30s slack/slack/0 firing[] resolved[h1]");
    CHECK(h.d->groups().empty());
}

TEST_CASE("dispatcher falling below a copy's tier resolves the copy")
{
    route_config root = make_root({"alertname"}, 30 * sec, 5 * minute, 4 * hour, "slack");
    root.routes.push_back(make_child(root, R"(severity=~"critical|page")", "pd"));
    root.routes.push_back(make_child(root, R"(severity="info")", "log"));
    receiver_config slack;
    slack.name = "slack";
    slack.slack.emplace_back();
    slack.slack.back().send_resolved = true;
    receiver_config pd;
    pd.name = "pd";
    pd.pagerduty.emplace_back();
    harness h(make_config(root, {slack, pd, webhook_receiver("log")}));

    h.post(disk_alert("warning", "disk 85%"));
    h.run_until(2 * minute);
    h.post(disk_alert("critical", "disk 92%"));
    h.run_until(3 * minute);
    // critical and page share the PagerDuty group: an escalation within it, announced at once.
    h.post(disk_alert("page", "disk 99%"));
    h.run_until(4 * minute);
    // Down to info, below warning: the Slack group's warning copy resolves too.
    h.post(disk_alert("info", "disk 60%"));
    h.run_until(30 * minute);

    CHECK(h.log == lines{
                       "@30s slack/slack/0 firing[h1] resolved[]",
                       "@2m0s pd/pagerduty/0 firing[h1] resolved[]",
                       "@3m0s pd/pagerduty/0 firing[h1] resolved[]",
                       "@4m0s log/webhook/0 firing[h1] resolved[]",
                       "@5m30s slack/slack/0 firing[] resolved[h1]",
                       "@8m0s pd/pagerduty/0 firing[] resolved[h1]",
                   });
    REQUIRE(h.sent.size() == 6);
    CHECK(h.sent[2].alerts.at(0).labels.get("severity") == "page");
    CHECK(h.sent[4].alerts.at(0).labels.get("severity") == "warning");
    CHECK(h.sent[4].alerts.at(0).ends_at == 4 * minute);
    CHECK(h.sent[5].alerts.at(0).labels.get("severity") == "page");
    auto groups = h.d->groups();
    REQUIRE(groups.size() == 1);
    CHECK(groups[0].receiver == "log");
    CHECK(h.store.copies.empty());
}

TEST_CASE("dispatcher move without a severity rise resolves")
{
    SECTION("another label")
    {
        harness h(severity_config());
        h.post(disk_alert("warning", "disk 85%"));
        h.run_until(2 * minute);
        alert moved = disk_alert("warning", "disk 85%");
        moved.labels = moved.labels.with("alertname", "DiskAlmostFull");
        h.post(moved);
        h.run_until(10 * minute);
        CHECK(h.log == lines{
                           "@30s slack/slack/0 firing[h1] resolved[]",
                           "@2m0s slack/slack/0 firing[h1] resolved[]",
                           "@5m30s slack/slack/0 firing[] resolved[h1]",
                       });
        REQUIRE(h.sent.size() == 3);
        CHECK(h.sent[2].group_key == slack_group);
        CHECK(h.sent[2].alerts.at(0).ends_at == 2 * minute);
    }
    SECTION("a severity outside the known order")
    {
        harness h(severity_config(R"(severity=~"critical|urgent")"));
        h.post(disk_alert("warning", "disk 85%"));
        h.run_until(2 * minute);
        h.post(disk_alert("urgent", "disk 92%"));
        h.run_until(10 * minute);
        CHECK(h.log == lines{
                           "@30s slack/slack/0 firing[h1] resolved[]",
                           "@2m0s pd/pagerduty/0 firing[h1] resolved[]",
                           "@5m30s slack/slack/0 firing[] resolved[h1]",
                       });
    }
    SECTION("error counts between warning and critical")
    {
        harness h(severity_config(R"(severity=~"error|critical")"));
        h.post(disk_alert("critical", "disk 95%"));
        h.run_until(2 * minute);
        h.post(disk_alert("warning", "disk 85%"));
        h.run_until(3 * minute);
        h.post(disk_alert("error", "disk 90%"));
        h.run_until(10 * minute);
        // warning to error is a rise: the Slack group keeps firing and sends nothing, and the
        // PagerDuty group announces the escalation at once.
        CHECK(h.log == lines{
                           "@30s pd/pagerduty/0 firing[h1] resolved[]",
                           "@2m0s slack/slack/0 firing[h1] resolved[]",
                           "@3m0s pd/pagerduty/0 firing[h1] resolved[]",
                       });
        CHECK(h.store.copies.size() == 1);
    }
}

TEST_CASE("dispatcher restart keeps a copy until the resolve")
{
    harness h(severity_config());
    // Only flushes that produced notifications reach the store, as when the outbox commit is
    // the last write before the kill.
    h.commit_every_flush = false;
    h.post(disk_alert("warning", "disk 85%"));
    h.run_until(2 * minute);
    h.post(disk_alert("critical", "disk 92%"));
    h.run_until(3 * minute);
    h.stop(false);
    REQUIRE(h.store.copies.size() == 1);

    h.start(8 * minute);
    CHECK(h.d->take_changes().empty());
    auto groups = h.d->groups();
    REQUIRE(groups.size() == 2);
    CHECK(groups[1].group_key == slack_group);
    CHECK(groups[1].alert_ids == std::vector<std::uint64_t>{1});
    h.post(disk_alert("critical", "disk 93%")); // the engine's restored alert, unchanged tier
    h.run_until(9 * minute);
    h.post(resolved(disk_alert("critical", "disk 40%"), 9 * minute));
    h.run_until(1 * hour);

    CHECK(h.log == lines{
                       "@30s slack/slack/0 firing[h1] resolved[]",
                       "@2m0s pd/pagerduty/0 firing[h1] resolved[]",
                       "@10m30s slack/slack/0 firing[] resolved[h1]",
                       "@12m0s pd/pagerduty/0 firing[] resolved[h1]",
                   });
    REQUIRE(h.sent.size() == 4);
    CHECK(summary_of(h.sent[2].alerts.at(0)) == "disk 40%");
    CHECK(h.d->groups().empty());
    CHECK(h.store.copies.empty());
}

TEST_CASE("dispatcher restore drops a copy whose route is gone")
{
    harness h(severity_config());
    h.post(disk_alert("warning", "disk 85%"));
    h.run_until(1 * minute);
    h.post(disk_alert("critical", "disk 92%"));
    h.run_until(2 * minute);
    h.stop(true);
    REQUIRE(h.store.copies.size() == 1);

    // The new config sends everything to PagerDuty, so the Slack group's route no longer exists.
    route_config root = make_root({"alertname"}, 30 * sec, 5 * minute, 4 * hour, "pd");
    receiver_config pd;
    pd.name = "pd";
    pd.pagerduty.emplace_back();
    root.key = "{}/other";
    h.config = make_config(root, {pd});
    h.start(3 * minute);
    auto changes = h.d->take_changes();
    CHECK(changes.copies_upserted.empty());
    REQUIRE(changes.copies_deleted.size() == 1);
    CHECK(changes.copies_deleted[0] == std::pair<std::string, std::uint64_t>{slack_group, 1});
    for (const auto& g : h.d->groups()) {
        CHECK(g.group_key != slack_group);
    }
}

TEST_CASE("dispatcher reload keeps a firing copy")
{
    harness h(severity_config());
    h.post(disk_alert("warning", "disk 85%"));
    h.run_until(2 * minute);
    h.post(disk_alert("critical", "disk 92%"));
    h.run_until(3 * minute);
    h.d->replace_config(severity_config());
    h.run_until(9 * minute);
    h.post(resolved(disk_alert("critical", "disk 40%"), 9 * minute));
    h.run_until(1 * hour);

    CHECK(h.log == lines{
                       "@30s slack/slack/0 firing[h1] resolved[]",
                       "@2m0s pd/pagerduty/0 firing[h1] resolved[]",
                       "@10m30s slack/slack/0 firing[] resolved[h1]",
                       "@12m0s pd/pagerduty/0 firing[] resolved[h1]",
                   });
}

namespace {

inhibit_rule_config inhibit_rule(std::vector<std::string_view> source, std::vector<std::string_view> target,
                                 std::vector<std::string> equal)
{
    inhibit_rule_config r;
    for (auto text : source) {
        r.source_matchers.push_back(matcher(text));
    }
    for (auto text : target) {
        r.target_matchers.push_back(matcher(text));
    }
    r.equal = std::move(equal);
    return r;
}

std::shared_ptr<const routing_config> config_with_inhibit(std::vector<inhibit_rule_config> rules)
{
    auto c = std::make_shared<routing_config>();
    c->root = make_root({"alertname", "instance"}, 30 * sec, 5 * minute, 4 * hour);
    c->receivers = {webhook_receiver("hook")};
    c->present = true;
    c->inhibit_rules = std::move(rules);
    return c;
}

// The alertnames of the alerts notified, in notification order.
std::set<std::string> notified_names(const harness& h)
{
    std::set<std::string> out;
    for (const auto& n : h.sent) {
        for (std::size_t i = 0; i < n.firing; ++i) {
            out.insert(std::string(n.alerts[i].labels.get("alertname")) + "/" +
                       std::string(n.alerts[i].labels.get("cluster")) + "/" +
                       std::string(n.alerts[i].labels.get("shard")));
        }
    }
    return out;
}

silence_store make_silences()
{
    return silence_store(silence_limits{}, [n = 0]() mutable { return "s" + std::to_string(++n); });
}

silence silence_of(std::string_view text, time_ms starts_at, time_ms ends_at)
{
    silence s;
    s.matchers = {matcher(text)};
    s.starts_at = starts_at;
    s.ends_at = ends_at;
    s.created_by = "alice";
    s.comment = "maintenance";
    return s;
}

} // namespace

TEST_CASE("inhibition: an alert never inhibits itself")
{
    // source alertname=~"Prefix_.+", target alertname="Prefix_Failsafe", equal cluster.
    const auto rule = inhibit_rule({R"(alertname=~"Prefix_.+")"}, {R"(alertname="Prefix_Failsafe")"}, {"cluster"});
    struct scenario {
        const char* name;
        std::vector<std::vector<label>> alerts;
        std::set<std::string> notified;
    };
    const std::vector<scenario> scenarios = {
        {"failsafe alone", {{{"alertname", "Prefix_Failsafe"}, {"cluster", "c1"}}}, {"Prefix_Failsafe/c1/"}},
        {"disk full in the same cluster",
         {{{"alertname", "Prefix_Failsafe"}, {"cluster", "c1"}}, {{"alertname", "Prefix_DiskFull"}, {"cluster", "c1"}}},
         {"Prefix_DiskFull/c1/"}},
        {"disk full in another cluster",
         {{{"alertname", "Prefix_Failsafe"}, {"cluster", "c1"}}, {{"alertname", "Prefix_DiskFull"}, {"cluster", "c2"}}},
         {"Prefix_DiskFull/c2/", "Prefix_Failsafe/c1/"}},
        {"two failsafes",
         {{{"alertname", "Prefix_Failsafe"}, {"cluster", "c1"}, {"shard", "a"}},
          {{"alertname", "Prefix_Failsafe"}, {"cluster", "c1"}, {"shard", "b"}}},
         {"Prefix_Failsafe/c1/a", "Prefix_Failsafe/c1/b"}},
    };
    for (const auto& sc : scenarios) {
        INFO(sc.name);
        harness h(config_with_inhibit({rule}));
        std::uint64_t id = 0;
        for (const auto& l : sc.alerts) {
            alert a;
            a.id = ++id;
            a.labels = label_set(l);
            h.post(a);
        }
        h.run_until(10 * minute);
        CHECK(notified_names(h) == sc.notified);
    }
}

TEST_CASE("inhibition: the target is muted while the source fires and notified after")
{
    const auto rule = inhibit_rule({"severity=critical"}, {"severity=warning"}, {"cluster"});
    harness h(config_with_inhibit({rule}));
    h.post(make_alert(1, "DiskFull", "h1", 0, {{"severity", "critical"}, {"cluster", "c1"}}));
    h.post(make_alert(2, "DiskFilling", "h1", 0, {{"severity", "warning"}, {"cluster", "c1"}}));
    // A missing equal label on both sides counts as equal, as in Alertmanager.
    h.post(make_alert(3, "NoCluster", "h2", 0, {{"severity", "warning"}}));
    h.post(make_alert(4, "NoClusterSource", "h2", 0, {{"severity", "critical"}}));
    h.run_until(1 * minute);
    CHECK(h.log == lines{"@30s hook/webhook/0 firing[h1] resolved[]", "@30s hook/webhook/0 firing[h2] resolved[]"});
    CHECK(notified_names(h) == std::set<std::string>{"DiskFull/c1/", "NoClusterSource//"});

    const mute_status status = h.d->mute_status_of(2, h.d->alerts().at(1).labels);
    CHECK(status.inhibited_by == std::vector<std::uint64_t>{1});
    CHECK(status.silenced_by.empty());

    // The source resolves: the target is notified at its group's next tick.
    h.post(resolved(make_alert(1, "DiskFull", "h1", 0, {{"severity", "critical"}, {"cluster", "c1"}}), 2 * minute));
    h.run_until(6 * minute);
    CHECK(notified_names(h).contains("DiskFilling/c1/"));
    CHECK_FALSE(h.d->mute_status_of(2, h.d->alerts().at(0).labels).muted());
}

TEST_CASE("silences: a silenced alert is not notified until the silence ends")
{
    harness h(make_config(make_root({"alertname"}, 30 * sec, 5 * minute, 4 * hour), {webhook_receiver("hook")}));
    silence_store silences = make_silences();
    h.d->set_silences(&silences);
    REQUIRE(silences.set(silence_of("instance=h1", 0, 20 * minute), 0).ok());

    h.post(make_alert(1, "X", "h1", 0));
    h.post(make_alert(2, "X", "h2", 0));
    h.run_until(19 * minute);
    CHECK(h.log == lines{"@30s hook/webhook/0 firing[h2] resolved[]"});
    CHECK(h.d->mute_status_of(1, h.d->alerts().at(0).labels).silenced_by == std::vector<std::string>{"s1"});

    // After the silence ends, the next group tick announces h1.
    h.run_until(26 * minute);
    CHECK(h.log == lines{"@30s hook/webhook/0 firing[h2] resolved[]", "@20m30s hook/webhook/0 firing[h1,h2] resolved[]"});
}

TEST_CASE("silences: an alert silenced after its page still sends its resolve")
{
    harness h(make_config(make_root({"alertname"}, 30 * sec, 5 * minute, 4 * hour), {webhook_receiver("hook")}));
    silence_store silences = make_silences();
    h.d->set_silences(&silences);
    h.post(make_alert(1, "X", "h1", 0));
    h.run_until(1 * minute);
    REQUIRE(silences.set(silence_of("alertname=X", 1 * minute, 2 * hour), 1 * minute).ok());

    // Silenced while firing: the reminders stop, nothing else is sent.
    h.run_until(20 * minute);
    CHECK(h.log == lines{"@30s hook/webhook/0 firing[h1] resolved[]"});

    // It resolves under the silence: the receiver heard it firing, so it hears the resolve.
    h.post(resolved(make_alert(1, "X", "h1", 0), 21 * minute));
    h.run_until(30 * minute);
    CHECK(h.log == lines{"@30s hook/webhook/0 firing[h1] resolved[]", "@25m30s hook/webhook/0 firing[] resolved[h1]"});
}

TEST_CASE("silences: an alert that fires and resolves under a silence sends nothing")
{
    harness h(make_config(make_root({"alertname"}, 30 * sec, 5 * minute, 4 * hour), {webhook_receiver("hook")}));
    silence_store silences = make_silences();
    h.d->set_silences(&silences);
    REQUIRE(silences.set(silence_of("alertname=X", 0, 2 * hour), 0).ok());
    h.post(make_alert(1, "X", "h1", 0));
    h.run_until(3 * minute);
    h.post(resolved(make_alert(1, "X", "h1", 0), 3 * minute));
    h.run_until(30 * minute);
    CHECK(h.log.empty());
    CHECK(h.d->groups().empty());
}

TEST_CASE("tier inhibition: the lower tier's copy sends no reminders while the higher tier fires")
{
    // Slack takes warnings with a 10m repeat; critical goes to PagerDuty.
    route_config root = make_root({"alertname"}, 30 * sec, 1 * minute, 10 * minute, "slack");
    root.routes.push_back(make_child(root, R"(severity="critical")", "pd"));
    receiver_config slack = webhook_receiver("slack");
    receiver_config pd = webhook_receiver("pd");
    harness h(make_config(root, {slack, pd}));

    h.post(make_alert(1, "DiskFull", "h1", 0, {{"severity", "warning"}}));
    h.run_until(2 * minute);
    h.post(make_alert(1, "DiskFull", "h1", 0, {{"severity", "critical"}}));
    h.run_until(25 * minute);
    // The Slack group keeps its warning copy firing, but without reminders; PagerDuty repeats.
    CHECK(h.log == lines{
                       "@30s slack/webhook/0 firing[h1] resolved[]",
                       "@2m0s pd/webhook/0 firing[h1] resolved[]",
                       "@12m0s pd/webhook/0 firing[h1] resolved[]",
                       "@22m0s pd/webhook/0 firing[h1] resolved[]",
                   });

    // Back down to warning: the Slack group hears the warning again at its next tick, since
    // the copy gives way to the alert.
    h.post(make_alert(1, "DiskFull", "h1", 0, {{"severity", "warning"}}));
    h.run_until(27 * minute);
    REQUIRE(h.log.size() >= 6);
    CHECK(h.log[4] == "@25m30s slack/webhook/0 firing[h1] resolved[]");
    CHECK(h.log[5] == "@26m0s pd/webhook/0 firing[] resolved[h1]");
}

TEST_CASE("tier inhibition: an escalation in the same group goes out at once")
{
    harness h(make_config(make_root({"alertname"}, 30 * sec, 5 * minute, 4 * hour), {webhook_receiver("hook")}));
    h.post(make_alert(1, "DiskFull", "h1", 0, {{"severity", "warning"}}));
    h.run_until(1 * minute);
    h.post(make_alert(1, "DiskFull", "h1", 0, {{"severity", "critical"}}));
    h.run_until(1 * minute);
    // A fall in severity waits for the tick.
    h.post(make_alert(1, "DiskFull", "h1", 0, {{"severity", "warning"}}));
    h.run_until(7 * minute);
    CHECK(h.log == lines{
                       "@30s hook/webhook/0 firing[h1] resolved[]",
                       "@1m0s hook/webhook/0 firing[h1] resolved[]",
                       "@6m0s hook/webhook/0 firing[h1] resolved[]",
                   });
    REQUIRE(h.sent.size() == 3);
    CHECK(h.sent[1].alerts[0].labels.get("severity") == "critical");
    CHECK(h.sent[2].alerts[0].labels.get("severity") == "warning");
}

namespace {

std::shared_ptr<const routing_config> flapping_config(bool enabled)
{
    auto c = std::make_shared<routing_config>();
    c->root = make_root({"alertname"}, 0, 1 * sec, 4 * hour);
    c->receivers = {webhook_receiver("hook")};
    c->present = true;
    if (enabled) {
        c->flap_detection = flap_config{milliseconds(10 * minute), 5, 2};
    }
    return c;
}

// The check is OK at even minutes and CRIT at odd ones up to 11m, CRIT until 29m, OK from 30m.
bool crit_at(int m)
{
    return m <= 11 ? m % 2 == 1 : m < 30;
}

std::string flap_note(const notification& n)
{
    for (const auto& [name, value] : n.alerts.at(0).annotations) {
        if (name == "flapping") {
            return value.substr(0, value.find(':'));
        }
    }
    return "";
}

} // namespace

TEST_CASE("flap detection: one notice while flapping, and the settled state at the end")
{
    harness h(flapping_config(true));
    // From 1m: at 0m the check is OK and there is no alert yet.
    for (int m = 1; m <= 40; ++m) {
        alert a = make_alert(1, "Check", "h1", 0);
        if (!crit_at(m)) {
            a.ends_at = m * minute;
        }
        h.clock.set_ms(m * minute);
        h.post(a);
        h.run_until(m * minute);
    }
    CHECK(h.log == lines{
                       "@1m0s hook/webhook/0 firing[h1] resolved[]",
                       "@2m0s hook/webhook/0 firing[] resolved[h1]",
                       "@3m0s hook/webhook/0 firing[h1] resolved[]",
                       "@4m0s hook/webhook/0 firing[] resolved[h1]",
                       "@5m0s hook/webhook/0 firing[h1] resolved[]",
                       "@19m0s hook/webhook/0 firing[h1] resolved[]",
                       "@30m0s hook/webhook/0 firing[] resolved[h1]",
                   });
    REQUIRE(h.sent.size() == 7);
    CHECK(flap_note(h.sent[4]) == "started");
    CHECK(flap_note(h.sent[5]) == "stopped");
    CHECK(flap_note(h.sent[6]).empty());
}

TEST_CASE("flap detection: turning it off by reload notifies every change again")
{
    harness h(flapping_config(true));
    for (int m = 1; m <= 12; ++m) {
        if (m == 8) {
            h.config = flapping_config(false);
            h.d->replace_config(h.config);
        }
        alert a = make_alert(1, "Check", "h1", 0);
        if (!crit_at(m)) {
            a.ends_at = m * minute;
        }
        h.clock.set_ms(m * minute);
        h.post(a);
        h.run_until(m * minute);
    }
    CHECK(h.log == lines{
                       "@1m0s hook/webhook/0 firing[h1] resolved[]",
                       "@2m0s hook/webhook/0 firing[] resolved[h1]",
                       "@3m0s hook/webhook/0 firing[h1] resolved[]",
                       "@4m0s hook/webhook/0 firing[] resolved[h1]",
                       "@5m0s hook/webhook/0 firing[h1] resolved[]",
                       "@8m0s hook/webhook/0 firing[] resolved[h1]",
                       "@9m0s hook/webhook/0 firing[h1] resolved[]",
                       "@10m0s hook/webhook/0 firing[] resolved[h1]",
                       "@11m0s hook/webhook/0 firing[h1] resolved[]",
                   });
}

TEST_CASE("flap detection: an alert that changes less often is notified as usual")
{
    harness h(flapping_config(true));
    for (int m = 5; m <= 60; m += 5) {
        alert a = make_alert(1, "Check", "h1", 0);
        if (m % 10 == 0) {
            a.ends_at = m * minute;
        }
        h.clock.set_ms(m * minute);
        h.post(a);
        h.run_until(m * minute);
    }
    // One change every 5 minutes: at most 2 within 10 minutes, never 5.
    CHECK(h.log.size() == 12);
    CHECK(h.log.front() == "@5m0s hook/webhook/0 firing[h1] resolved[]");
    CHECK(h.log.back() == "@1h0m0s hook/webhook/0 firing[] resolved[h1]");
    for (const auto& n : h.sent) {
        CHECK(flap_note(n).empty());
    }
}

TEST_CASE("dispatcher announces an alert that ends by its endsAt at the next tick")
{
    harness h(make_config(make_root({"alertname"}, 30 * sec, 1 * minute, 4 * hour), {webhook_receiver("hook")}));
    alert a = make_alert(1, "Down", "h1", 0);
    a.ends_at = 10 * minute + 5 * sec; // a sender's resolve timeout
    h.post(a);
    h.post(make_alert(2, "Down", "h2", 0));
    // Several quiet ticks pass with nothing to send before the end arrives by itself.
    h.run_until(30 * minute);
    CHECK(h.log == lines{
                       "@30s hook/webhook/0 firing[h1,h2] resolved[]",
                       "@10m30s hook/webhook/0 firing[h2] resolved[h1]",
                   });
}

TEST_CASE("dispatcher notifies an alert whose silence ends between ticks")
{
    harness h(make_config(make_root({"alertname"}, 30 * sec, 1 * minute, 4 * hour), {webhook_receiver("hook")}));
    silence_store silences = make_silences();
    h.d->set_silences(&silences);
    h.post(make_alert(1, "Down", "h1", 0));
    h.run_until(3 * minute);
    REQUIRE(silences.set(silence_of("instance=h1", 3 * minute, 7 * minute + 10 * sec), 3 * minute).ok());
    h.post(make_alert(2, "Down", "h2", 4 * minute));
    h.run_until(20 * minute);
    CHECK(h.log == lines{
                       "@30s hook/webhook/0 firing[h1] resolved[]",
                       "@3m30s hook/webhook/0 firing[h2] resolved[]",
                       "@7m30s hook/webhook/0 firing[h1,h2] resolved[]",
                   });
}
