// Escalation with acknowledgements, per-receiver rate limits and the storm guard, on a manual clock.

#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

#include "dispatch_harness.hpp"
#include "routing/silences.hpp"

using namespace tocsin;
using namespace tocsin::testing;

namespace {

// hook gets every alert; lead gets the unacknowledged ones after 5m, boss after 15m.
std::shared_ptr<const routing_config> escalating_config()
{
    route_config root = make_root({"alertname"}, 30 * sec, 5 * minute, 4 * hour);
    root.escalate = {{milliseconds(5 * minute), "lead"}, {milliseconds(15 * minute), "boss"}};
    return make_config(root, {webhook_receiver("hook"), webhook_receiver("lead"), webhook_receiver("boss")});
}

std::string annotation(const alert& a, std::string_view name)
{
    for (const auto& [key, value] : a.annotations) {
        if (key == name) {
            return value;
        }
    }
    return "";
}

} // namespace

TEST_CASE("escalation sends a firing alert to each step's receiver when its delay passes")
{
    harness h(escalating_config());
    h.post(make_alert(1, "ModelAucLow", "h1", 0));
    h.run_until(20 * minute);
    h.post(resolved(make_alert(1, "ModelAucLow", "h1", 0), 20 * minute));
    h.run_until(2 * hour);

    // The steps go out at 5m and 15m exactly, not at the group's next tick (5m30s, 15m30s).
    CHECK(h.log == lines{
                       "@30s hook/webhook/0 firing[h1] resolved[]",
                       "@5m0s lead/webhook/0 firing[h1] resolved[]",
                       "@15m0s boss/webhook/0 firing[h1] resolved[]",
                       "@20m30s hook/webhook/0 firing[] resolved[h1]",
                       "@20m30s lead/webhook/0 firing[] resolved[h1]",
                       "@20m30s boss/webhook/0 firing[] resolved[h1]",
                   });
    REQUIRE(h.sent.size() == 6);
    CHECK(h.sent[1].escalation_level == 1);
    CHECK(h.sent[2].escalation_level == 2);
    CHECK(h.sent[0].escalation_level == 0);
    CHECK(h.sent[1].group_key != h.sent[0].group_key);
    CHECK(annotation(h.sent[1].alerts.at(0), "escalation") ==
          "step 1: firing for 5m or more without an acknowledgement");
    CHECK(annotation(h.sent[0].alerts.at(0), "escalation").empty());
    CHECK(h.d->stats().escalations == 4);
}

TEST_CASE("escalation on a quiet tick")
{
    route_config root = make_root({"alertname"}, 30 * sec, 1 * minute, 4 * hour);
    root.escalate = {{milliseconds(2 * minute + 30 * sec), "lead"}};
    harness h(make_config(root, {webhook_receiver("hook"), webhook_receiver("lead")}));
    h.post(make_alert(1, "ModelAucLow", "h1", 0));
    h.run_until(5 * minute);
    CHECK(h.log == lines{
                       "@30s hook/webhook/0 firing[h1] resolved[]",
                       "@2m30s lead/webhook/0 firing[h1] resolved[]",
                   });
}

TEST_CASE("escalation skips an alert that resolves before its delay")
{
    harness h(escalating_config());
    h.post(make_alert(1, "ModelAucLow", "h1", 0));
    h.run_until(4 * minute);
    h.post(resolved(make_alert(1, "ModelAucLow", "h1", 0), 4 * minute));
    h.run_until(2 * hour);
    CHECK(h.log == lines{
                       "@30s hook/webhook/0 firing[h1] resolved[]",
                       "@5m30s hook/webhook/0 firing[] resolved[h1]",
                   });
}

TEST_CASE("an acknowledged alert is not escalated until the acknowledgement is withdrawn")
{
    harness h(escalating_config());
    h.post(make_alert(1, "ModelAucLow", "h1", 0));
    h.post(make_alert(2, "ModelAucLow", "h2", 1 * minute));
    h.run_until(3 * minute);
    REQUIRE(h.d->acknowledge(1, "alice", "looking at the feature store") == ack_outcome::done);
    // The sender repeats the alert without the acknowledgement; it holds for the episode.
    h.post(make_alert(1, "ModelAucLow", "h1", 0));
    h.run_until(8 * minute);
    REQUIRE(h.d->find(1) != nullptr);
    CHECK(h.d->find(1)->acknowledged_by == "alice");
    CHECK(h.d->find(1)->ack_comment == "looking at the feature store");
    CHECK(h.d->find(1)->acknowledged_at == 3 * minute);
    REQUIRE(h.d->unacknowledge(1) == ack_outcome::done);
    h.run_until(9 * minute);

    CHECK(h.log == lines{
                       "@30s hook/webhook/0 firing[h1,h2] resolved[]",
                       "@6m0s lead/webhook/0 firing[h2] resolved[]",
                       "@8m0s lead/webhook/0 firing[h1,h2] resolved[]",
                   });
    CHECK_FALSE(h.d->find(1)->acknowledged());
}

TEST_CASE("an acknowledgement ends with its firing episode and survives a restart")
{
    harness h(escalating_config());
    h.post(make_alert(1, "ModelAucLow", "h1", 0));
    h.run_until(1 * minute);
    CHECK(h.d->acknowledge(1, "alice", "") == ack_outcome::done);
    CHECK(h.d->acknowledge(99, "alice", "") == ack_outcome::not_found);
    h.stop(true);
    h.start(2 * minute);
    REQUIRE(h.d->find(1) != nullptr);
    CHECK(h.d->find(1)->acknowledged_by == "alice");
    h.run_until(10 * minute);
    CHECK(h.log == lines{"@30s hook/webhook/0 firing[h1] resolved[]"});

    h.post(resolved(make_alert(1, "ModelAucLow", "h1", 0), 10 * minute));
    CHECK(h.d->acknowledge(1, "bob", "") == ack_outcome::resolved);
    h.run_until(12 * minute);
    // A new episode starts unacknowledged and escalates 5m after its start.
    h.post(make_alert(1, "ModelAucLow", "h1", 12 * minute));
    h.run_until(18 * minute);
    CHECK_FALSE(h.d->find(1)->acknowledged());
    CHECK(h.log == lines{
                       "@30s hook/webhook/0 firing[h1] resolved[]",
                       "@10m30s hook/webhook/0 firing[] resolved[h1]",
                       "@12m30s hook/webhook/0 firing[h1] resolved[]",
                       "@17m0s lead/webhook/0 firing[h1] resolved[]",
                   });
}

TEST_CASE("a silenced alert is not escalated")
{
    harness h(escalating_config());
    silence_store silences(silence_limits{}, [] { return std::string("s1"); });
    h.d->set_silences(&silences);
    silence s;
    s.matchers = {matcher("instance=\"h1\"")};
    s.starts_at = 0;
    s.ends_at = 1 * hour;
    s.created_by = "alice";
    s.comment = "maintenance";
    REQUIRE(silences.set(s, 0).ok());
    h.post(make_alert(1, "ModelAucLow", "h1", 0));
    h.post(make_alert(2, "ModelAucLow", "h2", 0));
    h.run_until(10 * minute);
    CHECK(h.log == lines{
                       "@30s hook/webhook/0 firing[h2] resolved[]",
                       "@5m0s lead/webhook/0 firing[h2] resolved[]",
                   });
}

TEST_CASE("a receiver's rate limit defers notifications until the window has room")
{
    receiver_config hook = webhook_receiver("hook");
    hook.rate_limit = {2, milliseconds(1 * hour)};
    harness h(make_config(make_root({"alertname"}, 30 * sec, 5 * minute, 4 * hour), {hook}));
    h.post(make_alert(1, "A", "a1", 0));
    h.post(make_alert(2, "B", "b1", 0));
    h.post(make_alert(3, "C", "c1", 0));
    h.post(make_alert(4, "D", "d1", 0));
    h.run_until(20 * minute);
    // C's only alert resolves while it waits: the receiver still hears of it, as a resolve.
    h.post(resolved(make_alert(3, "C", "c1", 0), 20 * minute));
    h.post(make_alert(5, "D", "d2", 30 * minute));
    h.run_until(2 * hour);

    CHECK(h.log == lines{
                       "@30s hook/webhook/0 firing[a1] resolved[]",
                       "@30s hook/webhook/0 firing[b1] resolved[]",
                       "@1h0m30s hook/webhook/0 firing[] resolved[c1]",
                       "@1h0m30s hook/webhook/0 firing[d1,d2] resolved[]",
                   });
    CHECK(h.d->stats().rate_limited > 0);
    CHECK(h.d->groups().size() == 3); // A, B and D fire; C left after its resolve went out
}

TEST_CASE("a rate limit that is never reached changes nothing")
{
    receiver_config hook = webhook_receiver("hook");
    hook.rate_limit = {10, milliseconds(1 * hour)};
    harness h(make_config(make_root({"alertname"}, 30 * sec, 5 * minute, 4 * hour), {hook}));
    h.post(make_alert(1, "A", "a1", 0));
    h.post(make_alert(2, "B", "b1", 0));
    h.run_until(10 * minute);
    h.post(resolved(make_alert(1, "A", "a1", 0), 10 * minute));
    h.run_until(1 * hour);
    CHECK(h.log == lines{
                       "@30s hook/webhook/0 firing[a1] resolved[]",
                       "@30s hook/webhook/0 firing[b1] resolved[]",
                       "@10m30s hook/webhook/0 firing[] resolved[a1]",
                   });
    CHECK(h.d->stats().rate_limited == 0);
}

TEST_CASE("storm digest replaces a flood")
{
    receiver_config hook = webhook_receiver("hook");
    hook.storm_guard = {3, milliseconds(5 * minute)};
    harness h(make_config(make_root({"alertname", "instance"}, 30 * sec, 5 * minute, 4 * hour), {hook}));
    auto flood = [](std::uint64_t i) {
        return make_alert(i, i <= 4 ? "FeatureMissing" : "FeatureOutOfRange", "h" + std::to_string(i),
                          static_cast<time_ms>(i) * sec, {{"model", "churn"}, {"severity", i == 6 ? "critical" : "warning"}});
    };
    for (std::uint64_t i = 1; i <= 6; ++i) {
        h.post(flood(i));
        h.run_until(static_cast<time_ms>(i) * sec);
    }
    h.run_until(10 * minute);
    // After the storm window, a new alert is notified on its own.
    h.post(make_alert(7, "FeatureMissing", "h7", 10 * minute, {{"model", "churn"}}));
    h.run_until(15 * minute);
    for (std::uint64_t i = 1; i <= 6; ++i) {
        // The critical alert ranks above the storm's warnings, so it was notified on its own.
        CHECK(h.d->storms_of(i) == (i <= 5 ? std::vector<std::string>{"hook"} : std::vector<std::string>{}));
        h.post(resolved(flood(i), 20 * minute));
    }
    CHECK(h.d->alerts().size() == 7); // held alerts stay listed
    h.run_until(1 * hour);

    CHECK(h.log == lines{
                       "@3s hook/webhook/0 firing[] resolved[]",
                       "@35s hook/webhook/0 firing[h6] resolved[]",
                       "@10m30s hook/webhook/0 firing[h7] resolved[]",
                       "@20m0s hook/webhook/0 firing[] resolved[]",
                       "@20m35s hook/webhook/0 firing[] resolved[h6]",
                   });
    REQUIRE(h.sent.size() == 5);
    const notification& digest = h.sent[0];
    CHECK(digest.storm_digest);
    REQUIRE(digest.alerts.size() == 1);
    CHECK(digest.firing == 1);
    CHECK(digest.alerts[0].labels.get("alertname") == "AlertStorm");
    CHECK(digest.alerts[0].labels.get("receiver") == "hook");
    CHECK(digest.alerts[0].labels.get("severity") == "warning");
    CHECK(annotation(digest.alerts[0], "summary") ==
          "Alert storm: more than 3 new alerts for receiver hook within 5m; this digest stands for 4 of them");
    CHECK(annotation(digest.alerts[0], "description") ==
          "4 of 4 alerts still fire. Labels they all share: alertname=\"FeatureMissing\", model=\"churn\", "
          "severity=\"warning\".\nMost common values:\ninstance: h1 (1), h2 (1), h3 (1), 1 more values\nEach alert "
          "stays listed in GET /api/v2/alerts.");
    const notification& end = h.sent[3];
    CHECK(end.storm_digest);
    CHECK(end.firing == 0);
    CHECK(end.group_key == digest.group_key);
    CHECK(end.alerts[0].labels == digest.alerts[0].labels); // so receivers match it to the digest
    CHECK(annotation(end.alerts[0], "description") ==
          "Every one of the 5 alerts this digest stood for has resolved.");
    CHECK(h.d->stats().storms_started == 1);
    CHECK(h.d->stats().storms == 0);
}

TEST_CASE("the storm guard lets through as many new alerts as it allows")
{
    receiver_config hook = webhook_receiver("hook");
    hook.storm_guard = {3, milliseconds(5 * minute)};
    harness h(make_config(make_root({"alertname", "instance"}, 30 * sec, 5 * minute, 4 * hour), {hook}));
    for (std::uint64_t i = 1; i <= 3; ++i) {
        h.post(make_alert(i, "FeatureMissing", "h" + std::to_string(i), 0));
    }
    h.run_until(6 * minute);
    // Three more after the window: never more than three within it.
    for (std::uint64_t i = 4; i <= 6; ++i) {
        h.post(make_alert(i, "FeatureMissing", "h" + std::to_string(i), 6 * minute));
    }
    h.run_until(10 * minute);
    CHECK(h.sent.size() == 6);
    for (const auto& n : h.sent) {
        CHECK_FALSE(n.storm_digest);
    }
    CHECK(h.d->stats().storms_started == 0);
}

TEST_CASE("storm digest repeats and resolves on reload")
{
    receiver_config hook = webhook_receiver("hook");
    hook.storm_guard = {2, milliseconds(5 * minute)};
    auto guarded = make_config(make_root({"alertname", "instance"}, 30 * sec, 5 * minute, 4 * hour), {hook});
    harness h(guarded);
    for (std::uint64_t i = 1; i <= 6; ++i) {
        h.post(make_alert(i, "FeatureMissing", "h" + std::to_string(i), 0));
        h.run_until(static_cast<time_ms>(i) * sec);
    }
    h.run_until(2 * minute);
    REQUIRE(h.sent.size() == 2);
    CHECK(annotation(h.sent[0].alerts[0], "summary").ends_with("stands for 3 of them"));
    CHECK(annotation(h.sent[1].alerts[0], "summary").ends_with("stands for 6 of them"));
    CHECK(h.sent[1].group_key == h.sent[0].group_key);

    h.config = make_config(make_root({"alertname", "instance"}, 30 * sec, 5 * minute, 4 * hour),
                           {webhook_receiver("hook")});
    h.d->replace_config(h.config);
    h.run_until(6 * minute);
    // The digest resolves at once, and the alerts it stood for are notified on their own at
    // their groups' next tick.
    REQUIRE(h.sent.size() >= 3);
    CHECK(h.sent[2].storm_digest);
    CHECK(h.sent[2].firing == 0);
    CHECK(h.sent[2].alerts[0].labels == h.sent[0].alerts[0].labels);
    std::size_t alone = 0;
    for (std::size_t i = 3; i < h.sent.size(); ++i) {
        CHECK_FALSE(h.sent[i].storm_digest);
        alone += h.sent[i].firing;
    }
    CHECK(alone == 6);
}
