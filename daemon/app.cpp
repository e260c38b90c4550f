#include "daemon/app.hpp"

#include <chrono>
#include <csignal>
#include <malloc.h>
#include <filesystem>
#include <fstream>
#include <thread>
#include <map>
#include <optional>
#include <set>
#include <iostream>
#include <sstream>
#include <variant>

#include <boost/asio.hpp>
#include <systemd/sd-daemon.h>

#include "daemon/api.hpp"
#include "daemon/config.hpp"
#include "daemon/delivery_service.hpp"
#include "daemon/ack_api.hpp"
#include "daemon/am_alerts.hpp"
#include "daemon/silence_api.hpp"
#include "daemon/http_server.hpp"
#include "daemon/ingest.hpp"
#include "daemon/logging.hpp"
#include "daemon/metrics.hpp"
#include "daemon/noise_report.hpp"
#include "daemon/runbook_api.hpp"
#include "daemon/runbook_service.hpp"
#include "daemon/overrides.hpp"
#include "daemon/state_store.hpp"
#include "model/records.hpp"
#include "model/registry.hpp"
#include "notifiers/sender.hpp"
#include "rules/duration.hpp"
#include "rules/engine.hpp"

namespace tocsin {

namespace asio = boost::asio;

namespace {

constexpr const char* tocsin_version = "0.1.0";

// Endpoints with their own latency histogram and request counters.
enum class endpoint { write, push, alerts, rules, overrides, silences, metrics, reload, health, other, count_ };
constexpr const char* endpoint_names[] = {"write",  "push",   "alerts", "rules",  "overrides", "silences",
                                          "metrics", "reload", "health", "other"};

struct endpoint_stats {
    latency_histogram latency;
    std::map<int, std::uint64_t> by_status;
};

// Compares in time that depends only on the lengths, so a token cannot be guessed byte by byte.
bool equal_constant_time(std::string_view a, std::string_view b)
{
    unsigned char diff = a.size() == b.size() ? 0 : 1;
    const std::size_t n = std::max(a.size(), b.size());
    for (std::size_t i = 0; i < n; ++i) {
        unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
        unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
        diff |= static_cast<unsigned char>(x ^ y);
    }
    return diff == 0;
}

std::string resolve_state_dir(const main_config& cfg)
{
    std::filesystem::path dir(cfg.state_dir);
    if (dir.is_relative()) {
        dir = std::filesystem::absolute(cfg.path).parent_path() / dir;
    }
    return dir.lexically_normal().string();
}

// Applies the command-line flags that override the config file. Returns false with `error`
// set when one is invalid.
bool apply_command_line(const app_options& options, loaded_config& config, std::string& error)
{
    if (!options.storage_path.empty()) {
        // Relative to the working folder, as Alertmanager reads it.
        config.main.state_dir = std::filesystem::absolute(options.storage_path).lexically_normal().string();
    }
    if (!options.listen_address.empty() &&
        !parse_listen_address(options.listen_address, config.main.listen_address, config.main.listen_port, error)) {
        error = "invalid --web.listen-address \"" + options.listen_address + "\": " + error;
        return false;
    }
    if (!options.external_url.empty()) {
        config.main.external_url = options.external_url;
    }
    if (!options.data_retention.empty()) {
        auto retention = parse_duration(options.data_retention, error);
        if (!retention) {
            error = "invalid --data.retention \"" + options.data_retention + "\": " + error;
            return false;
        }
        config.main.silences.retention = *retention;
    }
    return true;
}

// The path prefix of every endpoint: --web.route-prefix, else the path of --web.external-url,
// as Alertmanager derives it; without a trailing slash.
std::string route_prefix_of(const app_options& options)
{
    std::string prefix = options.route_prefix;
    if (prefix.empty() && !options.external_url.empty()) {
        const auto scheme = options.external_url.find("://");
        const auto path = options.external_url.find('/', scheme == std::string::npos ? 0 : scheme + 3);
        if (path != std::string::npos) {
            prefix = options.external_url.substr(path);
        }
    }
    if (!prefix.empty() && prefix.front() != '/') {
        prefix.insert(prefix.begin(), '/');
    }
    while (!prefix.empty() && prefix.back() == '/') {
        prefix.pop_back();
    }
    return prefix;
}

// The name an admin token goes by in overrides and logs: its file name without folder and
// extension (/etc/tocsin/alice.token -> alice). The token itself is a secret and never shown.
std::string token_name(const std::vector<std::string>& files, std::size_t index)
{
    if (index >= files.size()) {
        return {};
    }
    return std::filesystem::path(files[index]).stem().string();
}

double now_seconds()
{
    using namespace std::chrono;
    return duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

class daemon_app {
public:
    daemon_app(app_options options, loaded_config config, std::unique_ptr<state_store> store)
        : options_(std::move(options)), config_(std::move(config)), store_(std::move(store)),
          engine_(config_.rules, config_.main.engine, clock_), signals_(io_, SIGTERM, SIGINT, SIGHUP),
          tick_timer_(io_), watchdog_timer_(io_), drain_timer_(io_), delivery_timer_(io_),
          sender_(io_, std::string("tocsin/") + tocsin_version, &clock_)
    {
        delivery_ = std::make_unique<delivery_service>(
            *store_, clock_, sender_, config_.routing, config_.templates, config_.main.delivery,
            config_.main.external_url, [this] { asio::post(io_, [this] { on_delivery_wake(); }); });
        delivery_->set_silences(&silences_);
        delivery_->set_history_retention(config_.main.history_retention);
        if (config_.models) {
            models_ = std::make_unique<model::model_registry>(config_.models);
            models_file_digest_ = file_digest(config_.main.model_schemas);
        }
        http_server_options http;
        http.address = config_.main.listen_address;
        http.port = config_.main.listen_port;
        http.max_body_bytes = config_.main.ingest.max_body_bytes;
        http.tls_cert_file = config_.main.tls.cert_file;
        http.tls_key_file = config_.main.tls.key_file;
        server_ = std::make_unique<http_server>(io_, http, [this](const http_request& r) { return handle(r); });
        last_reload_success_ = now_seconds();
    }

    int run()
    {
        std::string error;
        // Before the alerts: their rule hashes are those of the rule files, which the
        // overridden copies keep, so restore() maps them the same either way.
        if (!load_overrides()) {
            return 1;
        }
        auto records = store_->load_alerts(error);
        if (!records) {
            log_->error("cannot read alert state: {}", error);
            return 1;
        }
        std::size_t dropped = engine_.restore(*records);
        log_->info("restored {} alerts from {} ({} dropped: rule gone, series no longer selected, or tiers not matched)",
                   records->size() - dropped, config_.main.state_dir, dropped);
        restore_baselines();
        if (!restore_silences()) {
            return 1;
        }
        log_warnings(config_.warnings);
        std::set<std::string> held_rules;
        for (const auto& r : engine_.rule_statistics()) {
            if (r.limit_exceeded) {
                held_rules.insert(r.name);
            }
        }
        if (!delivery_->start(engine_.alerts(), held_rules, error)) {
            log_->error("cannot read delivery state: {}", error);
            return 1;
        }
        if (!config_.routing->present) {
            log_->warn("the configuration has no route; alerts are visible in the API but no notifications are sent");
        }
        if (!open_audit_log() || !start_runbooks(config_)) {
            return 1;
        }
        flush_events();

        try {
            server_->start();
        } catch (const std::exception& e) {
            log_->error("{}", e.what());
            return 1;
        }
        log_->info("tocsind {} listening on {}:{}{} with {} rules; state in {}", tocsin_version,
                   config_.main.listen_address, server_->port(), config_.main.tls.enabled() ? " (TLS)" : "",
                   config_.rules->rules.size(), config_.main.state_dir);

        wait_for_signal();
        schedule_tick();
        start_watchdog();
        ready_ = true;
        sd_notify(0, "READY=1\nSTATUS=running");

        io_.run();

        log_->info("tocsind stopped");
        return exit_code_;
    }

private:
    // ---- signals and timers ----

    void wait_for_signal()
    {
        signals_.async_wait([this](const boost::system::error_code& ec, int signal_number) {
            if (ec) {
                return;
            }
            if (signal_number == SIGHUP) {
                try {
                    reload("SIGHUP");
                } catch (const std::exception& e) {
                    last_reload_ok_ = false;
                    log_->error("reload (SIGHUP) failed: {}; keeping the running configuration", e.what());
                }
                wait_for_signal();
                return;
            }
            begin_shutdown(signal_number == SIGTERM ? "SIGTERM" : "SIGINT");
        });
    }

    void schedule_tick()
    {
        tick_timer_.expires_after(config_.main.tick_interval);
        tick_timer_.async_wait([this](const boost::system::error_code& ec) {
            if (ec || stopping_) {
                return;
            }
            expire_overrides();
            silences_.collect_garbage(clock_.now_ms());
            save_silence_changes();
            engine_.tick();
            tick_runbooks();
            flush_events();
            report_series_limit();
            if (config_.main.baseline_snapshot_interval.count() > 0 &&
                std::chrono::steady_clock::now() >= next_baseline_snapshot_) {
                save_baselines();
            }
            publish_model_figures();
            return_free_memory();
            schedule_tick();
        });
    }

    // Hands memory that bursts of alerts and notifications freed back to the system, at most
    // every 30 s. glibc keeps freed memory for reuse, so without this the resident size stays
    // at its peak after a flood.
    void return_free_memory()
    {
        const auto now = std::chrono::steady_clock::now();
        if (now - last_memory_trim_ < std::chrono::seconds(30)) {
            return;
        }
        last_memory_trim_ = now;
        malloc_trim(0);
    }

    void start_watchdog()
    {
        std::uint64_t usec = 0;
        if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) {
            return;
        }
        watchdog_interval_ = std::chrono::microseconds(usec / 2);
        log_->info("systemd watchdog enabled; pinging every {} ms", usec / 2000);
        ping_watchdog();
    }

    // The ping comes from the event loop itself, so a stuck loop stops the pings and systemd
    // restarts the service.
    void ping_watchdog()
    {
        sd_notify(0, "WATCHDOG=1");
        watchdog_timer_.expires_after(watchdog_interval_);
        watchdog_timer_.async_wait([this](const boost::system::error_code& ec) {
            if (!ec) {
                ping_watchdog();
            }
        });
    }

    void begin_shutdown(const char* reason)
    {
        if (stopping_) {
            return;
        }
        stopping_ = true;
        log_->info("received {}; finishing requests in flight (at most {} ms)", reason,
                   config_.main.shutdown_timeout.count());
        sd_notify(0, "STOPPING=1\nSTATUS=stopping");
        server_->stop_accepting();
        tick_timer_.cancel();
        shutdown_deadline_ = std::chrono::steady_clock::now() + config_.main.shutdown_timeout;
        wait_for_drain();
    }

    void wait_for_drain()
    {
        if (server_->open_connections() == 0 || std::chrono::steady_clock::now() >= shutdown_deadline_) {
            if (server_->open_connections() != 0) {
                log_->warn("{} connections still open after shutdown_timeout; closing them",
                           server_->open_connections());
            }
            finish_shutdown();
            return;
        }
        drain_timer_.expires_after(std::chrono::milliseconds(20));
        drain_timer_.async_wait([this](const boost::system::error_code&) { wait_for_drain(); });
    }

    void finish_shutdown()
    {
        stop_runbooks();
        flush_events();
        delivery_->stop();
        delivery_timer_.cancel();
        std::string error;
        if (!store_->replace_all(engine_.persisted_state(), error)) {
            log_->error("cannot save alert state at shutdown: {}", error);
            exit_code_ = 1;
        }
        if (!save_baselines()) {
            exit_code_ = 1;
        }
        signals_.cancel();
        watchdog_timer_.cancel();
        io_.stop();
    }

    // ---- persistence ----

    // Loads the silences saved by the previous process. Rows that cannot be read are logged
    // and skipped. A database that cannot be read stops the start, because alerts that people
    // silenced would page them.
    bool restore_silences()
    {
        std::string error;
        std::vector<std::string> unreadable;
        auto saved = store_->load_silences(unreadable, error);
        if (!saved) {
            log_->error("cannot read silences: {}", error);
            return false;
        }
        for (const auto& problem : unreadable) {
            silence_log_->warn("skipped an unreadable stored silence: {}", problem);
        }
        const std::size_t count = saved->size();
        const std::size_t skipped = silences_.restore(std::move(*saved), clock_.now_ms());
        save_silence_changes();
        const auto counts = silences_.counts(clock_.now_ms());
        log_->info("restored {} silences ({} active, {} pending, {} expired; {} skipped)", count - skipped,
                   counts[static_cast<std::size_t>(silence_state::active)],
                   counts[static_cast<std::size_t>(silence_state::pending)],
                   counts[static_cast<std::size_t>(silence_state::expired)], skipped + unreadable.size());
        return true;
    }

    // Writes pending silence changes. A failed write is retried at the next tick; changes that
    // the API confirmed were written before the response (see commit_silence()).
    void save_silence_changes()
    {
        silence_changes changes = silences_.take_changes();
        for (auto& c : unsaved_silence_changes_.upserted) {
            changes.upserted.push_back(std::move(c));
        }
        for (auto& id : unsaved_silence_changes_.deleted) {
            changes.deleted.push_back(std::move(id));
        }
        unsaved_silence_changes_ = {};
        std::string error;
        if (!store_->apply_silence_changes(changes, error)) {
            silence_log_->error("cannot save silence changes, retrying: {}", error);
            unsaved_silence_changes_ = std::move(changes);
        }
    }

    // Gives the detectors of dynamic rules the baselines saved before the restart, so they do
    // not warm up again. Baselines that cannot be read only cost a warm-up, so the daemon
    // starts without them.
    void restore_baselines()
    {
        next_baseline_snapshot_ = std::chrono::steady_clock::now() + config_.main.baseline_snapshot_interval;
        std::string error;
        std::size_t unreadable = 0;
        auto saved = store_->load_baselines(unreadable, error);
        if (!saved) {
            log_->warn("cannot read detector baselines, dynamic rules warm up again: {}", error);
            return;
        }
        const std::size_t dropped = engine_.restore_baselines(*saved) + unreadable;
        if (!saved->empty() || unreadable > 0) {
            log_->info("restored {} detector baselines ({} dropped: rule gone, dynamic block changed, series no "
                       "longer selected, or state unreadable)",
                       saved->size() + unreadable - dropped, dropped);
        }
    }

    // NOTE: the snapshot runs on the event loop and writes every detector; with many dynamic
    // series, a longer baseline_snapshot_interval keeps its pauses rare.
    bool save_baselines()
    {
        next_baseline_snapshot_ = std::chrono::steady_clock::now() + config_.main.baseline_snapshot_interval;
        std::string error;
        const auto records = engine_.baselines();
        if (records.empty() && !baselines_saved_) {
            return true;
        }
        if (!store_->replace_baselines(records, error)) {
            log_->error("cannot save detector baselines: {}", error);
            return false;
        }
        baselines_saved_ = !records.empty();
        log_->debug("saved {} detector baselines", records.size());
        return true;
    }

    // Writes the engine's alert changes to the store together with the delivery changes they
    // cause (group timers, notification log, outbox), then starts the sends. Events that fail to
    // write are kept and retried with the next flush, so a transient disk error loses nothing.
    bool flush_events()
    {
        auto events = engine_.take_events();
        for (auto& e : events) {
            log_event(e);
            unsaved_events_.push_back(std::move(e));
        }
        std::string error;
        const bool saved = delivery_->flush(unsaved_events_, error);
        arm_delivery_timer();
        if (!saved) {
            ++store_write_failures_;
            auto now = std::chrono::steady_clock::now();
            if (now - last_store_error_log_ > std::chrono::seconds(10)) {
                log_->error("cannot save {} alert changes, will retry: {}", unsaved_events_.size(), error);
                last_store_error_log_ = now;
            }
            return false;
        }
        return true;
    }

    // ---- delivery ----

    void on_delivery_wake()
    {
        if (stopping_) {
            return;
        }
        delivery_->pump();
        arm_delivery_timer();
    }

    // Wakes the loop when a group is due to flush or a retry is due. Times come from the
    // injected clock; the wait itself is on the steady clock.
    void arm_delivery_timer()
    {
        auto next = delivery_->next_wakeup();
        if (!next || stopping_) {
            delivery_timer_.cancel();
            armed_wakeup_.reset();
            return;
        }
        if (armed_wakeup_ && *armed_wakeup_ == *next) {
            return;
        }
        armed_wakeup_ = *next;
        const auto delay = std::chrono::milliseconds(std::max<time_ms>(0, *next - clock_.now_ms()));
        delivery_timer_.expires_after(delay);
        delivery_timer_.async_wait([this](const boost::system::error_code& ec) {
            if (ec || stopping_) {
                return;
            }
            armed_wakeup_.reset();
            flush_events();
        });
    }

    void log_warnings(const diagnostics& warnings)
    {
        for (const auto& w : warnings.items()) {
            log_->warn("config: {}", w.to_string());
        }
    }

    // Logs firing, severity changes and resolutions at info, at most 20 lines per 10 s, then a
    // count of the lines left out. Pending and timer updates go to debug.
    void log_event(const alert_event& e)
    {
        // Changes of a rule over its alert limit are held back from announcement because the
        // meta alert represents them, so they go to debug like pending alerts.
        const bool notable = !e.held_back && (e.what == alert_event::kind::firing ||
                                              e.what == alert_event::kind::resolved ||
                                              e.what == alert_event::kind::severity_changed);
        if (!notable) {
            if (alert_log_->should_log(spdlog::level::debug)) {
                alert_log_->debug("{} rule={} alert_id={:016x} severity={} value={} labels={}", to_string(e.what),
                                  e.alert.rule_name, e.alert.id, to_string(e.alert.level), e.alert.value,
                                  e.alert.labels.to_string());
            }
            return;
        }
        auto now = std::chrono::steady_clock::now();
        if (now - alert_log_window_start_ >= std::chrono::seconds(10)) {
            if (alert_log_suppressed_ > 0) {
                alert_log_->info("{} more alert changes were not logged in the last 10s; see GET /api/v1/alerts",
                                 alert_log_suppressed_);
            }
            alert_log_window_start_ = now;
            alert_log_lines_ = 0;
            alert_log_suppressed_ = 0;
        }
        if (alert_log_lines_ >= 20) {
            ++alert_log_suppressed_;
            return;
        }
        ++alert_log_lines_;
        if (e.what == alert_event::kind::resolved) {
            alert_log_->info("resolved rule={} alert_id={:016x} reason={} labels={}", e.alert.rule_name, e.alert.id,
                             e.alert.reason.empty() ? "recovered" : e.alert.reason, e.alert.labels.to_string());
        } else {
            alert_log_->info("{} rule={} alert_id={:016x} severity={} value={} labels={}", to_string(e.what),
                             e.alert.rule_name, e.alert.id, to_string(e.alert.level), e.alert.value,
                             e.alert.labels.to_string());
        }
    }

    // ---- reload ----

    struct reload_result {
        bool ok = false;
        std::string errors;
    };

    reload_result reload(const char* trigger)
    {
        sd_notify(0, "RELOADING=1\nSTATUS=reloading");
        ++reloads_total_;
        diagnostics diags;
        std::optional<loaded_config> loaded;
        try {
            loaded = load_config(options_.config_path, diags);
        } catch (const std::exception& e) {
            // A loader bug or exhausted memory must not take the running daemon down.
            diags.add(options_.config_path, 0, 0, std::string("cannot load the configuration: ") + e.what());
            loaded.reset();
        }
        reload_result result;
        if (!loaded) {
            ++reload_failures_;
            last_reload_ok_ = false;
            log_->error("reload ({}) failed; keeping the running configuration. {} errors:", trigger, diags.size());
            for (const auto& d : diags.items()) {
                log_->error("  {}", d.to_string());
            }
            result.errors = diags.to_string();
            sd_notify(0, "READY=1\nSTATUS=running; last reload failed");
            return result;
        }
        loaded->main.state_dir = resolve_state_dir(loaded->main);
        if (std::string error; !apply_command_line(options_, *loaded, error)) {
            // The flags were valid at start and have not changed.
            log_->error("reload ({}): {}", trigger, error);
        }
        warn_on_restart_only_changes(loaded->main);
        // The listener, TLS and state folder stay as they are until a restart.
        loaded->main.listen_address = config_.main.listen_address;
        loaded->main.listen_port = config_.main.listen_port;
        loaded->main.tls = config_.main.tls;
        loaded->main.state_dir = config_.main.state_dir;
        loaded->main.state_sync = config_.main.state_sync;
        loaded->main.ingest.max_body_bytes = config_.main.ingest.max_body_bytes;

        if (loaded->rules->rules.empty() && !loaded->routing->present &&
            (!config_.rules->rules.empty() || config_.routing->present)) {
            // Valid, but more likely a truncated or wrong file than an intent to stop alerting.
            log_->warn("the reloaded configuration {} has no rules and no route: every alert resolves and nothing "
                       "is notified; check the file if that is not intended",
                       options_.config_path);
        }
        engine_.set_limits(loaded->main.engine);
        drop_unfit_overrides(*loaded->rules, "reload");
        engine_.replace_rules(overrides_.apply(loaded->rules));
        log_warnings(loaded->warnings);
        delivery_->replace_config(loaded->routing, loaded->templates, loaded->main.delivery, loaded->main.external_url);
        silences_.set_limits(loaded->main.silences);
        delivery_->set_history_retention(loaded->main.history_retention);
        replace_models(*loaded);
        replace_runbooks(*loaded);
        config_ = std::move(*loaded);
        if (!options_.log_level.empty()) {
            set_log_level(options_.log_level);
        } else {
            set_log_level(config_.main.log_level);
        }
        flush_events();

        last_reload_ok_ = true;
        last_reload_success_ = now_seconds();
        log_->info("reload ({}) done: {} rules from {} files; {} threshold overrides apply", trigger,
                   config_.rules->rules.size(), config_.rule_file_paths.size(), overrides_.items().size());
        sd_notify(0, "READY=1\nSTATUS=running");
        result.ok = true;
        return result;
    }

    void warn_on_restart_only_changes(const main_config& next)
    {
        const auto& current = config_.main;
        if (next.listen_address != current.listen_address || next.listen_port != current.listen_port) {
            log_->warn("listen changed to {}:{}; it takes effect after a restart", next.listen_address,
                       next.listen_port);
        }
        if (next.tls.cert_file != current.tls.cert_file || next.tls.key_file != current.tls.key_file) {
            log_->warn("tls changed; it takes effect after a restart");
        }
        if (next.state_dir != current.state_dir) {
            log_->warn("state_dir changed to {}; it takes effect after a restart", next.state_dir);
        }
        if (next.state_sync != current.state_sync) {
            log_->warn("state_sync changed to {}; it takes effect after a restart", next.state_sync);
        }
        if (next.ingest.max_body_bytes != current.ingest.max_body_bytes) {
            log_->warn("limits.max_body_bytes changed; it takes effect after a restart");
        }
    }

    // ---- threshold overrides ----

    const rule* file_rule(const std::string& name) const
    {
        for (const auto& r : config_.rules->rules) {
            if (r->name == name) {
                return r.get();
            }
        }
        return nullptr;
    }

    // Installs the rule files' rules with the overrides applied. Overridden copies keep the name
    // and definition_hash, so every alert keeps its state and the next sample meets the new
    // thresholds. NOTE: engine::replace_rules() walks every series, so a change costs as much as
    // a reload.
    void apply_overrides()
    {
        engine_.replace_rules(overrides_.apply(config_.rules));
        flush_events();
    }

    // Logs one override at info. `deleted_by` names the token of a DELETE request.
    void log_override(const char* what, const threshold_override& o, const rule* base,
                      const std::string& deleted_by = {})
    {
        const std::string changes = base != nullptr ? describe_changes(tier_changes(o, *base)) : std::string("-");
        override_log_->info("{} rule={} tiers=\"{}\" expires_at={} author={:?} token={} reason={:?}{}", what,
                            o.rule_name, changes, format_rfc3339_ms(o.expires_at), o.author,
                            o.token_name.empty() ? "-" : o.token_name, o.reason,
                            deleted_by.empty() ? std::string() : " deleted_by=" + deleted_by);
        nlohmann::json details = {{"event", what},
                                  {"rule", o.rule_name},
                                  {"tiers", changes},
                                  {"expires_at", format_rfc3339_ms(o.expires_at)},
                                  {"token", o.token_name},
                                  {"reason", o.reason}};
        if (!deleted_by.empty()) {
            details["deleted_by"] = deleted_by;
        }
        if (std::string_view(what) == "override restored") {
            return; // a restart, not a change
        }
        std::string actor = o.author;
        if (actor.empty()) {
            actor = o.token_name.empty() ? "tocsin" : o.token_name;
        }
        append_audit("threshold_override", actor, std::move(details));
    }

    void remove_stored_override(const std::string& rule_name)
    {
        std::string error;
        if (!store_->remove_override(rule_name, error)) {
            // The override no longer applies in this process, and the next start drops it
            // again because it is expired or no longer fits the rules.
            override_log_->warn("cannot delete the threshold override of rule {} from the store: {}", rule_name,
                                error);
        }
    }

    // Reads the stored overrides, drops the expired and those that no longer fit the rule files,
    // and installs the rest. Returns false when the store cannot be read.
    bool load_overrides()
    {
        std::string error;
        std::vector<std::string> unreadable;
        auto stored = store_->load_overrides(unreadable, error);
        if (!stored) {
            log_->error("cannot read threshold overrides: {}", error);
            return false;
        }
        for (const auto& rule_name : unreadable) {
            override_log_->warn("dropped the stored threshold override of rule {}: its tiers are damaged; the rule "
                                "file's thresholds apply, set the override again if it is still needed",
                                rule_name);
            remove_stored_override(rule_name);
        }
        for (auto& o : *stored) {
            overrides_.set(std::move(o));
        }
        for (const auto& o : overrides_.take_expired(clock_.now_ms())) {
            log_override("override expired while tocsind was stopped; dropped", o, file_rule(o.rule_name));
            remove_stored_override(o.rule_name);
        }
        drop_unfit_overrides(*config_.rules, "start");
        if (!overrides_.empty()) {
            for (const auto& [name, o] : overrides_.items()) {
                log_override("override restored", o, file_rule(name));
            }
            engine_.replace_rules(overrides_.apply(config_.rules));
        }
        return true;
    }

    // Drops the overrides whose rule or tier is gone from `rules`, as after a reload.
    void drop_unfit_overrides(const rule_set& rules, const char* trigger)
    {
        for (const auto& dropped : overrides_.take_unfit(rules)) {
            override_log_->warn("{}: dropping the threshold override of rule {} (expires_at={} author={:?} "
                                "reason={:?}): {}",
                                trigger, dropped.value.rule_name, format_rfc3339_ms(dropped.value.expires_at),
                                dropped.value.author, dropped.value.reason, dropped.reason);
            remove_stored_override(dropped.value.rule_name);
        }
    }

    // Ends the overrides whose expiry the injected clock has reached; called on every tick.
    void expire_overrides()
    {
        auto expired = overrides_.take_expired(clock_.now_ms());
        if (expired.empty()) {
            return;
        }
        for (const auto& o : expired) {
            log_override("override expired; the rule file's thresholds apply again", o, file_rule(o.rule_name));
            remove_stored_override(o.rule_name);
        }
        apply_overrides();
    }

    // Returns the rule name of /api/v1/rules/{name}/override, percent-decoded; "" when the
    // escape is malformed; nullopt for any other path.
    static std::optional<std::string> override_path_rule(const std::string& path)
    {
        constexpr std::string_view prefix = "/api/v1/rules/";
        constexpr std::string_view suffix = "/override";
        if (path.size() <= prefix.size() + suffix.size() || !path.starts_with(prefix) || !path.ends_with(suffix)) {
            return std::nullopt;
        }
        auto encoded = std::string_view(path).substr(prefix.size(), path.size() - prefix.size() - suffix.size());
        return percent_decode(encoded).value_or(std::string());
    }

    // Returns the name of the admin token the request carries, or the response that rejects it.
    // Overrides change alerting from request content, so unlike /-/reload they are rejected
    // when no admin token is configured.
    std::variant<std::string, http_response> authorize_override(const http_request& request)
    {
        const auto& auth = config_.main.auth;
        if (auth.admin_tokens.empty()) {
            return http_response::text(
                403, fmt::format("threshold overrides are disabled because no admin token is configured; add "
                                 "auth.admin_token_files to {}, reload, and send Authorization: Bearer <token>\n",
                                 options_.config_path));
        }
        std::size_t matched = 0;
        if (auto denied = check_token(request, auth.admin_tokens, &matched)) {
            return *denied;
        }
        return token_name(auth.admin_token_files, matched);
    }

    http_response handle_override(const http_request& request, const std::string& rule_name)
    {
        const auto& method = request.method;
        if (method == "GET" || method == "HEAD") {
            const threshold_override* o = overrides_.find(rule_name);
            const rule* base = file_rule(rule_name);
            if (o == nullptr || base == nullptr) {
                return http_response::text(404, fmt::format("rule \"{}\" has no threshold override; GET "
                                                            "/api/v1/overrides lists the active ones\n",
                                                            truncate_for_message(rule_name)));
            }
            return http_response::json(200, override_json(*o, *base));
        }
        if (method != "PUT" && method != "DELETE") {
            return method_not_allowed("GET, HEAD, PUT, DELETE");
        }
        auto identity = authorize_override(request);
        if (auto* denied = std::get_if<http_response>(&identity)) {
            return std::move(*denied);
        }
        if (rule_name.empty()) {
            return http_response::text(400, "invalid rule name in the path; expected /api/v1/rules/<name>/override "
                                            "with %XX escapes for reserved characters\n");
        }
        const std::string& token = std::get<std::string>(identity);
        return method == "PUT" ? put_override(request, rule_name, token) : delete_override(rule_name, token);
    }

    http_response put_override(const http_request& request, const std::string& rule_name, const std::string& token)
    {
        override_limits limits;
        limits.max_duration = config_.main.max_override_duration;
        auto parsed = parse_override_request(request.body, rule_name, *config_.rules, token, clock_.now_ms(), limits);
        if (!parsed.value) {
            return http_response::text(parsed.status, parsed.error + "\n");
        }
        const threshold_override& o = *parsed.value;
        std::string error;
        // Saved before it applies, so an override that the API confirmed survives a crash.
        if (!store_->set_override(o, error)) {
            override_log_->error("cannot save the threshold override of rule {}: {}", o.rule_name, error);
            auto response = http_response::text(
                503, "the override could not be saved, so it was not applied; retry later (see the tocsind log)\n");
            response.headers.emplace_back("Retry-After", "5");
            return response;
        }
        const bool replaces = overrides_.find(o.rule_name) != nullptr;
        overrides_.set(o);
        apply_overrides();
        const rule* base = file_rule(o.rule_name);
        log_override(replaces ? "override replaced" : "override set", o, base);
        return http_response::json(200, override_json(o, *base));
    }

    http_response delete_override(const std::string& rule_name, const std::string& token)
    {
        if (overrides_.find(rule_name) == nullptr) {
            return http_response::text(404, fmt::format("rule \"{}\" has no threshold override; GET "
                                                        "/api/v1/overrides lists the active ones\n",
                                                        truncate_for_message(rule_name)));
        }
        std::string error;
        if (!store_->remove_override(rule_name, error)) {
            override_log_->error("cannot delete the threshold override of rule {}: {}", rule_name, error);
            auto response = http_response::text(
                503, "the override could not be deleted from the store, so it still applies; retry later (see "
                     "the tocsind log)\n");
            response.headers.emplace_back("Retry-After", "5");
            return response;
        }
        auto removed = overrides_.remove(rule_name);
        apply_overrides();
        const rule* base = file_rule(rule_name);
        log_override("override deleted", *removed, base, token.empty() ? "-" : token);
        return http_response::json(200, override_json(*removed, *base));
    }

    // ---- Alertmanager's alert API ----

    http_response post_am_alerts(const http_request& request)
    {
        postable_alert_limits limits;
        limits.max_labels = config_.main.ingest.max_labels_per_series;
        limits.max_label_value_bytes = config_.main.ingest.max_label_value_bytes;
        const time_ms now = clock_.now_ms();
        postable_alerts parsed =
            parse_postable_alerts(request.body, now, config_.routing->global.resolve_timeout, limits);
        if (parsed.fatal_status != 0) {
            return v2_error(parsed.fatal_status, parsed.fatal);
        }
        const std::size_t accepted = parsed.alerts.size();
        std::string error;
        if (accepted > 0 && !delivery_->receive(std::move(parsed.alerts), error)) {
            log_->error("cannot save {} alerts received over /api/v2/alerts, retrying: {}", accepted, error);
            arm_delivery_timer();
            return v2_error(500, "the alerts could not be saved; they are held in memory and written with the next "
                                 "change, resend them to be safe");
        }
        arm_delivery_timer();
        if (!parsed.errors.empty()) {
            ingest_log_->warn("rejected {} of {} alerts from {} on /api/v2/alerts: {}", parsed.errors.size(),
                              parsed.errors.size() + accepted, request.remote_address, parsed.errors.front());
            std::string joined;
            for (std::size_t i = 0; i < parsed.errors.size() && i < 20; ++i) {
                joined += (i == 0 ? "" : "; ") + parsed.errors[i];
            }
            return v2_error(400, fmt::format("{} of {} alerts were invalid and dropped, the rest were kept: {}",
                                             parsed.errors.size(), parsed.errors.size() + accepted, joined));
        }
        return http_response::json(200, "");
    }

    http_response list_am_alerts(const http_request& request)
    {
        auto query = parse_query(request.query);
        if (!query) {
            return v2_error(400, "invalid %XX escape in the query string");
        }
        std::vector<std::string> filters;
        bool show_active = true;
        bool show_silenced = true;
        bool show_inhibited = true;
        std::optional<label_matcher> receiver;
        for (auto& [name, value] : *query) {
            auto flag = [&](bool& into) -> bool {
                if (value != "true" && value != "false") {
                    return false;
                }
                into = value == "true";
                return true;
            };
            if (name == "filter") {
                filters.push_back(std::move(value));
            } else if ((name == "active" && !flag(show_active)) || (name == "silenced" && !flag(show_silenced)) ||
                       (name == "inhibited" && !flag(show_inhibited)) ||
                       (name == "unprocessed" && value != "true" && value != "false")) {
                return v2_error(400, fmt::format("{} must be true or false", name));
            } else if (name == "receiver") {
                std::string error;
                receiver = label_matcher::make("receiver", match_op::regex, value, error);
                if (!receiver) {
                    return v2_error(400, error);
                }
            }
        }
        std::string error;
        auto matchers = parse_filter_matchers(filters, error);
        if (!matchers) {
            return v2_error(400, error);
        }
        const dispatcher& d = delivery_->groups();
        std::unordered_map<std::uint64_t, std::vector<std::string>> receivers;
        for (const auto& g : d.groups()) {
            for (const auto id : g.alert_ids) {
                auto& names = receivers[id];
                if (std::find(names.begin(), names.end(), g.receiver) == names.end()) {
                    names.push_back(g.receiver);
                }
            }
        }
        const time_ms now = clock_.now_ms();
        const auto resolve_timeout = config_.routing->global.resolve_timeout;
        auto list = nlohmann::json::array();
        for (const alert& a : d.alerts()) {
            if (a.resolved_at(now)) {
                continue;
            }
            const bool pass = std::all_of(matchers->begin(), matchers->end(),
                                          [&](const label_matcher& m) { return m.matches(a.labels); });
            if (!pass) {
                continue;
            }
            const std::vector<std::string>& names = receivers[a.id];
            if (receiver && std::none_of(names.begin(), names.end(),
                                         [&](const std::string& n) { return receiver->matches(n); })) {
                continue;
            }
            const mute_status status = d.mute_status_of(a.id, a.labels);
            const bool silenced = !status.silenced_by.empty();
            const bool inhibited = !status.inhibited_by.empty();
            if ((!status.muted() && !show_active) || (silenced && !show_silenced) || (inhibited && !show_inhibited)) {
                continue;
            }
            list.push_back(gettable_alert(a, status, names, now, resolve_timeout));
        }
        return http_response::json(200, list.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }

    http_response list_am_groups()
    {
        const dispatcher& d = delivery_->groups();
        const time_ms now = clock_.now_ms();
        const auto resolve_timeout = config_.routing->global.resolve_timeout;
        auto list = nlohmann::json::array();
        for (const auto& g : d.groups()) {
            nlohmann::json labels = nlohmann::json::object();
            for (const auto& l : g.group_labels.items()) {
                labels[l.name] = l.value;
            }
            auto alerts = nlohmann::json::array();
            for (const auto id : g.alert_ids) {
                const alert* a = d.find(id);
                if (a == nullptr || a->resolved_at(now)) {
                    continue;
                }
                alerts.push_back(gettable_alert(*a, d.mute_status_of(id, a->labels), {g.receiver}, now,
                                                resolve_timeout));
            }
            if (!alerts.empty()) {
                list.push_back({{"labels", std::move(labels)},
                                {"receiver", {{"name", g.receiver}}},
                                {"alerts", std::move(alerts)}});
            }
        }
        return http_response::json(200, list.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }

    // Alertmanager's status document; there is no cluster, so its status is "disabled".
    http_response am_status()
    {
        std::string text;
        if (std::ifstream in{options_.config_path}; in) {
            std::ostringstream buffer;
            buffer << in.rdbuf();
            text = redacted_config(buffer.str());
        }
        const nlohmann::json doc = {
            {"cluster", {{"status", "disabled"}, {"peers", nlohmann::json::array()}}},
            {"versionInfo",
             {{"version", tocsin_version},
              {"revision", ""},
              {"branch", ""},
              {"buildUser", ""},
              {"buildDate", ""},
              {"goVersion", "none (tocsind is written in C++)"}}},
            {"config", {{"original", text}}},
            {"uptime", format_rfc3339_ms(static_cast<time_ms>(start_time_ * 1000))},
        };
        return http_response::json(200, doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }

    // ---- silences ----

    // Writes the change that an API call made, before the response goes out. When the write
    // fails the change is undone, so a silence is never confirmed without being durable.
    std::optional<http_response> commit_silence(const std::vector<std::pair<std::string, std::optional<silence>>>& before)
    {
        silence_changes changes = silences_.take_changes();
        std::string error;
        if (store_->apply_silence_changes(changes, error)) {
            return std::nullopt;
        }
        for (const auto& [id, previous] : before) {
            silences_.revert(id, previous);
        }
        silence_log_->error("cannot save a silence change, so it was not applied: {}", error);
        auto response = v2_error(503, "the silence could not be saved, so it was not applied; retry later (see the "
                                      "tocsind log)");
        response.headers.emplace_back("Retry-After", "5");
        return response;
    }

    // Errors of the v2 API are JSON strings, as Alertmanager sends them.
    static http_response v2_error(int status, const std::string& message)
    {
        return http_response::json(status, nlohmann::json(message).dump(-1, ' ', false,
                                                                        nlohmann::json::error_handler_t::replace));
    }

    http_response list_silences(const http_request& request)
    {
        auto query = parse_query(request.query);
        if (!query) {
            return v2_error(400, "invalid %XX escape in the query string");
        }
        std::vector<std::string> filters;
        for (auto& [name, value] : *query) {
            if (name == "filter") {
                filters.push_back(std::move(value));
            }
        }
        std::string error;
        auto matchers = parse_filter_matchers(filters, error);
        if (!matchers) {
            return v2_error(400, error);
        }
        const time_ms now = clock_.now_ms();
        auto list = nlohmann::json::array();
        for (const silence* s : silences_.list(*matchers, now)) {
            list.push_back(gettable_silence(*s, now));
        }
        return http_response::json(200, list.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }

    // ---- audit log and runbooks ----

    std::string audit_log_path(const main_config& main) const
    {
        return main.runbooks.audit_log.empty() ? main.state_dir + "/audit.log" : main.runbooks.audit_log;
    }

    // The audit log records automated responses and people's changes (threshold overrides). A
    // log that does not verify stops the start: it must be moved aside by a person.
    bool open_audit_log()
    {
        std::string error;
        const std::string path = audit_log_path(config_.main);
        audit_ = runbooks::audit_log::open(path, clock_, error);
        if (!audit_) {
            log_->error("cannot open the audit log {}: {}; keep the file and its .head for inspection, and move both aside to start a new log", path, error);
            return false;
        }
        // The head (seq and hash) in the daemon's log, so a copy of it lives outside the file.
        log_->info("audit log {}: {} records, head {}", path, audit_->last_seq(), audit_->last_hash());
        return true;
    }

    void append_audit(const std::string& kind, const std::string& actor, nlohmann::json details)
    {
        if (!audit_) {
            return;
        }
        try {
            audit_->append(kind, actor, std::move(details));
        } catch (const std::exception& e) {
            ++audit_failures_;
            log_->error("cannot append to the audit log {}: {}", audit_->path(), e.what());
        }
    }

    static std::string runbooks_digest(const loaded_config& c)
    {
        std::string text;
        for (const auto& path : c.runbook_file_paths) {
            text += path + '\0' + file_digest(path) + '\0';
        }
        const auto& r = c.main.runbooks;
        for (const auto& p : r.allowed_programs) {
            text += p + '\0';
        }
        text += fmt::format("{}|{}|{}|{}|{}", r.dry_run, r.output_limit, r.forget_after.count(), r.default_receiver,
                            c.routing->root.receiver);
        return text;
    }

    // Builds the runbook engine for `c` and resumes what the previous process left. Without
    // runbooks there is no engine. Returns false when the journal cannot be opened.
    bool start_runbooks(const loaded_config& c)
    {
        runbooks_digest_ = runbooks_digest(c);
        if (c.runbooks.empty()) {
            return true;
        }
        runbook_service_options options;
        options.journal_path = c.main.state_dir + "/runbooks.db";
        options.audit = audit_.get();
        options.allowed_programs = c.main.runbooks.allowed_programs;
        options.dry_run = c.main.runbooks.dry_run;
        options.output_limit = c.main.runbooks.output_limit;
        options.forget_after = c.main.runbooks.forget_after;
        options.default_receiver =
            c.main.runbooks.default_receiver.empty() ? c.routing->root.receiver : c.main.runbooks.default_receiver;
        runbook_callbacks callbacks;
        callbacks.send = [this](const runbook_message& m, std::string& error) { return send_runbook_message(m, error); };
        callbacks.annotate = [this](std::uint64_t id, const std::string& text, bool announce) {
            delivery_->annotate(id, std::string(runbook_actions_annotation), text, announce);
        };
        callbacks.current = [this](std::uint64_t id) { return delivery_->groups().find(id); };
        callbacks.lookup = [this](std::uint64_t fingerprint, time_ms episode) -> std::optional<std::uint64_t> {
            for (const auto& a : delivery_->groups().alerts()) {
                if (a.fingerprint() == fingerprint && a.starts_at == episode) {
                    return a.id;
                }
            }
            return std::nullopt;
        };
        callbacks.rolled_back = [this](const runbook_rollback& r) { send_change_events(r); };
        callbacks.log = [this](const std::string& line) { runbook_log_->info("{}", line); };
        std::string error;
        runbooks_ = runbook_service::open(c.runbooks, clock_, std::move(options), std::move(callbacks), error);
        if (!runbooks_) {
            log_->error("cannot start runbooks: {}", error);
            return false;
        }
        for (const auto& line : runbooks_->recover()) {
            runbook_log_->warn("{}", line);
        }
        delivery_->set_alert_observer([this](const alert& a, const mute_status& mute) {
            if (runbooks_) {
                runbooks_->observe(a, mute);
            }
        });
        delivery_->set_escalation_observer([this](const alert& a, std::uint32_t level, const mute_status& mute) {
            if (runbooks_) {
                runbooks_->escalated(a, level, mute);
            }
        });
        runbook_log_->info("{} runbooks loaded from {} files{}", c.runbooks.size(), c.runbook_file_paths.size(),
                           c.main.runbooks.dry_run ? "; runbooks.dry_run is on: steps are logged, nothing runs" : "");
        return true;
    }

    void tick_runbooks()
    {
        if (pending_runbooks_ && (!runbooks_ || runbooks_->engine().idle())) {
            // Steps that were running have ended and their results are in; the new engine
            // recovers from the same journal.
            if (runbooks_) {
                runbooks_->tick();
            }
            runbooks_.reset();
            delivery_->set_alert_observer(nullptr);
            delivery_->set_escalation_observer(nullptr);
            auto next = std::move(pending_runbooks_);
            pending_runbooks_.reset();
            if (!start_runbooks(*next)) {
                log_->error("runbooks are off until the next successful reload or restart");
            }
        }
        if (runbooks_) {
            runbooks_->tick();
        }
    }

    // A reload that changes runbooks replaces the engine once no step is running, so a running
    // step is never cut off and recorded as interrupted.
    void replace_runbooks(const loaded_config& next)
    {
        if (runbooks_digest(next) == runbooks_digest_) {
            return;
        }
        pending_runbooks_ = std::make_unique<loaded_config>(next);
        runbook_log_->info("runbooks changed: {} runbooks from {} files take over once no step is running",
                           next.runbooks.size(), next.runbook_file_paths.size());
    }

    // Lets steps in flight end within shutdown_timeout, so the journal records their results.
    void stop_runbooks()
    {
        if (!runbooks_) {
            return;
        }
        const auto deadline = std::chrono::steady_clock::now() + config_.main.shutdown_timeout;
        while (!runbooks_->engine().idle() && std::chrono::steady_clock::now() < deadline) {
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        runbooks_->tick();
        if (!runbooks_->engine().idle()) {
            runbook_log_->warn("steps still running after shutdown_timeout; tocsind stops without waiting for them. "
                               "Their programs keep running, and the next start records the steps as interrupted");
            // Destroying the engine would join the worker threads, which wait for their
            // programs: the process exits with them instead.
            static_cast<void>(runbooks_.release());
            return;
        }
        runbooks_.reset();
    }

    bool send_runbook_message(const runbook_message& m, std::string& error)
    {
        direct_message d;
        d.receiver = m.receiver;
        d.key = m.run_id + ":" + m.purpose + (m.step.empty() ? "" : ":" + m.step);
        std::vector<label> labels = {{"alertname", "TocsinRunbook"},
                                     {"runbook", m.runbook},
                                     {"run_id", m.run_id},
                                     {"purpose", m.purpose},
                                     {"severity", m.purpose == "notify" ? "info" : "critical"}};
        if (!m.step.empty()) {
            labels.push_back({"step", m.step});
        }
        if (auto name = m.alert_labels.get("alertname"); !name.empty()) {
            labels.push_back({"alert", std::string(name)});
        }
        d.labels = label_set(std::move(labels));
        d.text = m.text;
        d.starts_at = m.sent_at;
        d.resolved = m.resolved;
        return delivery_->send_direct(d, error);
    }

    // A rollback is a change to the system: it goes to the PagerDuty integrations of the
    // receivers that the alert routes to, as a change event on their service's timeline.
    void send_change_events(const runbook_rollback& r)
    {
        std::vector<std::string> receivers;
        if (r.alert_id != 0) {
            receivers = delivery_->receivers_of(r.alert_id);
        }
        if (receivers.empty()) {
            receivers.push_back(config_.routing->root.receiver);
        }
        change_event e;
        const auto alertname = r.alert_labels.get("alertname");
        e.summary = fmt::format("tocsin runbook {} rolled back{} (step {}, run {})", r.runbook,
                                alertname.empty() ? std::string() : fmt::format(" after {}", alertname), r.step,
                                r.run_id);
        e.source = "tocsin";
        e.timestamp = r.at;
        nlohmann::json labels = nlohmann::json::object();
        for (const auto& l : r.alert_labels.items()) {
            labels[l.name] = l.value;
        }
        e.custom_details = {{"runbook", r.runbook}, {"run_id", r.run_id}, {"step", r.step},
                            {"detail", r.detail},   {"alert_labels", std::move(labels)}};
        e.links.emplace_back(fmt::format("{}/api/v1/runbooks/runs/{}", config_.main.external_url, r.run_id),
                             "Runbook run in tocsin");
        std::string error;
        if (delivery_->send_change_event(receivers, e, error) < 0) {
            runbook_log_->error("cannot queue the PagerDuty change event of run {}: {}", r.run_id, error);
        }
    }

    // ---- model monitoring ----

    static std::string file_digest(const std::string& path)
    {
        std::ifstream in(path, std::ios::binary);
        std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        return std::to_string(std::hash<std::string>{}(text));
    }

    // A reload keeps the windows of monitored models when the schema file is unchanged. Any
    // other change starts them again, because the features they count may differ.
    // NOTE: a changed reference file behind an unchanged schema file is not noticed.
    void replace_models(const loaded_config& next)
    {
        if (!next.models) {
            if (models_) {
                log_->info("model_schemas removed: model monitoring is off");
            }
            models_.reset();
            return;
        }
        const std::string digest = file_digest(next.main.model_schemas);
        if (models_ && next.main.model_schemas == config_.main.model_schemas && digest == models_file_digest_) {
            return;
        }
        if (models_) {
            log_->warn("model schemas changed: the windows of monitored models start again");
        }
        models_ = std::make_unique<model::model_registry>(next.models);
        models_file_digest_ = digest;
    }

    http_response post_model_data(const http_request& request, bool records)
    {
        if (!models_) {
            return http_response::text(404, "model monitoring is off; set model_schemas in the config to a file of "
                                            "model schemas (see docs/MODELS.md)\n");
        }
        const time_ms now = clock_.now_ms();
        const auto& schemas = models_->schemas();
        model::ingest_result result;
        std::vector<model::record_error> errors;
        model::body_status status = model::body_status::ok;
        std::string body_error;
        if (records) {
            auto batch = model::parse_records(request.body, request.header("content-type"), schemas);
            status = batch.status;
            body_error = std::move(batch.body_error);
            errors = std::move(batch.errors);
            if (status == model::body_status::ok) {
                result = models_->add_records(batch.items, now);
            }
        } else {
            auto batch = model::parse_outcomes(request.body, request.header("content-type"), schemas);
            status = batch.status;
            body_error = std::move(batch.body_error);
            errors = std::move(batch.errors);
            if (status == model::body_status::ok) {
                result = models_->add_outcomes(batch.items, now);
            }
        }
        if (status == model::body_status::too_large) {
            return http_response::text(413, body_error + "\n");
        }
        if (status == model::body_status::malformed) {
            return http_response::text(400, body_error + "\n");
        }
        errors.insert(errors.end(), result.errors.begin(), result.errors.end());
        std::sort(errors.begin(), errors.end(), [](const auto& x, const auto& y) { return x.index < y.index; });
        nlohmann::json list = nlohmann::json::array();
        for (const auto& e : errors) {
            list.push_back({{"index", e.index}, {"error", e.message}});
        }
        nlohmann::json body = {{"accepted", result.accepted}, {"duplicates", result.duplicates}, {"errors", list}};
        if (!records) {
            body["joined"] = result.joined;
            body["unmatched"] = result.unmatched;
        }
        // As for Alertmanager's alerts: the valid items are kept, and a batch with errors is a 400
        // that lists them, so a sender notices.
        return http_response::json(errors.empty() ? 200 : 400,
                                   body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }

    // GET /api/v1/models lists the models and their versions; /api/v1/models/<name> gives every
    // current figure of one model.
    http_response model_figures(const std::string& name)
    {
        if (!models_) {
            return http_response::text(404, "model monitoring is off; set model_schemas in the config to a file of "
                                            "model schemas (see docs/MODELS.md)\n");
        }
        models_->tick(clock_.now_ms());
        if (name.empty()) {
            nlohmann::json list = nlohmann::json::array();
            for (const auto& m : models_->schemas().models) {
                list.push_back({{"model", m.name}, {"versions", models_->versions(m.name)}});
            }
            return http_response::json(200, nlohmann::json({{"models", list}}).dump());
        }
        const bool known = std::any_of(models_->schemas().models.begin(), models_->schemas().models.end(),
                                       [&](const auto& m) { return m.name == name; });
        if (!known) {
            return http_response::text(404, fmt::format("no model \"{}\" in the model schemas; GET /api/v1/models "
                                                        "lists them\n",
                                                        truncate_for_message(name)));
        }
        nlohmann::json versions = nlohmann::json::object();
        nlohmann::json totals = nlohmann::json::object();
        for (const auto& row : models_->snapshot()) {
            if (row.model != name) {
                continue;
            }
            const nlohmann::json figure = {{"value", row.value}, {"samples", row.samples}};
            if (row.version.empty()) {
                totals[row.metric] = figure;
            } else if (row.feature.empty()) {
                versions[row.version]["metrics"][row.metric] = figure;
            } else {
                versions[row.version]["features"][row.feature][row.metric] = figure;
            }
        }
        const nlohmann::json body = {{"model", name}, {"versions", versions}, {"join", totals}};
        return http_response::json(200, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }

    // GET /api/v1/models/{model}/versions/{version}/reference?feature=F: the frozen or loaded
    // reference of a feature (of the predictions without `feature`), in the form that a
    // `stored:` reference in the schema reads, so a version's reference can be kept.
    http_response model_reference(std::string_view model_text, std::string_view version_text,
                                  const http_request& request)
    {
        if (!models_) {
            return http_response::text(404, "model monitoring is off; set model_schemas in the config to a file of "
                                            "model schemas (see docs/MODELS.md)\n");
        }
        auto model = percent_decode(model_text);
        auto version = percent_decode(version_text);
        auto query = parse_query(request.query);
        if (!model || !version || !query || model->empty() || version->empty()) {
            return http_response::text(400, "invalid path or query; expected /api/v1/models/<model>/versions/"
                                            "<version>/reference?feature=<name>, with %XX escapes\n");
        }
        std::string feature;
        for (const auto& [name, value] : *query) {
            if (name != "feature") {
                return http_response::text(400, fmt::format("unknown query parameter \"{}\"; expected feature",
                                                            truncate_for_message(name)));
            }
            feature = value;
        }
        auto reference = models_->export_reference(*model, *version, feature);
        if (!reference) {
            return http_response::text(
                404, fmt::format("no reference for model \"{}\" version \"{}\" {}; it has none until its "
                                 "reference period ends, and the model, version and feature must exist\n",
                                 truncate_for_message(*model), truncate_for_message(*version),
                                 feature.empty() ? std::string("predictions")
                                                 : "feature \"" + truncate_for_message(feature) + "\""));
        }
        return http_response::json(200, reference->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }

    // Publishes every figure of the monitored models as a sample of the series
    // tocsin_model{model, version, feature, metric}, every 5 s, so ordinary rules alert on them.
    void publish_model_figures()
    {
        if (!models_) {
            return;
        }
        const auto now = std::chrono::steady_clock::now();
        if (now - last_model_publish_ < std::chrono::seconds(5)) {
            return;
        }
        last_model_publish_ = now;
        const time_ms at = clock_.now_ms();
        models_->tick(at);
        for (const auto& row : models_->snapshot()) {
            // Sorted by name, and without empty values, as ingest() needs.
            std::vector<label_view> labels{{"__name__", "tocsin_model"}};
            if (!row.feature.empty()) {
                labels.push_back({"feature", row.feature});
            }
            labels.push_back({"metric", row.metric});
            labels.push_back({"model", row.model});
            if (!row.version.empty()) {
                labels.push_back({"version", row.version});
            }
            reject_reason reason{};
            ingest_detail::ingest_sample(engine_, labels, at, row.value, counters_, reason, nullptr);
        }
        flush_events();
    }

    // Serves /api/v1/alerts/{id}/ack. GET returns the acknowledgement, POST records one for a
    // firing alert (which stops its escalation) and DELETE withdraws it. POST and DELETE need an
    // admin token, as silences do, and respond once the change is saved.
    // Runbook runs and the audit log can reveal what tocsin did and lets a caller approve
    // risky steps, so every endpoint needs an admin token, and none works without one.
    std::variant<std::string, http_response> authorize_admin(const http_request& request, std::string_view what)
    {
        const auto& auth = config_.main.auth;
        if (auth.admin_tokens.empty()) {
            return http_response::text(
                403, fmt::format("{} is disabled because no admin token is configured; add auth.admin_token_files "
                                 "to {}, reload, and send Authorization: Bearer <token>\n",
                                 what, options_.config_path));
        }
        std::size_t matched = 0;
        if (auto denied = check_token(request, auth.admin_tokens, &matched)) {
            return *denied;
        }
        return token_name(auth.admin_token_files, matched);
    }

    static std::string dump(const nlohmann::json& j)
    {
        return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }

    http_response handle_runbooks(const http_request& request)
    {
        const auto& path = request.path;
        const bool is_get = request.method == "GET" || request.method == "HEAD";
        if (path == "/api/v1/audit") {
            if (!is_get) {
                return method_not_allowed("GET, HEAD");
            }
            auto auth = authorize_admin(request, "the audit log API");
            if (auto* denied = std::get_if<http_response>(&auth)) {
                return *denied;
            }
            return audit_response(audit_log_path(config_.main), request.query, clock_.now_ms());
        }
        auto auth = authorize_admin(request, "the runbook API");
        if (auto* denied = std::get_if<http_response>(&auth)) {
            return *denied;
        }
        if (!runbooks_) {
            if (path == "/api/v1/runbooks" || path == "/api/v1/runbooks/runs") {
                return is_get ? http_response::json(200, path == "/api/v1/runbooks" ? "[]" : R"({"runs":[],"skips":[]})")
                              : method_not_allowed("GET, HEAD");
            }
            return http_response::text(404, fmt::format("no runbooks are configured; add runbooks.files to {}\n",
                                                        options_.config_path));
        }
        auto& engine = runbooks_->engine();
        if (path == "/api/v1/runbooks") {
            return is_get ? http_response::json(200, dump(runbook_list_json(engine.runbooks())))
                          : method_not_allowed("GET, HEAD");
        }
        if (path == "/api/v1/runbooks/runs") {
            if (!is_get) {
                return method_not_allowed("GET, HEAD");
            }
            std::string error;
            const runs_query q = parse_runs_query_string(request.query, error);
            if (!error.empty()) {
                return http_response::text(400, error + "\n");
            }
            return http_response::json(200, dump(runs_response(engine.runs(), engine.skips(), q)));
        }
        const run_path target = parse_run_path(path);
        if (!target.matched) {
            return http_response::text(404, "unknown runbook endpoint; expected /api/v1/runbooks, "
                                            "/api/v1/runbooks/runs or /api/v1/runbooks/runs/<id>[/approve|reject|cancel]\n");
        }
        if (target.status != 200) {
            return http_response::text(target.status, target.error + "\n");
        }
        if (target.action == run_action::none) {
            if (!is_get) {
                return method_not_allowed("GET, HEAD");
            }
            auto run = engine.find(target.run_id);
            if (!run) {
                return http_response::text(404, fmt::format("no run {}; GET /api/v1/runbooks/runs lists them\n",
                                                            target.run_id));
            }
            return http_response::json(200, dump(run_json(*run)));
        }
        if (request.method != "POST") {
            return method_not_allowed("POST");
        }
        const run_action_request parsed = parse_run_action_request(target.action, request.body);
        if (parsed.status != 200) {
            return http_response::text(parsed.status, parsed.error + "\n");
        }
        const auto before = engine.find(target.run_id);
        std::string error;
        bool done = false;
        switch (target.action) {
        case run_action::approve: done = engine.approve(target.run_id, parsed.by, parsed.reason, error); break;
        case run_action::reject: done = engine.reject(target.run_id, parsed.by, parsed.reason, error); break;
        case run_action::cancel: done = engine.cancel(target.run_id, parsed.by, parsed.reason, error); break;
        case run_action::none: break;
        }
        if (!done) {
            return http_response::text(run_action_error_status(before, target.action), error + "\n");
        }
        runbook_log_->info("run {} {} by {:?} (token {}){}", target.run_id,
                           target.action == run_action::approve ? "approved"
                           : target.action == run_action::reject ? "rejected"
                                                                 : "cancelled",
                           parsed.by, std::get<std::string>(auth),
                           parsed.reason.empty() ? std::string() : fmt::format(": {:?}", parsed.reason));
        runbooks_->tick();
        flush_events();
        auto after = engine.find(target.run_id);
        return after ? http_response::json(200, dump(run_json(*after)))
                     : http_response::text(200, "done\n");
    }

    http_response handle_ack(const http_request& request, std::uint64_t id)
    {
        const auto& method = request.method;
        if (method == "GET" || method == "HEAD") {
            const alert* current = delivery_->groups().find(id);
            if (current == nullptr) {
                return http_response::text(404, fmt::format("no alert with id {:016x}; GET /api/v1/alerts or "
                                                            "/api/v2/alerts lists the current ones\n",
                                                            id));
            }
            return http_response::json(200, ack_json(*current).dump(-1, ' ', false,
                                                                     nlohmann::json::error_handler_t::replace));
        }
        if (method != "POST" && method != "DELETE") {
            return method_not_allowed("GET, HEAD, POST, DELETE");
        }
        if (auto denied = check_token(request, config_.main.auth.admin_tokens)) {
            return *denied;
        }
        ack_request parsed;
        if (method == "POST") {
            parsed = parse_ack_request(request.body);
            if (!parsed.error.empty()) {
                return http_response::text(400, parsed.error + "\n");
            }
        }
        bool saved = false;
        std::string error;
        const ack_outcome outcome = delivery_->acknowledge(id, parsed.by, parsed.comment, saved, error);
        arm_delivery_timer();
        if (outcome == ack_outcome::not_found) {
            return http_response::text(404, fmt::format("no alert with id {:016x}; GET /api/v1/alerts or "
                                                        "/api/v2/alerts lists the current ones\n",
                                                        id));
        }
        if (outcome == ack_outcome::resolved) {
            return http_response::text(409, fmt::format("alert {:016x} is resolved; only a firing alert can be "
                                                        "acknowledged\n",
                                                        id));
        }
        if (!saved) {
            // The change stays in memory and is written with the next flush.
            alert_log_->error("cannot save the acknowledgement of alert {:016x}, will retry: {}", id, error);
        }
        const alert* current = delivery_->groups().find(id);
        if (method == "POST") {
            alert_log_->info("alert {:016x} acknowledged by {}", id, parsed.by);
        } else {
            alert_log_->info("acknowledgement of alert {:016x} withdrawn", id);
        }
        append_audit("acknowledgement", method == "POST" ? parsed.by : "api",
                     {{"alert_id", fmt::format("{:016x}", id)},
                      {"labels", current->labels.to_string()},
                      {"action", method == "POST" ? "acknowledge" : "withdraw"},
                      {"comment", parsed.comment}});
        return http_response::json(200, ack_json(*current).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }

    http_response post_silence(const http_request& request)
    {
        if (auto denied = check_token(request, config_.main.auth.admin_tokens)) {
            return *denied;
        }
        silence_body parsed = parse_postable_silence(request.body);
        if (!parsed.error.empty()) {
            return v2_error(parsed.status, parsed.error);
        }
        const time_ms now = clock_.now_ms();
        std::vector<std::pair<std::string, std::optional<silence>>> before;
        const std::string previous_id = parsed.value.id;
        if (!previous_id.empty()) {
            if (const silence* previous = silences_.find(previous_id)) {
                before.emplace_back(previous_id, *previous);
            }
        }
        silence_result result = silences_.set(std::move(parsed.value), now);
        if (!result.ok()) {
            return v2_error(result.status, result.error);
        }
        if (result.id != previous_id) {
            before.emplace_back(result.id, std::nullopt);
        }
        if (auto failed = commit_silence(before)) {
            return *failed;
        }
        const silence& saved = *silences_.find(result.id);
        silence_log_->info("silence {} set by {} from {}: {} until {} ({}){}", saved.id, saved.created_by,
                           request.remote_address, describe_matchers(saved), format_rfc3339_ms(saved.ends_at),
                           saved.comment, previous_id.empty() || previous_id == saved.id
                                              ? std::string()
                                              : fmt::format("; replaces {}", previous_id));
        nlohmann::json body = {{"silenceID", result.id}};
        return http_response::json(200, body.dump());
    }

    http_response handle_silence(const http_request& request, const std::string& id)
    {
        const auto& method = request.method;
        if (method == "GET" || method == "HEAD") {
            const silence* s = silences_.find(id);
            if (s == nullptr) {
                return v2_error(404, fmt::format("silence {} not found", truncate_for_message(id)));
            }
            return http_response::json(200, gettable_silence(*s, clock_.now_ms())
                                                .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
        }
        if (method != "DELETE") {
            return method_not_allowed("GET, HEAD, DELETE");
        }
        if (auto denied = check_token(request, config_.main.auth.admin_tokens)) {
            return *denied;
        }
        std::optional<silence> previous;
        if (const silence* s = silences_.find(id)) {
            previous = *s;
        }
        const silence_result result = silences_.expire(id, clock_.now_ms());
        if (!result.ok()) {
            return v2_error(result.status, truncate_for_message(result.error));
        }
        if (auto failed = commit_silence({{id, previous}})) {
            return *failed;
        }
        silence_log_->info("silence {} expired from {}: {}", id, request.remote_address,
                           describe_matchers(*silences_.find(id)));
        return http_response::json(200, "");
    }

    static std::string describe_matchers(const silence& s)
    {
        std::string out = "{";
        for (std::size_t i = 0; i < s.matchers.size(); ++i) {
            out += (i == 0 ? "" : ", ") + s.matchers[i].to_string();
        }
        return out + "}";
    }

    // ---- HTTP ----

    http_response handle(const http_request& request)
    {
        auto started = std::chrono::steady_clock::now();
        endpoint which = endpoint::other;
        http_response response;
        if (route_prefix_.empty()) {
            response = route(request, which);
        } else if (request.path == route_prefix_ || request.path.starts_with(route_prefix_ + "/")) {
            http_request inner = request;
            inner.path = request.path == route_prefix_ ? "/" : request.path.substr(route_prefix_.size());
            response = route(inner, which);
        } else {
            response = http_response::text(404, "not found: every endpoint is under " + route_prefix_ + "\n");
        }
        auto& stats = endpoint_stats_[static_cast<std::size_t>(which)];
        stats.latency.observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
        ++stats.by_status[response.status];
        return response;
    }

    http_response route(const http_request& request, endpoint& which)
    {
        const auto& path = request.path;
        const auto& method = request.method;
        const bool is_get = method == "GET" || method == "HEAD";

        if (path == "/api/v1/write") {
            which = endpoint::write;
            if (method != "POST") {
                return method_not_allowed("POST");
            }
            if (auto denied = check_token(request, config_.main.auth.write_tokens)) {
                return *denied;
            }
            auto outcome = ingest_remote_write(request.body, request.header("content-type"),
                                               request.header("content-encoding"), engine_,
                                               config_.main.ingest, counters_);
            return finish_ingest("remote_write", request, outcome);
        }
        if (path == "/api/v1/push") {
            which = endpoint::push;
            if (method != "POST") {
                return method_not_allowed("POST");
            }
            if (auto denied = check_token(request, config_.main.auth.write_tokens)) {
                return *denied;
            }
            auto outcome = ingest_json(request.body, engine_, config_.main.ingest, counters_, clock_.now_ms());
            return finish_ingest("push", request, outcome);
        }
        if (path == "/api/v1/alerts") {
            which = endpoint::alerts;
            if (!is_get) {
                return method_not_allowed("GET, HEAD");
            }
            return http_response::json(200, alerts_json(engine_.alerts(), [this](const alert_snapshot& a) {
                                           return delivery_->groups().mute_status_of(a.id, a.labels);
                                       }));
        }
        if (path == "/api/v1/runbooks" || path.starts_with("/api/v1/runbooks/") || path == "/api/v1/audit") {
            which = endpoint::other;
            return handle_runbooks(request);
        }
        bool bad_ack_id = false;
        if (auto id = ack_path_id(path, bad_ack_id); id || bad_ack_id) {
            which = endpoint::alerts;
            if (bad_ack_id) {
                return http_response::text(400, "invalid alert id in the path; expected /api/v1/alerts/<id>/ack with "
                                                "the 16 hex digits of the id that GET /api/v1/alerts shows\n");
            }
            return handle_ack(request, *id);
        }
        if (path == "/api/v1/records" || path == "/api/v1/outcomes") {
            which = endpoint::push;
            if (method != "POST") {
                return method_not_allowed("POST");
            }
            if (auto denied = check_token(request, config_.main.auth.write_tokens)) {
                return *denied;
            }
            return post_model_data(request, path == "/api/v1/records");
        }
        if (path == "/api/v1/models" || path.starts_with("/api/v1/models/")) {
            which = endpoint::other;
            if (!is_get) {
                return method_not_allowed("GET, HEAD");
            }
            const std::string_view rest = std::string_view(path).substr(std::string_view("/api/v1/models").size());
            if (const auto versions = rest.find("/versions/"); versions != std::string_view::npos &&
                                                                rest.ends_with("/reference")) {
                const std::string_view version = rest.substr(
                    versions + 10, rest.size() - versions - 10 - std::string_view("/reference").size());
                return model_reference(rest.substr(1, versions - 1), version, request);
            }
            auto name = percent_decode(rest.empty() ? rest : rest.substr(1));
            if (!name) {
                return http_response::text(400, "invalid model name in the path; expected /api/v1/models/<name> with "
                                                "%XX escapes for reserved characters\n");
            }
            return model_figures(*name);
        }
        if (path == "/api/v1/rules") {
            which = endpoint::rules;
            if (!is_get) {
                return method_not_allowed("GET, HEAD");
            }
            return http_response::json(
                200, rules_json(*config_.rules, engine_.rule_statistics(), engine_.alerts(), &overrides_));
        }
        if (path == "/api/v1/overrides") {
            which = endpoint::overrides;
            if (!is_get) {
                return method_not_allowed("GET, HEAD");
            }
            return http_response::json(200, overrides_json(overrides_, *config_.rules));
        }
        if (path == "/api/v1/report/noise") {
            which = endpoint::other;
            if (!is_get) {
                return method_not_allowed("GET, HEAD");
            }
            return noise_report_response(*store_, request.query, clock_.now_ms(), config_.main.history_retention);
        }
        if (auto rule_name = override_path_rule(path)) {
            which = endpoint::overrides;
            return handle_override(request, *rule_name);
        }
        if (path == "/api/v2/alerts") {
            which = endpoint::alerts;
            if (is_get) {
                return list_am_alerts(request);
            }
            if (method != "POST") {
                return method_not_allowed("GET, HEAD, POST");
            }
            if (auto denied = check_token(request, config_.main.auth.write_tokens)) {
                return *denied;
            }
            return post_am_alerts(request);
        }
        if (path == "/api/v2/alerts/groups") {
            which = endpoint::alerts;
            if (!is_get) {
                return method_not_allowed("GET, HEAD");
            }
            return list_am_groups();
        }
        if (path == "/api/v2/receivers") {
            which = endpoint::other;
            if (!is_get) {
                return method_not_allowed("GET, HEAD");
            }
            auto list = nlohmann::json::array();
            for (const auto& r : config_.routing->receivers) {
                list.push_back({{"name", r.name}});
            }
            return http_response::json(200, list.dump());
        }
        if (path == "/api/v2/status") {
            which = endpoint::other;
            if (!is_get) {
                return method_not_allowed("GET, HEAD");
            }
            return am_status();
        }
        if (path == "/api/v2/silences") {
            which = endpoint::silences;
            if (is_get) {
                return list_silences(request);
            }
            if (method != "POST") {
                return method_not_allowed("GET, HEAD, POST");
            }
            return post_silence(request);
        }
        if (path.starts_with("/api/v2/silence/")) {
            which = endpoint::silences;
            auto id = percent_decode(std::string_view(path).substr(std::string_view("/api/v2/silence/").size()));
            if (!id || id->empty()) {
                return v2_error(400, "invalid silence id in the path; expected /api/v2/silence/<id>");
            }
            return handle_silence(request, *id);
        }
        if (path == "/metrics") {
            which = endpoint::metrics;
            if (!is_get) {
                return method_not_allowed("GET, HEAD");
            }
            auto response = http_response::text(200, render_metrics());
            response.content_type = "text/plain; version=0.0.4; charset=utf-8";
            return response;
        }
        if (path == "/-/healthy") {
            which = endpoint::health;
            if (!is_get) {
                return method_not_allowed("GET, HEAD");
            }
            return http_response::text(200, "OK\n");
        }
        if (path == "/-/ready") {
            which = endpoint::health;
            if (!is_get) {
                return method_not_allowed("GET, HEAD");
            }
            if (!ready_ || stopping_) {
                return http_response::text(503, "not ready\n");
            }
            return http_response::text(200, "OK\n");
        }
        if (path == "/-/reload") {
            which = endpoint::reload;
            if (method != "POST" && method != "PUT") {
                return method_not_allowed("POST, PUT");
            }
            if (auto denied = check_token(request, config_.main.auth.admin_tokens)) {
                return *denied;
            }
            auto result = reload("HTTP");
            if (!result.ok) {
                return http_response::text(400, "failed to reload config:\n" + result.errors);
            }
            return http_response::text(200, "");
        }
        return http_response::text(404, "not found: " + truncate_for_message(path) +
                                            "; endpoints: /api/v1/write, /api/v1/push, /api/v1/alerts, "
                                            "/api/v1/alerts/{id}/ack, /api/v1/rules, /api/v1/rules/{name}/override, "
                                            "/api/v1/overrides, /api/v1/report/noise, /api/v1/records, "
                                            "/api/v1/outcomes, /api/v1/models, /api/v2/alerts, /api/v2/alerts/groups, "
                                            "/api/v2/receivers, /api/v2/status, /api/v2/silences, "
                                            "/api/v2/silence/{id}, /metrics, /-/healthy, /-/ready, /-/reload\n");
    }

    // Truncates an echoed request path to 200 bytes for responses and logs.
    static std::string truncate_for_message(const std::string& text)
    {
        constexpr std::size_t max_bytes = 200;
        if (text.size() <= max_bytes) {
            return text;
        }
        std::size_t cut = max_bytes;
        // Back off to a UTF-8 boundary so the message stays valid text.
        while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xc0) == 0x80) {
            --cut;
        }
        return text.substr(0, cut) + "...";
    }

    static http_response method_not_allowed(const char* allowed)
    {
        auto response = http_response::text(405, std::string("method not allowed; use ") + allowed + "\n");
        response.headers.emplace_back("Allow", allowed);
        return response;
    }

    // Returns a 401 response when tokens are configured and the request carries none of them.
    // Sets `matched` to the index of the token the request carries.
    std::optional<http_response> check_token(const http_request& request, const std::vector<std::string>& tokens,
                                             std::size_t* matched = nullptr)
    {
        if (tokens.empty()) {
            return std::nullopt;
        }
        auto header = request.header("authorization");
        constexpr std::string_view scheme = "Bearer ";
        if (header.size() > scheme.size() && std::equal(scheme.begin(), scheme.end(), header.begin(),
                                                        [](char a, char b) { return std::tolower(a) == std::tolower(b); })) {
            auto presented = header.substr(scheme.size());
            bool match = false;
            for (std::size_t i = 0; i < tokens.size(); ++i) {
                // Every token is compared, so the time does not tell which one matched.
                if (equal_constant_time(presented, tokens[i])) {
                    match = true;
                    if (matched != nullptr) {
                        *matched = i;
                    }
                }
            }
            if (match) {
                return std::nullopt;
            }
        }
        ++unauthorized_requests_;
        auto response = http_response::text(
            401, header.empty() ? "missing bearer token; send Authorization: Bearer <token>\n"
                                : "invalid bearer token; send a token from the configured token files\n");
        response.headers.emplace_back("WWW-Authenticate", "Bearer");
        return response;
    }

    http_response finish_ingest(const char* source, const http_request& request, ingest_outcome& outcome)
    {
        if (!flush_events()) {
            // The samples were evaluated but their alert changes are not on disk yet, so the
            // response is 5xx and the sender retries. A retried sample is then a duplicate and is dropped.
            auto response =
                http_response::text(503, "alert state could not be saved; retry later (see the tocsind log)\n");
            response.headers.emplace_back("Retry-After", "5");
            return response;
        }
        if (outcome.rejected > 0) {
            note_rejection(source, request, outcome);
        }
        http_response response;
        response.status = outcome.http_status;
        response.body = std::move(outcome.body);
        response.content_type = outcome.content_type.empty() ? "text/plain; charset=utf-8" : outcome.content_type;
        return response;
    }

    // Logs rejected samples at most once per 10 s per source, with a count of what was suppressed.
    void note_rejection(const char* source, const http_request& request, const ingest_outcome& outcome)
    {
        auto& window = rejection_windows_[source];
        window.samples += outcome.rejected;
        ++window.requests;
        auto now = std::chrono::steady_clock::now();
        if (now - window.last_log < std::chrono::seconds(10)) {
            return;
        }
        auto first_line = outcome.body.substr(0, outcome.body.find('\n'));
        if (first_line.size() > 300) {
            first_line.resize(300);
        }
        ingest_log_->warn("rejected {} samples in {} {} requests since the last report; latest from {}: {}",
                          window.samples, window.requests, source, request.remote_address, first_line);
        window = rejection_window{};
        window.last_log = now;
    }

    void report_series_limit()
    {
        auto stats = engine_.stats();
        if (stats.series_limit_rejections > reported_series_limit_rejections_) {
            ingest_log_->warn("series limit reached: {} series (limits.max_series = {}); {} new series rejected "
                              "so far; raise limits.max_series or drop high-cardinality labels",
                              stats.series, config_.main.engine.max_series, stats.series_limit_rejections);
            reported_series_limit_rejections_ = stats.series_limit_rejections;
        }
    }

    std::string render_metrics();
    void write_override_metrics(metrics_writer& w) const;

    app_options options_;
    loaded_config config_;
    std::unique_ptr<state_store> store_;
    system_clock clock_;
    engine engine_;
    asio::io_context io_{1};
    asio::signal_set signals_;
    asio::steady_timer tick_timer_;
    asio::steady_timer watchdog_timer_;
    asio::steady_timer drain_timer_;
    asio::steady_timer delivery_timer_;
    std::optional<time_ms> armed_wakeup_;
    http_sender sender_;
    std::unique_ptr<delivery_service> delivery_;
    silence_store silences_{config_.main.silences, random_uuid};
    silence_changes unsaved_silence_changes_; // changes whose write failed, retried at each tick
    std::unique_ptr<http_server> server_;
    std::chrono::microseconds watchdog_interval_{0};
    std::chrono::steady_clock::time_point shutdown_deadline_;
    std::chrono::steady_clock::time_point next_baseline_snapshot_;
    bool baselines_saved_ = true; // the store may hold baselines of an earlier run

    ingest_counters counters_;
    std::vector<alert_event> unsaved_events_;
    std::uint64_t store_write_failures_ = 0;
    std::chrono::steady_clock::time_point last_store_error_log_{};
    std::uint64_t reloads_total_ = 0;
    std::uint64_t reload_failures_ = 0;
    bool last_reload_ok_ = true;
    double last_reload_success_ = 0;
    std::uint64_t unauthorized_requests_ = 0;
    std::chrono::steady_clock::time_point last_memory_trim_{};
    std::unique_ptr<runbooks::audit_log> audit_;
    std::uint64_t audit_failures_ = 0;
    // Declared after delivery_ and audit_: it is destroyed first and uses both.
    std::unique_ptr<runbook_service> runbooks_; // null without runbooks
    std::string runbooks_digest_;
    std::unique_ptr<loaded_config> pending_runbooks_; // a reload's runbooks, waiting for running steps
    std::unique_ptr<model::model_registry> models_; // null without model_schemas
    std::string models_file_digest_;
    std::chrono::steady_clock::time_point last_model_publish_{};
    std::uint64_t reported_series_limit_rejections_ = 0;
    std::array<endpoint_stats, static_cast<std::size_t>(endpoint::count_)> endpoint_stats_{};
    struct rejection_window {
        std::uint64_t samples = 0;
        std::uint64_t requests = 0;
        std::chrono::steady_clock::time_point last_log{};
    };
    std::map<std::string, rejection_window> rejection_windows_;
    std::chrono::steady_clock::time_point alert_log_window_start_{};
    int alert_log_lines_ = 0;
    std::uint64_t alert_log_suppressed_ = 0;
    double start_time_ = now_seconds();
    bool ready_ = false;
    bool stopping_ = false;
    int exit_code_ = 0;

    std::shared_ptr<spdlog::logger> log_ = get_logger("main");
    std::shared_ptr<spdlog::logger> ingest_log_ = get_logger("ingest");
    std::shared_ptr<spdlog::logger> alert_log_ = get_logger("alerts");
    std::shared_ptr<spdlog::logger> override_log_ = get_logger("overrides");
    std::shared_ptr<spdlog::logger> silence_log_ = get_logger("silences");
    std::shared_ptr<spdlog::logger> runbook_log_ = get_logger("runbooks");
    std::string route_prefix_ = route_prefix_of(options_);
    // Threshold overrides in force; the engine runs config_.rules with these applied. Every
    // entry fits config_.rules, because a reload drops the others before it installs new rules.
    override_table overrides_;
};

void daemon_app::write_override_metrics(metrics_writer& w) const
{
    std::vector<std::pair<std::string, tier_change>> changes;
    for (const auto& [name, o] : overrides_.items()) {
        if (const rule* base = file_rule(name)) {
            for (auto& c : tier_changes(o, *base)) {
                changes.emplace_back(name, std::move(c));
            }
        }
    }
    w.family("tocsin_rule_threshold_override", "gauge",
             "The condition threshold an API override sets on a rule's tier, while it applies.");
    for (const auto& [name, c] : changes) {
        if (const tier_override* t = overrides_.find(name)->find(c.level); t != nullptr && t->when_threshold) {
            w.sample("tocsin_rule_threshold_override", {{"rule", name}, {"severity", to_string(c.level)}},
                     c.when_after.threshold);
        }
    }
    w.family("tocsin_rule_recover_threshold_override", "gauge",
             "The recover threshold an API override sets on a rule's tier, while it applies.");
    for (const auto& [name, c] : changes) {
        if (c.recover_after) {
            w.sample("tocsin_rule_recover_threshold_override", {{"rule", name}, {"severity", to_string(c.level)}},
                     c.recover_after->threshold);
        }
    }
    w.family("tocsin_rule_threshold_override_expiry_timestamp_seconds", "gauge",
             "When the API override of a rule's tier expires, in seconds since the Unix epoch.");
    for (const auto& [name, c] : changes) {
        w.sample("tocsin_rule_threshold_override_expiry_timestamp_seconds",
                 {{"rule", name}, {"severity", to_string(c.level)}},
                 static_cast<double>(overrides_.find(name)->expires_at) / 1000.0);
    }
}

std::string daemon_app::render_metrics()
{
    metrics_writer w;
    auto stats = engine_.stats();

    w.family("tocsin_build_info", "gauge", "Build information; the value is always 1.");
    w.sample("tocsin_build_info", {{"version", tocsin_version}}, 1);
    write_process_metrics(w, start_time_);

    w.family("tocsin_samples_ingested_total", "counter", "Samples accepted and evaluated.");
    w.sample("tocsin_samples_ingested_total", static_cast<double>(counters_.samples_accepted));
    w.family("tocsin_samples_rejected_total", "counter", "Samples rejected on ingest, by reason.");
    for (std::size_t i = 0; i < reject_reason_count; ++i) {
        w.sample("tocsin_samples_rejected_total", {{"reason", to_string(static_cast<reject_reason>(i))}},
                 static_cast<double>(counters_.samples_rejected[i]));
    }
    w.family("tocsin_stale_markers_total", "counter", "Prometheus stale markers received.");
    w.sample("tocsin_stale_markers_total", static_cast<double>(counters_.stale_markers));
    w.family("tocsin_samples_non_numeric_total", "counter", "NaN or infinite samples that took no part in comparisons.");
    w.sample("tocsin_samples_non_numeric_total", static_cast<double>(stats.non_numeric_samples));

    w.family("tocsin_series", "gauge", "Series held in memory.");
    w.sample("tocsin_series", static_cast<double>(stats.series));
    w.family("tocsin_series_limit", "gauge", "The configured limits.max_series.");
    w.sample("tocsin_series_limit", static_cast<double>(config_.main.engine.max_series));
    w.family("tocsin_series_limit_rejections_total", "counter", "New series rejected by limits.max_series.");
    w.sample("tocsin_series_limit_rejections_total", static_cast<double>(stats.series_limit_rejections));
    w.family("tocsin_engine_state_bytes", "gauge", "Estimated memory held by the rule engine.");
    w.sample("tocsin_engine_state_bytes", static_cast<double>(stats.state_bytes));
    w.family("tocsin_detector_bytes", "gauge", "The part of tocsin_engine_state_bytes held by detectors of dynamic rules.");
    w.sample("tocsin_detector_bytes", static_cast<double>(stats.detector_bytes));
    w.family("tocsin_baseline_adaptations_total", "counter",
             "Baselines of dynamic rules rebuilt after a shift lasted adapt_after.");
    w.sample("tocsin_baseline_adaptations_total", static_cast<double>(stats.baseline_adaptations));

    auto rule_stats = engine_.rule_statistics();
    w.family("tocsin_rules", "gauge", "Rules loaded.");
    w.sample("tocsin_rules", static_cast<double>(config_.rules->rules.size()));
    w.family("tocsin_rule_alert_limit_exceeded", "gauge", "1 when a rule has more alerts than limits.per_rule_max_alerts.");
    for (const auto& r : rule_stats) {
        w.sample("tocsin_rule_alert_limit_exceeded", {{"rule", r.name}}, r.limit_exceeded ? 1 : 0);
    }
    w.family("tocsin_rule_series_warming_up", "gauge",
             "Series of a dynamic rule whose baseline holds fewer than min_samples values; they cannot fire yet.");
    for (const auto& r : engine_.rules().rules) {
        if (!r->dynamic) {
            continue;
        }
        for (const auto& st : rule_stats) {
            if (st.name == r->name) {
                w.sample("tocsin_rule_series_warming_up", {{"rule", st.name}}, static_cast<double>(st.warming_up));
                break;
            }
        }
    }
    write_override_metrics(w);
    const auto silence_counts = silences_.counts(clock_.now_ms());
    w.family("tocsin_silences", "gauge", "Silences by state; expired ones are kept for silence_retention.");
    for (const silence_state state : {silence_state::active, silence_state::pending, silence_state::expired}) {
        w.sample("tocsin_silences", {{"state", to_string(state)}},
                 static_cast<double>(silence_counts[static_cast<std::size_t>(state)]));
    }

    w.family("tocsin_alert_limit_rejections_total", "counter", "Alerts not created because of limits.max_active_alerts.");
    w.sample("tocsin_alert_limit_rejections_total", static_cast<double>(stats.alert_limit_rejections));

    w.family("tocsin_alerts", "gauge", "Alerts by state and severity.");
    std::array<std::array<std::size_t, 5>, 2> counts{};
    for (const auto& a : engine_.alerts()) {
        if (a.state == alert_state::inactive) {
            continue;
        }
        auto state_index = a.state == alert_state::firing ? 1 : 0;
        counts[state_index][static_cast<std::size_t>(a.level)]++;
    }
    for (int state_index = 0; state_index < 2; ++state_index) {
        for (auto level : {severity::info, severity::warning, severity::critical, severity::page}) {
            w.sample("tocsin_alerts",
                     {{"state", state_index == 1 ? "firing" : "pending"}, {"severity", to_string(level)}},
                     static_cast<double>(counts[state_index][static_cast<std::size_t>(level)]));
        }
    }

    w.family("tocsin_config_last_reload_successful", "gauge", "1 if the last configuration reload succeeded.");
    w.sample("tocsin_config_last_reload_successful", last_reload_ok_ ? 1 : 0);
    w.family("tocsin_config_last_reload_success_timestamp_seconds", "gauge", "Time of the last successful reload (or start).");
    w.sample("tocsin_config_last_reload_success_timestamp_seconds", last_reload_success_);
    w.family("tocsin_config_reloads_total", "counter", "Reload attempts (SIGHUP and /-/reload).");
    w.sample("tocsin_config_reloads_total", static_cast<double>(reloads_total_));
    w.family("tocsin_config_reload_failures_total", "counter", "Reload attempts rejected because the new configuration is invalid.");
    w.sample("tocsin_config_reload_failures_total", static_cast<double>(reload_failures_));

    w.family("tocsin_state_store_write_failures_total", "counter", "Failed writes of alert state to the store.");
    w.sample("tocsin_state_store_write_failures_total", static_cast<double>(store_write_failures_));
    w.family("tocsin_state_store_unsaved_changes", "gauge", "Alert changes waiting to be written to the store.");
    w.sample("tocsin_state_store_unsaved_changes", static_cast<double>(unsaved_events_.size()));

    delivery_->write_metrics(w);

    w.family("tocsin_http_unauthorized_requests_total", "counter", "Requests rejected for a missing or wrong bearer token.");
    w.sample("tocsin_http_unauthorized_requests_total", static_cast<double>(unauthorized_requests_));
    auto server_stats = server_->stats();
    w.family("tocsin_http_requests_too_large_total", "counter", "Requests rejected with 413 before reading the body.");
    w.sample("tocsin_http_requests_too_large_total", static_cast<double>(server_stats.rejected_too_large));
    w.family("tocsin_http_requests_malformed_total", "counter", "Requests that were not valid HTTP.");
    w.sample("tocsin_http_requests_malformed_total", static_cast<double>(server_stats.malformed));
    w.family("tocsin_http_requests_total", "counter", "Requests answered, by endpoint and status code.");
    for (std::size_t i = 0; i < endpoint_stats_.size(); ++i) {
        for (const auto& [status, count] : endpoint_stats_[i].by_status) {
            auto code = std::to_string(status);
            w.sample("tocsin_http_requests_total", {{"handler", endpoint_names[i]}, {"code", code}},
                     static_cast<double>(count));
        }
    }
    if (runbooks_) {
        runbooks_->write_metrics(w);
    }
    if (audit_) {
        w.family("tocsin_audit_log_records", "gauge", "Records in the audit log.");
        w.sample("tocsin_audit_log_records", static_cast<double>(audit_->last_seq()));
        w.family("tocsin_audit_log_failures_total", "counter", "Appends to the audit log that failed.");
        w.sample("tocsin_audit_log_failures_total", static_cast<double>(audit_failures_));
    }
    w.family("tocsin_http_request_duration_seconds", "histogram", "Time to handle a request, by endpoint.");
    for (std::size_t i = 0; i < endpoint_stats_.size(); ++i) {
        w.histogram("tocsin_http_request_duration_seconds", {{"handler", endpoint_names[i]}},
                    endpoint_stats_[i].latency);
    }
    return w.text();
}

} // namespace

int run_daemon(const app_options& options)
{
    auto log = get_logger("main");
    get_logger("notify"); // registered before the sender looks it up
    if (!options.log_level.empty() && !set_log_level(options.log_level)) {
        std::cerr << "invalid --log-level \"" << options.log_level << "\"; expected trace, debug, info, warn or error\n";
        return 1;
    }

    diagnostics diags;
    auto config = load_config(options.config_path, diags);
    if (!config) {
        std::cerr << diags.to_string();
        std::cerr << "tocsind: " << diags.size() << " configuration errors; not starting\n";
        return 1;
    }
    if (options.log_level.empty()) {
        set_log_level(config->main.log_level);
    }
    config->main.state_dir = resolve_state_dir(config->main);
    std::string flag_error;
    if (!apply_command_line(options, *config, flag_error)) {
        std::cerr << "tocsind: " << flag_error << "\n";
        return 1;
    }
    for (const auto& flag : options.ignored_flags) {
        log->warn("{} is an Alertmanager flag that tocsind ignores: it runs as one process, with no cluster",
                  flag);
    }

    std::string error;
    auto store = state_store::open(config->main.state_dir, error,
                                   config->main.state_sync == "normal" ? sync_mode::normal : sync_mode::full);
    if (!store) {
        log->error("cannot open the state store: {}", error);
        return 1;
    }

    log->info("starting tocsind {} with {}", tocsin_version, options.config_path);
    daemon_app app(options, std::move(*config), std::move(store));
    return app.run();
}

} // namespace tocsin
