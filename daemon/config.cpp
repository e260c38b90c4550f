#include "daemon/config.hpp"

#include <arpa/inet.h>
#include <glob.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <limits>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "notifiers/sender.hpp"
#include "rules/file_read.hpp"
#include "rules/promql_lexer.hpp"
#include "rules/rule_loader.hpp"
#include "rules/yaml_check.hpp"
#include "runbooks/loader.hpp"

namespace tocsin {

namespace {

namespace fs = std::filesystem;

// Resolves `name` against the folder of the config file unless it is absolute.
std::string resolve(const fs::path& base_dir, const std::string& name)
{
    const fs::path p(name);
    if (p.is_absolute() || base_dir.empty()) {
        return p.string();
    }
    return (base_dir / p).string();
}

bool read_file(const std::string& path, std::string& content, std::string& error)
{
    return read_regular_file(path, max_config_file_bytes, content, error);
}

bool is_valid_hostname(std::string_view host)
{
    if (host.empty() || host.size() > 253) {
        return false;
    }
    return std::all_of(host.begin(), host.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
    });
}

// Parses host:port, [v6]:port or :port (all IPv4 interfaces).
bool parse_listen(std::string_view text, std::string& host, std::uint16_t& port, std::string& error)
{
    constexpr std::string_view expected = "expected host:port such as 127.0.0.1:9793, [::1]:9793 or :9793";
    std::string_view host_part;
    std::string_view port_part;
    if (text.starts_with("[")) {
        const auto close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
            error = fmt::format("invalid listen address {}; {}", promql::quote(text), expected);
            return false;
        }
        host_part = text.substr(1, close - 1);
        port_part = text.substr(close + 2);
        in6_addr address{};
        if (inet_pton(AF_INET6, std::string(host_part).c_str(), &address) != 1) {
            error = fmt::format("invalid IPv6 address {} in listen; {}", promql::quote(host_part), expected);
            return false;
        }
    } else {
        const auto colon = text.rfind(':');
        if (colon == std::string_view::npos) {
            error = fmt::format("missing port in listen address {}; {}", promql::quote(text), expected);
            return false;
        }
        host_part = text.substr(0, colon);
        port_part = text.substr(colon + 1);
        if (host_part.find(':') != std::string_view::npos) {
            error = fmt::format("IPv6 address in listen must be in brackets, such as [::1]:9793; got {}",
                                promql::quote(text));
            return false;
        }
        if (host_part.empty()) {
            host_part = "0.0.0.0";
        }
        in_addr address{};
        const bool ipv4 = inet_pton(AF_INET, std::string(host_part).c_str(), &address) == 1;
        if (!ipv4 && !is_valid_hostname(host_part)) {
            error = fmt::format("invalid host {} in listen; {}", promql::quote(host_part), expected);
            return false;
        }
    }
    unsigned value = 0;
    auto [ptr, ec] = std::from_chars(port_part.data(), port_part.data() + port_part.size(), value);
    if (port_part.empty() || ec != std::errc() || ptr != port_part.data() + port_part.size() || value > 65535) {
        error = fmt::format("invalid port {} in listen; expected a number from 0 to 65535",
                            promql::quote(port_part));
        return false;
    }
    host.assign(host_part);
    port = static_cast<std::uint16_t>(value);
    return true;
}

class config_loader {
public:
    config_loader(const std::string& path, diagnostics& diags)
        : path_(path), base_dir_(fs::path(path).parent_path()), diags_(diags), check_(path, diags)
    {
    }

    std::optional<loaded_config> load();

private:
    void load_limits(const YAML::Node& node, main_config& config);
    void load_auth(const YAML::Node& node, main_config& config);
    void load_tls(const YAML::Node& node, main_config& config);
    void load_delivery(const YAML::Node& node, main_config& config);
    void check_receiver_urls(const routing_config& routing);
    void load_rule_globs(const YAML::Node& node, loaded_config& out);
    void load_runbooks(const YAML::Node& node, loaded_config& out);
    std::vector<std::string> expand_globs(const YAML::Node& node, const std::string& key, const char* example,
                                          std::vector<std::string>* written);
    void check_runbook_receivers(const loaded_config& out);
    std::vector<std::string> read_tokens(const YAML::Node& node, std::string_view field,
                                         std::vector<std::string>& files);
    void check_readable(const YAML::Node& node, std::string_view field, const std::string& file, bool pem);

    template <typename T>
    void positive(const YAML::Node& map, std::string_view key, T& out, bool is_size);

    std::string path_;
    fs::path base_dir_;
    diagnostics& diags_;
    yaml::checker check_;
};

std::optional<loaded_config> config_loader::load()
{
    const std::size_t errors_before = diags_.size();
    std::string text;
    std::string problem;
    if (!read_file(path_, text, problem)) {
        diags_.add(path_, 0, 0, fmt::format("failed to read config file: {}", problem));
        return std::nullopt;
    }

    YAML::Node root;
    try {
        root = YAML::Load(text);
    } catch (const YAML::Exception& e) {
        check_.error(e.mark, fmt::format("invalid YAML: {}; check the indentation and quoting here", e.msg));
        return std::nullopt;
    }

    loaded_config out;
    main_config& config = out.main;
    config.path = path_;
    if (!root.IsNull()) {
        if (!check_.expect_map(root, "the config file")) {
            return std::nullopt;
        }
        if (const YAML::Node groups = yaml::checker::child(root, "groups");
            groups.IsDefined() && !yaml::checker::child(root, "rule_files").IsDefined()) {
            check_.error(groups, "this is a rule file (top-level groups), not a main config; check it with "
                                 "tocsinctl check-rules FILE, or name it in rule_files of the main config");
            return std::nullopt;
        }
        check_.check_keys(root, "config",
                          {"listen", "state_dir", "rule_files", "log_level", "shutdown_timeout", "tick_interval",
                           "baseline_snapshot_interval", "silence_retention", "history_retention", "limits", "auth",
                           "model_schemas", "runbooks",
                           "tls", "external_url", "delivery", "state_sync",
                           // Alertmanager's routing schema, read by load_routing()
                           "global", "route", "receivers", "inhibit_rules", "time_intervals",
                           "mute_time_intervals", "templates", "flap_detection"});

        if (const YAML::Node n = yaml::checker::child(root, "listen"); n.IsDefined()) {
            if (auto value = check_.string(n, "listen")) {
                if (!parse_listen(*value, config.listen_address, config.listen_port, problem)) {
                    check_.error(n, problem);
                }
            }
        }
        if (const YAML::Node n = yaml::checker::child(root, "state_dir"); n.IsDefined()) {
            if (auto value = check_.string(n, "state_dir")) {
                if (value->empty()) {
                    check_.error(n, "empty state_dir; expected a folder such as /var/lib/tocsin");
                } else {
                    config.state_dir = resolve(base_dir_, *value);
                }
            }
        }
        if (const YAML::Node n = yaml::checker::child(root, "log_level"); n.IsDefined()) {
            if (auto value = check_.string(n, "log_level")) {
                static constexpr std::string_view levels[] = {"trace", "debug", "info", "warn", "error"};
                if (std::find(std::begin(levels), std::end(levels), *value) == std::end(levels)) {
                    check_.error(n, fmt::format("invalid log_level {}; expected one of trace, debug, info, warn, error",
                                                promql::quote(*value)));
                } else {
                    config.log_level = *value;
                }
            }
        }
        if (const YAML::Node n = yaml::checker::child(root, "shutdown_timeout"); n.IsDefined()) {
            if (auto d = check_.duration(n, "shutdown_timeout")) {
                config.shutdown_timeout = *d;
            }
        }
        if (const YAML::Node n = yaml::checker::child(root, "tick_interval"); n.IsDefined()) {
            if (auto d = check_.duration(n, "tick_interval")) {
                if (d->count() <= 0) {
                    check_.error(n, "tick_interval must be greater than 0; expected for example 1s");
                } else {
                    config.tick_interval = *d;
                }
            }
        }
        if (const YAML::Node n = yaml::checker::child(root, "baseline_snapshot_interval"); n.IsDefined()) {
            if (auto d = check_.duration(n, "baseline_snapshot_interval")) {
                if (d->count() < 0) {
                    check_.error(n, "baseline_snapshot_interval must be at least 0; expected for example 5m, or 0s to "
                                    "save baselines only at shutdown");
                } else {
                    config.baseline_snapshot_interval = *d;
                }
            }
        }
        if (const YAML::Node n = yaml::checker::child(root, "silence_retention"); n.IsDefined()) {
            if (auto d = check_.duration(n, "silence_retention")) {
                config.silences.retention = *d;
            }
        }
        if (const YAML::Node n = yaml::checker::child(root, "history_retention"); n.IsDefined()) {
            if (auto d = check_.duration(n, "history_retention")) {
                if (d->count() <= 0) {
                    check_.error(n, "history_retention must be greater than 0; expected for example 30d");
                } else {
                    config.history_retention = *d;
                }
            }
        }
        if (const YAML::Node n = yaml::checker::child(root, "limits"); n.IsDefined() && !n.IsNull()) {
            load_limits(n, config);
        }
        if (const YAML::Node n = yaml::checker::child(root, "auth"); n.IsDefined() && !n.IsNull()) {
            load_auth(n, config);
        }
        if (const YAML::Node n = yaml::checker::child(root, "tls"); n.IsDefined() && !n.IsNull()) {
            load_tls(n, config);
        }
        if (const YAML::Node n = yaml::checker::child(root, "rule_files"); n.IsDefined() && !n.IsNull()) {
            load_rule_globs(n, out);
        }
        if (const YAML::Node n = yaml::checker::child(root, "external_url"); n.IsDefined()) {
            if (auto value = check_.string(n, "external_url")) {
                if (value->rfind("http://", 0) != 0 && value->rfind("https://", 0) != 0) {
                    check_.error(n, fmt::format("invalid external_url {}; expected an http:// or https:// URL",
                                                promql::quote(*value)));
                } else {
                    while (!value->empty() && value->back() == '/') {
                        value->pop_back();
                    }
                    config.external_url = *value;
                }
            }
        }
        if (const YAML::Node n = yaml::checker::child(root, "state_sync"); n.IsDefined()) {
            if (auto value = check_.string(n, "state_sync")) {
                if (*value != "full" && *value != "normal") {
                    check_.error(n, fmt::format("invalid state_sync {}; expected full (survives power loss) or "
                                                "normal (survives process crashes, no fsync wait)",
                                                promql::quote(*value)));
                } else {
                    config.state_sync = *value;
                }
            }
        }
        if (const YAML::Node n = yaml::checker::child(root, "delivery"); n.IsDefined() && !n.IsNull()) {
            load_delivery(n, config);
        }
        if (const YAML::Node n = yaml::checker::child(root, "model_schemas"); n.IsDefined() && !n.IsNull()) {
            if (auto value = check_.string(n, "model_schemas")) {
                config.model_schemas = resolve(base_dir_, *value);
            }
        }
        out.routing = std::make_shared<routing_config>(
            load_routing(root, check_, base_dir_.string(), out.warnings));
        if (const YAML::Node n = yaml::checker::child(root, "runbooks"); n.IsDefined() && !n.IsNull()) {
            load_runbooks(n, out);
        }
    }
    if (!out.routing) {
        out.routing = std::make_shared<routing_config>();
    }
    if (config.external_url.empty()) {
        config.external_url = fmt::format("http://{}:{}", config.listen_address.empty() ? "localhost" : config.listen_address,
                                          config.listen_port);
    }
    if (check_.error_count() == 0) {
        check_receiver_urls(*out.routing);
        out.templates = compile_templates(*out.routing, path_, diags_);
    }

    std::vector<rule_group> groups;
    for (const auto& file : out.rule_file_paths) {
        auto loaded = load_rule_file(file, diags_);
        for (auto& g : loaded) {
            groups.push_back(std::move(g));
        }
    }
    out.rules = make_rule_set(std::move(groups));
    validate_rule_set(*out.rules, diags_);

    if (!config.model_schemas.empty()) {
        if (auto schemas = model::load_model_schemas(config.model_schemas, diags_)) {
            out.models = std::make_shared<const model::schema_set>(std::move(*schemas));
        }
    }

    if (!out.runbook_file_paths.empty()) {
        std::set<std::string> names;
        for (const auto& file : out.runbook_file_paths) {
            for (auto& rb : runbooks::load_runbook_file(file, diags_)) {
                if (!names.insert(rb.name).second) {
                    diags_.add(rb.file, rb.line, 0,
                               fmt::format("runbook name {} is used twice across runbooks.files; names must be unique",
                                           promql::quote(rb.name)));
                    continue;
                }
                out.runbooks.push_back(std::move(rb));
            }
        }
        constexpr std::size_t max_runbooks = 1000;
        if (out.runbooks.size() > max_runbooks) {
            diags_.add(path_, 0, 0,
                       fmt::format("runbooks.files load {} runbooks; at most {} are allowed, because every alert "
                                   "change is matched against each of them",
                                   out.runbooks.size(), max_runbooks));
        }
        runbooks::check_programs(out.runbooks, config.runbooks.allowed_programs, diags_);
        check_runbook_receivers(out);
    }

    if (diags_.size() != errors_before) {
        return std::nullopt;
    }
    return out;
}

// Every receiver a runbook names (notify steps, escalate_to, runbooks.default_receiver) must
// exist in the routing configuration, or its messages would have nowhere to go.
void config_loader::check_runbook_receivers(const loaded_config& out)
{
    const routing_config& routing = *out.routing;
    auto known = [&](const std::string& name) { return routing.find_receiver(name) != nullptr; };
    auto names = [&] {
        std::string list;
        for (const auto& r : routing.receivers) {
            list += (list.empty() ? "" : ", ") + r.name;
        }
        return list.empty() ? std::string("none are configured") : "configured: " + list;
    };
    const std::string& fallback = out.main.runbooks.default_receiver;
    if (!fallback.empty() && !known(fallback)) {
        diags_.add(path_, 0, 0,
                   fmt::format("runbooks.default_receiver {} is not a receiver of this config; {}",
                               promql::quote(fallback), names()));
    }
    for (const auto& rb : out.runbooks) {
        if (!rb.escalate_to.empty() && !known(rb.escalate_to)) {
            diags_.add(rb.file, rb.line, 0,
                       fmt::format("runbook {}: escalate_to {} is not a receiver of the main config; {}",
                                   rb.name, promql::quote(rb.escalate_to), names()));
        }
        for (const auto& s : rb.steps) {
            if (s.kind == runbooks::step_kind::notify && !known(s.notify.receiver)) {
                diags_.add(rb.file, s.line, 0,
                           fmt::format("runbook {} step {}: receiver {} is not a receiver of the main config; {}",
                                       rb.name, s.name, promql::quote(s.notify.receiver), names()));
            }
            if (!s.escalate_to.empty() && !known(s.escalate_to)) {
                diags_.add(rb.file, s.line, 0,
                           fmt::format("runbook {} step {}: escalate_to {} is not a receiver of the main config; {}",
                                       rb.name, s.name, promql::quote(s.escalate_to), names()));
            }
        }
    }
}

void config_loader::load_runbooks(const YAML::Node& node, loaded_config& out)
{
    if (!check_.expect_map(node, "runbooks")) {
        return;
    }
    check_.check_keys(node, "runbooks",
                      {"files", "allowed_programs", "dry_run", "audit_log", "output_limit", "forget_after",
                       "default_receiver"});
    runbooks_config& config = out.main.runbooks;
    if (const YAML::Node n = yaml::checker::child(node, "files"); n.IsDefined() && !n.IsNull()) {
        out.runbook_file_paths = expand_globs(n, "runbooks.files", "runbooks/*.yaml", &config.files);
    }
    if (const YAML::Node n = yaml::checker::child(node, "allowed_programs"); n.IsDefined() && !n.IsNull()) {
        if (check_.expect_sequence(n, "runbooks.allowed_programs")) {
            for (std::size_t i = 0; i < n.size(); ++i) {
                auto value = check_.string(n[i], "runbooks.allowed_programs");
                if (!value) {
                    continue;
                }
                if (value->empty() || value->front() != '/' || value->find('\0') != std::string::npos) {
                    check_.error(n[i], fmt::format("runbooks.allowed_programs entry {} is not an absolute path; "
                                                   "expected a program such as /usr/local/bin/rollback-model",
                                                   promql::quote(*value)));
                    continue;
                }
                // A typo here would only show when a runbook first needs the program.
                struct stat st {};
                if (::stat(value->c_str(), &st) != 0) {
                    check_.error(n[i], fmt::format("runbooks.allowed_programs entry {} cannot be used: {}; expected "
                                                   "an installed program",
                                                   promql::quote(*value), std::strerror(errno)));
                    continue;
                }
                if (!S_ISREG(st.st_mode) || ::access(value->c_str(), X_OK) != 0) {
                    check_.error(n[i], fmt::format("runbooks.allowed_programs entry {} is not an executable file; "
                                                   "expected a program, not a folder or a data file",
                                                   promql::quote(*value)));
                    continue;
                }
                config.allowed_programs.push_back(*value);
            }
        }
    }
    if (const YAML::Node n = yaml::checker::child(node, "dry_run"); n.IsDefined()) {
        if (auto value = check_.boolean(n, "runbooks.dry_run")) {
            config.dry_run = *value;
        }
    }
    if (const YAML::Node n = yaml::checker::child(node, "audit_log"); n.IsDefined()) {
        if (auto value = check_.string(n, "runbooks.audit_log")) {
            if (value->empty()) {
                check_.error(n, "empty runbooks.audit_log; expected a file such as /var/lib/tocsin/audit.log, or "
                                "leave the key out for <state_dir>/audit.log");
            } else {
                config.audit_log = resolve(base_dir_, *value);
            }
        }
    }
    if (const YAML::Node n = yaml::checker::child(node, "output_limit"); n.IsDefined()) {
        if (auto value = check_.size(n, "runbooks.output_limit")) {
            if (*value < 1024 || *value > (16u << 20)) {
                check_.error(n, fmt::format("runbooks.output_limit {} bytes is out of range; expected 1KiB to 16MiB",
                                            *value));
            } else {
                config.output_limit = static_cast<std::size_t>(*value);
            }
        }
    }
    if (const YAML::Node n = yaml::checker::child(node, "forget_after"); n.IsDefined()) {
        if (auto d = check_.duration(n, "runbooks.forget_after")) {
            if (*d < std::chrono::hours(1)) {
                check_.error(n, "runbooks.forget_after must be at least 1h, longer than any firing episode; "
                                "expected for example 7d");
            } else {
                config.forget_after = *d;
            }
        }
    }
    if (const YAML::Node n = yaml::checker::child(node, "default_receiver"); n.IsDefined()) {
        if (auto value = check_.string(n, "runbooks.default_receiver")) {
            config.default_receiver = *value;
        }
    }
}

// Rejects URLs that the sender could never use, so the mistake shows at load and not as a failed
// notification. Messages name the receiver and the URL's origin, never a secret URL's path.
void config_loader::check_receiver_urls(const routing_config& routing)
{
    auto check = [&](const receiver_config& r, const char* kind, std::size_t i, const char* key,
                     const std::string& url, const std::string& origin) {
        if (url.empty()) {
            return;
        }
        if (auto problem = url_problem(url)) {
            diags_.add(path_, r.line, 0,
                       fmt::format("receiver {} {}[{}].{}{}: {}", promql::quote(r.name), kind, i, key,
                                   origin.empty() ? "" : " from " + origin, *problem));
        }
    };
    for (const auto& r : routing.receivers) {
        for (std::size_t i = 0; i < r.webhooks.size(); ++i) {
            check(r, "webhook_configs", i, "url", r.webhooks[i].url.value, r.webhooks[i].url.origin);
        }
        for (std::size_t i = 0; i < r.pagerduty.size(); ++i) {
            check(r, "pagerduty_configs", i, "url", r.pagerduty[i].url, "");
        }
        for (std::size_t i = 0; i < r.slack.size(); ++i) {
            check(r, "slack_configs", i, "api_url", r.slack[i].api_url.value, r.slack[i].api_url.origin);
            check(r, "slack_configs", i, "app_url", r.slack[i].app_url, "");
        }
    }
}

void config_loader::load_delivery(const YAML::Node& node, main_config& config)
{
    if (!check_.expect_map(node, "delivery")) {
        return;
    }
    check_.check_keys(node, "delivery", {"initial_backoff", "max_backoff", "max_age", "timeout"});
    struct knob {
        const char* key;
        std::chrono::milliseconds* target;
    };
    const knob knobs[] = {{"initial_backoff", &config.delivery.initial},
                          {"max_backoff", &config.delivery.max_backoff},
                          {"max_age", &config.delivery.max_age},
                          {"timeout", &config.delivery.default_timeout}};
    for (const auto& k : knobs) {
        const YAML::Node n = yaml::checker::child(node, k.key);
        if (!n.IsDefined()) {
            continue;
        }
        if (auto d = check_.duration(n, fmt::format("delivery.{}", k.key))) {
            if (d->count() <= 0) {
                check_.error(n, fmt::format("delivery.{} must be greater than 0; expected for example 30s", k.key));
            } else {
                *k.target = *d;
            }
        }
    }
    if (config.delivery.max_backoff < config.delivery.initial) {
        check_.error(node, "delivery.max_backoff is shorter than delivery.initial_backoff; raise max_backoff");
    }
}

template <typename T>
void config_loader::positive(const YAML::Node& map, std::string_view key, T& out, bool is_size)
{
    const YAML::Node n = yaml::checker::child(map, key);
    if (!n.IsDefined()) {
        return;
    }
    const std::string field = fmt::format("limits.{}", key);
    auto value = is_size ? check_.size(n, field) : check_.count(n, field);
    if (!value) {
        return;
    }
    if (*value == 0) {
        check_.error(n, fmt::format("{} must be greater than 0", field));
        return;
    }
    if (*value > std::numeric_limits<T>::max()) {
        check_.error(n, fmt::format("{} is too large", field));
        return;
    }
    out = static_cast<T>(*value);
}

void config_loader::load_limits(const YAML::Node& node, main_config& config)
{
    if (!check_.expect_map(node, "limits")) {
        return;
    }
    check_.check_keys(node, "limits",
                      {"max_body_bytes", "max_decoded_bytes", "max_samples_per_request", "max_labels_per_series",
                       "max_label_name_bytes", "max_label_value_bytes", "max_series", "per_rule_max_alerts",
                       "max_active_alerts", "max_future_skew", "max_sample_age", "max_override_duration",
                       "max_silences", "max_silence_matchers", "max_silence_bytes"});
    positive(node, "max_silences", config.silences.max_silences, false);
    positive(node, "max_silence_matchers", config.silences.max_matchers, false);
    positive(node, "max_silence_bytes", config.silences.max_text_bytes, true);
    positive(node, "max_body_bytes", config.ingest.max_body_bytes, true);
    positive(node, "max_decoded_bytes", config.ingest.max_decoded_bytes, true);
    positive(node, "max_samples_per_request", config.ingest.max_samples_per_request, false);
    positive(node, "max_labels_per_series", config.ingest.max_labels_per_series, false);
    positive(node, "max_label_name_bytes", config.ingest.max_label_name_bytes, true);
    positive(node, "max_label_value_bytes", config.ingest.max_label_value_bytes, true);
    positive(node, "max_series", config.engine.max_series, false);
    positive(node, "per_rule_max_alerts", config.engine.per_rule_max_alerts, false);
    positive(node, "max_active_alerts", config.engine.max_active_alerts, false);
    // Durations cannot be negative, and 0 turns the check off.
    if (const YAML::Node n = yaml::checker::child(node, "max_future_skew"); n.IsDefined()) {
        if (auto d = check_.duration(n, "limits.max_future_skew")) {
            config.engine.max_future_skew = *d;
        }
    }
    if (const YAML::Node n = yaml::checker::child(node, "max_sample_age"); n.IsDefined()) {
        if (auto d = check_.duration(n, "limits.max_sample_age")) {
            config.engine.max_sample_age = *d;
        }
    }
    if (const YAML::Node n = yaml::checker::child(node, "max_override_duration"); n.IsDefined()) {
        if (auto d = check_.duration(n, "limits.max_override_duration")) {
            if (d->count() == 0) {
                check_.error(n, "limits.max_override_duration must be greater than 0s, such as 7d");
            } else {
                config.max_override_duration = *d;
            }
        }
    }
}

std::vector<std::string> config_loader::read_tokens(const YAML::Node& node, std::string_view field,
                                                    std::vector<std::string>& files)
{
    std::vector<std::string> tokens;
    if (!check_.expect_sequence(node, field)) {
        return tokens;
    }
    for (std::size_t i = 0; i < node.size(); ++i) {
        const YAML::Node item = node[i];
        auto name = check_.string(item, field);
        if (!name) {
            continue;
        }
        const std::string file = resolve(base_dir_, *name);
        files.push_back(file);
        std::string content;
        std::string problem;
        // The messages name the file but never its content, because the content is a secret.
        if (!read_file(file, content, problem)) {
            check_.error(item, fmt::format("failed to read token file {}: {}", file, problem));
            continue;
        }
        while (!content.empty() && std::isspace(static_cast<unsigned char>(content.back()))) {
            content.pop_back();
        }
        std::size_t start = 0;
        while (start < content.size() && std::isspace(static_cast<unsigned char>(content[start]))) {
            ++start;
        }
        content.erase(0, start);
        if (content.empty()) {
            check_.error(item, fmt::format("token file {} is empty; expected one bearer token", file));
            continue;
        }
        const bool has_space = std::any_of(content.begin(), content.end(), [](char c) {
            return std::isspace(static_cast<unsigned char>(c)) || std::iscntrl(static_cast<unsigned char>(c));
        });
        if (has_space) {
            check_.error(item, fmt::format("token file {} holds whitespace or control characters inside the token; "
                                           "expected exactly one bearer token",
                                           file));
            continue;
        }
        tokens.push_back(std::move(content));
    }
    return tokens;
}

void config_loader::load_auth(const YAML::Node& node, main_config& config)
{
    if (!check_.expect_map(node, "auth")) {
        return;
    }
    check_.check_keys(node, "auth", {"write_token_files", "admin_token_files"});
    if (const YAML::Node n = yaml::checker::child(node, "write_token_files"); n.IsDefined()) {
        config.auth.write_tokens = read_tokens(n, "auth.write_token_files", config.auth.write_token_files);
    }
    if (const YAML::Node n = yaml::checker::child(node, "admin_token_files"); n.IsDefined()) {
        config.auth.admin_tokens = read_tokens(n, "auth.admin_token_files", config.auth.admin_token_files);
    }
}

void config_loader::check_readable(const YAML::Node& node, std::string_view field, const std::string& file, bool pem)
{
    std::string content;
    std::string problem;
    if (!read_file(file, content, problem)) {
        check_.error(node, fmt::format("failed to read {} {}: {}", field, file, problem));
        return;
    }
    if (pem && content.find("-----BEGIN ") == std::string::npos) {
        check_.error(node, fmt::format("{} {} is not in PEM format; expected a file with -----BEGIN lines", field, file));
    }
}

void config_loader::load_tls(const YAML::Node& node, main_config& config)
{
    if (!check_.expect_map(node, "tls")) {
        return;
    }
    check_.check_keys(node, "tls", {"cert_file", "key_file"});
    const YAML::Node cert = yaml::checker::child(node, "cert_file");
    const YAML::Node key = yaml::checker::child(node, "key_file");
    if (!cert.IsDefined() || !key.IsDefined()) {
        check_.error(node, fmt::format("tls needs both cert_file and key_file; {} is missing",
                                       cert.IsDefined() ? "key_file" : "cert_file"));
    }
    if (cert.IsDefined()) {
        if (auto value = check_.string(cert, "tls.cert_file")) {
            config.tls.cert_file = resolve(base_dir_, *value);
            check_readable(cert, "tls.cert_file", config.tls.cert_file, true);
        }
    }
    if (key.IsDefined()) {
        if (auto value = check_.string(key, "tls.key_file")) {
            config.tls.key_file = resolve(base_dir_, *value);
            check_readable(key, "tls.key_file", config.tls.key_file, true);
        }
    }
}

void config_loader::load_rule_globs(const YAML::Node& node, loaded_config& out)
{
    out.rule_file_paths = expand_globs(node, "rule_files", "rules/*.yaml", &out.main.rule_files);
}

// Expands a list of globs relative to the config file's folder into sorted, unique files.
// Each entry that matches no file, or only folders, is an error at its line.
std::vector<std::string> config_loader::expand_globs(const YAML::Node& node, const std::string& key,
                                                     const char* example, std::vector<std::string>* written)
{
    std::vector<std::string> paths;
    if (!check_.expect_sequence(node, key)) {
        return paths;
    }
    for (std::size_t i = 0; i < node.size(); ++i) {
        const YAML::Node item = node[i];
        auto pattern = check_.string(item, key);
        if (!pattern) {
            continue;
        }
        if (pattern->empty()) {
            check_.error(item, fmt::format("empty {} entry; expected a glob such as {}", key, example));
            continue;
        }
        if (written != nullptr) {
            written->push_back(*pattern);
        }
        const std::string full = resolve(base_dir_, *pattern);
        glob_t matches{};
        const int rc = ::glob(full.c_str(), GLOB_BRACE, nullptr, &matches);
        if (rc == GLOB_NOMATCH) {
            std::error_code absolute_ec;
            auto shown = fs::absolute(full, absolute_ec).lexically_normal().string();
            check_.error(item, fmt::format("{} entry {} matches no file (looked for {}); relative "
                                           "globs start at the config file's folder",
                                           key, promql::quote(*pattern), promql::quote(absolute_ec ? full : shown)));
        } else if (rc != 0) {
            check_.error(item, fmt::format("failed to expand {} entry {}: {}", key, promql::quote(*pattern),
                                           rc == GLOB_NOSPACE ? "out of memory" : "a folder could not be read"));
        } else {
            std::size_t files = 0;
            for (std::size_t m = 0; m < matches.gl_pathc; ++m) {
                std::error_code ec;
                if (fs::is_directory(matches.gl_pathv[m], ec)) {
                    continue;
                }
                paths.emplace_back(matches.gl_pathv[m]);
                ++files;
            }
            if (files == 0) {
                check_.error(item, fmt::format("{} entry {} matches only folders; expected files", key,
                                               promql::quote(*pattern)));
            }
        }
        ::globfree(&matches);
    }
    std::sort(paths.begin(), paths.end());
    paths.erase(std::unique(paths.begin(), paths.end()), paths.end());
    return paths;
}

} // namespace

std::optional<loaded_config> load_config(const std::string& path, diagnostics& diags)
{
    config_loader loader(path, diags);
    return loader.load();
}

bool parse_listen_address(std::string_view text, std::string& host, std::uint16_t& port, std::string& error)
{
    return parse_listen(text, host, port, error);
}

} // namespace tocsin
