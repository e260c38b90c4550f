#pragma once
// The whole delivery path in one process, for black-box tests. A delivery_service runs over a real
// state_store in a temporary folder and a real http_sender on an io_context that the test runs.
// It sends to the local PagerDuty, Slack and webhook stand-ins on 127.0.0.1. Delivery timing
// follows a manual_clock that the test advances, so nothing sleeps to wait out a timer.
//
// Thread safety: one test thread; the stand-ins serve from their own threads.

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <yaml-cpp/yaml.h>

#include "daemon/delivery_service.hpp"
#include "daemon/metrics.hpp"
#include "daemon/state_store.hpp"
#include "notifiers/payload.hpp"
#include "notifiers/sender.hpp"
#include "routing/config.hpp"
#include "rules/yaml_check.hpp"
#include "support/fake_receivers.hpp"
#include "support/test_support.hpp"

namespace tocsin::test {

// 2023-11-14T22:13:20Z, a whole second, so that HTTP dates on the manual clock are exact.
constexpr time_ms pipeline_start_ms = 1'700'000'000'000;

constexpr time_ms seconds_ms(time_ms s) { return s * 1000; }
constexpr time_ms minutes_ms(time_ms m) { return m * 60'000; }
constexpr time_ms hours_ms(time_ms h) { return h * 3'600'000; }

struct loaded_routing {
    std::shared_ptr<const routing_config> routing;
    std::shared_ptr<const compiled_templates> templates;
};

// No environment variables: every secret in these tests is written in the config.
inline std::optional<std::string> no_environment(const char*) { return std::nullopt; }

// Replaces every "$BASE" in `text` with `base`.
inline std::string with_base(std::string text, const std::string& base)
{
    for (std::size_t at = text.find("$BASE"); at != std::string::npos; at = text.find("$BASE", at + base.size())) {
        text.replace(at, 5, base);
    }
    return text;
}

// Loads the routing part of a config file and compiles its templates; fails the test on any error.
inline loaded_routing load_routing_text(const std::string& text)
{
    diagnostics errors;
    diagnostics warnings;
    yaml::checker check("tocsin.yml", errors);
    auto config = std::make_shared<routing_config>(load_routing(YAML::Load(text), check, "", warnings, no_environment));
    INFO(errors.to_string());
    REQUIRE(errors.empty());
    diagnostics template_errors;
    auto templates = compile_templates(*config, "tocsin.yml", template_errors);
    INFO(template_errors.to_string());
    REQUIRE(templates);
    return {std::move(config), std::move(templates)};
}

// A firing alert as the rule engine reports it. The id is derived from the labels without
// severity, as the engine keeps an alert's id when its severity tier changes.
inline alert_snapshot firing_alert(label_set labels, std::vector<std::pair<std::string, std::string>> annotations,
                                   time_ms fired_at)
{
    alert_snapshot s;
    s.labels = std::move(labels);
    s.id = s.labels.without("severity").fingerprint();
    s.rule_name = std::string(s.labels.get("alertname"));
    s.annotations = std::move(annotations);
    s.state = alert_state::firing;
    s.level = parse_severity(s.labels.get("severity")).value_or(severity::warning);
    s.value = 1;
    s.active_at = fired_at;
    s.fired_at = fired_at;
    s.last_sample_at = fired_at;
    return s;
}

inline persisted_alert record_of(const alert_snapshot& s)
{
    persisted_alert r;
    r.id = s.id;
    r.rule_name = s.rule_name;
    r.series = s.labels;
    r.state = s.state;
    r.level = s.level;
    r.value = s.value;
    r.active_at = s.active_at;
    r.fired_at = s.fired_at;
    r.last_sample_at = s.last_sample_at;
    return r;
}

inline alert_event event_of(alert_event::kind what, const alert_snapshot& s)
{
    alert_event e;
    e.what = what;
    e.alert = s;
    e.record = record_of(s);
    return e;
}

inline alert_event fired(const alert_snapshot& s) { return event_of(alert_event::kind::firing, s); }

inline alert_event severity_changed(const alert_snapshot& s)
{
    return event_of(alert_event::kind::severity_changed, s);
}

inline alert_event resolved(alert_snapshot s, time_ms at)
{
    s.state = alert_state::inactive;
    s.resolved_at = at;
    s.last_sample_at = at;
    s.reason = "recovered";
    return event_of(alert_event::kind::resolved, s);
}

class delivery_pipeline {
public:
    explicit delivery_pipeline(fake_receivers_options options = {}) : rx(with_clock(std::move(options), clock))
    {
        rx.start();
    }

    ~delivery_pipeline() { crash(); }

    manual_clock clock{pipeline_start_ms};
    fake_receivers rx;
    temp_dir dir;
    retry_policy policy;
    loaded_routing config;
    // Clock times at which run_until() woke the service, to spot busy loops and stray timers.
    std::vector<time_ms> wakeups;

    std::string base() const { return rx.base_url(); }
    time_ms at(time_ms offset) const { return pipeline_start_ms + offset; }
    time_ms elapsed() const { return clock.now_ms() - pipeline_start_ms; }

    void configure(const std::string& yaml_text) { config = load_routing_text(with_base(yaml_text, base())); }

    // Opens the store, builds the sender and the service and starts it with the alerts the rule
    // engine has (after a restart: the ones it restored).
    void open(const std::vector<alert_snapshot>& engine_alerts = {})
    {
        REQUIRE(config.routing);
        std::string error;
        store_ = state_store::open(dir.path().string(), error);
        INFO(error);
        REQUIRE(store_);
        io_ = std::make_unique<boost::asio::io_context>();
        sender_ = std::make_unique<http_sender>(*io_, "tocsin", &clock);
        service_ = std::make_unique<delivery_service>(*store_, clock, *sender_, config.routing, config.templates, policy,
                                                      "http://tocsin.example:9093", [this] { woken_ = true; });
        REQUIRE(service_->start(engine_alerts, {}, error));
    }

    // The process dies: nothing runs but what already reached the store.
    void crash()
    {
        service_.reset();
        sender_.reset();
        io_.reset();
        store_.reset();
        woken_ = false;
    }

    // The shutdown path of SIGTERM: sends in flight are cancelled, then everything closes.
    void shut_down()
    {
        service_->stop();
        settle();
        crash();
    }

    delivery_service& service() { return *service_; }
    state_store& store() { return *store_; }

    // Hands engine events to the service at the current clock time and waits for the sends
    // they start.
    void post(std::vector<alert_event> events)
    {
        flush_only(std::move(events));
        settle();
    }

    // Hands engine events to the service without waiting for the sends.
    void flush_only(std::vector<alert_event> events)
    {
        std::string error;
        const bool ok = service_->flush(events, error);
        INFO(error);
        REQUIRE(ok);
        REQUIRE(events.empty());
    }

    void reload(const std::string& yaml_text)
    {
        configure(yaml_text);
        service_->replace_config(config.routing, config.templates, policy, "http://tocsin.example:9093");
        post({});
    }

    // Runs the daemon's delivery loop until the clock reads `until`: wakes at each
    // next_wakeup(), flushes, pumps and waits for the sends to finish.
    void run_until(time_ms until)
    {
        for (int turns = 0;; ++turns) {
            // A loop that keeps waking without the clock moving is a busy loop.
            REQUIRE(turns < 20'000);
            auto next = service_->next_wakeup();
            if (!next || *next > until) {
                break;
            }
            if (*next > clock.now_ms()) {
                clock.set_ms(*next);
            }
            REQUIRE(std::count(wakeups.begin(), wakeups.end(), clock.now_ms()) < 50);
            wakeups.push_back(clock.now_ms());
            post({});
        }
        if (until > clock.now_ms()) {
            clock.set_ms(until);
        }
    }

    // Runs the io_context until no send is in flight and no wake-up is pending, within
    // `limit` of real time (sends are real HTTP requests on 127.0.0.1).
    void settle(std::chrono::milliseconds limit = std::chrono::seconds(20))
    {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        for (;;) {
            if (woken_ && service_) {
                woken_ = false;
                service_->pump();
            }
            if (sender_->in_flight() == 0 && !woken_) {
                return;
            }
            REQUIRE(std::chrono::steady_clock::now() < deadline);
            run_io_for(std::chrono::milliseconds(5));
        }
    }

    // Runs the io_context until `done()` returns true, within `limit` of real time.
    template <class Predicate>
    bool run_io_until(Predicate done, std::chrono::milliseconds limit = std::chrono::seconds(20))
    {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        while (!done()) {
            if (std::chrono::steady_clock::now() >= deadline) {
                return false;
            }
            if (woken_) {
                woken_ = false;
                service_->pump();
            }
            run_io_for(std::chrono::milliseconds(5));
        }
        return true;
    }

    std::string metrics() const
    {
        metrics_writer w;
        service_->write_metrics(w);
        return w.text();
    }

private:
    static fake_receivers_options with_clock(fake_receivers_options options, const tocsin::clock& c)
    {
        options.clock = &c;
        return options;
    }

    void run_io_for(std::chrono::milliseconds d)
    {
        io_->restart();
        io_->run_for(d);
    }

    std::unique_ptr<state_store> store_;
    std::unique_ptr<boost::asio::io_context> io_;
    std::unique_ptr<http_sender> sender_;
    std::unique_ptr<delivery_service> service_;
    bool woken_ = false;
};

} // namespace tocsin::test
