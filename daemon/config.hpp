#pragma once
// The main configuration file and the rule files it names.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model/schema.hpp"
#include "notifiers/delivery.hpp"
#include "notifiers/payload.hpp"
#include "routing/config.hpp"
#include "routing/silences.hpp"
#include "rules/diagnostics.hpp"
#include "rules/engine.hpp"
#include "rules/rule.hpp"
#include "runbooks/model.hpp"

namespace tocsin {

struct ingest_limits {
    std::size_t max_body_bytes = 32u << 20;     // compressed request body; 413 beyond
    std::size_t max_decoded_bytes = 64u << 20;  // snappy-decoded body; 400 beyond
    std::size_t max_samples_per_request = 100'000;
    std::size_t max_labels_per_series = 64;
    std::size_t max_label_name_bytes = 256;
    std::size_t max_label_value_bytes = 4096;
};

// Bearer tokens are secrets: they never reach a log line, a metric or an API response.
struct auth_config {
    std::vector<std::string> write_token_files; // required on /api/v1/write and /api/v1/push
    std::vector<std::string> admin_token_files; // required on /-/reload and the override endpoints
    std::vector<std::string> write_tokens;      // file contents, trailing whitespace removed
    std::vector<std::string> admin_tokens;
};

struct tls_config {
    std::string cert_file; // PEM chain; TLS is on when both files are set
    std::string key_file;
    bool enabled() const { return !cert_file.empty(); }
};

// The `runbooks` section: automated responses (docs/RUNBOOKS.md).
struct runbooks_config {
    std::vector<std::string> files;            // globs as written, relative to the config file's folder
    std::vector<std::string> allowed_programs; // absolute paths that exec and rollback steps may start
    bool dry_run = false;                      // every runbook runs dry, whatever its own dry_run sets
    // The hash-chained audit log; empty: <state_dir>/audit.log.
    std::string audit_log;
    std::size_t output_limit = 64 * 1024;      // bytes of stdout and of stderr kept per step
    // Finished runs and skips are forgotten after this, and with them their episode keys.
    std::chrono::milliseconds forget_after{std::chrono::hours(24 * 7)};
    // Receiver of escalations and approval requests of runbooks without escalate_to; empty:
    // the root route's receiver.
    std::string default_receiver;
};

struct main_config {
    std::string path; // the file it was loaded from
    std::string listen_address = "127.0.0.1";
    std::uint16_t listen_port = 9793;
    std::string state_dir = "/var/lib/tocsin";
    // "full": every commit waits for fsync and survives a power loss. "normal": commits survive
    // a crash of the process, and no disk wait comes before a notification goes out.
    std::string state_sync = "full";
    std::vector<std::string> rule_files; // globs, relative to the config file's folder
    // The model schema file (model_schemas), resolved against the config file's folder; empty
    // when model monitoring is off.
    std::string model_schemas;
    ingest_limits ingest;
    // The daemon checks sample timestamps against its clock; engine_limits' own defaults
    // leave the checks off for tests and backtests.
    engine_limits engine{.max_future_skew = std::chrono::minutes(10), .max_sample_age = std::chrono::hours(24)};
    // The maximum duration of a threshold override set through the API (limits.max_override_duration).
    std::chrono::milliseconds max_override_duration{std::chrono::hours(24 * 7)};
    // limits.max_silences, limits.max_silence_matchers, limits.max_silence_bytes and
    // silence_retention.
    silence_limits silences;
    // How long the notification history behind the noise report is kept (history_retention).
    std::chrono::milliseconds history_retention{std::chrono::hours(24 * 30)};
    auth_config auth;
    tls_config tls;
    std::string log_level = "info";
    std::chrono::milliseconds shutdown_timeout{std::chrono::seconds(10)};
    std::chrono::milliseconds tick_interval{std::chrono::seconds(1)};
    // How often the detectors of dynamic rules are saved to the store, besides at shutdown;
    // 0 saves them only at shutdown. A crash loses what they learnt since the last save.
    std::chrono::milliseconds baseline_snapshot_interval{std::chrono::minutes(5)};
    // Base of links back to tocsind in notifications; default http://<listen address>.
    std::string external_url;
    retry_policy delivery; // the `delivery` section: retries and how long to keep trying
    runbooks_config runbooks;
};

struct loaded_config {
    main_config main;
    std::shared_ptr<const rule_set> rules;
    std::vector<std::string> rule_file_paths; // the globs expanded, sorted
    // The routing part (Alertmanager's schema) and its parsed templates.
    std::shared_ptr<const routing_config> routing;
    std::shared_ptr<const compiled_templates> templates;
    // The schemas of monitored models; null without model_schemas.
    std::shared_ptr<const model::schema_set> models;
    // The runbooks of runbooks.files, checked against the allowlist and the receivers.
    std::vector<runbooks::runbook> runbooks;
    std::vector<std::string> runbook_file_paths; // the globs expanded, sorted
    diagnostics warnings; // problems that do not stop the load, such as keys tocsin ignores
};

// Loads the main config, the token files and every rule file. Collects every problem into
// `diags` as file:line:column: what is wrong; what was expected. Returns nullopt if there is
// any error. `state_dir` and the listen address are not touched.
std::optional<loaded_config> load_config(const std::string& path, diagnostics& diags);

// Parses a listen address: host:port, [v6]:port or :port (all IPv4 interfaces).
bool parse_listen_address(std::string_view text, std::string& host, std::uint16_t& port, std::string& error);

} // namespace tocsin
