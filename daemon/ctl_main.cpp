// tocsinctl: checks configuration and rule files without starting the daemon, as promtool
// does for Prometheus, and shows where an alert would be routed, as amtool does. Exit status 0
// means valid, 1 means errors (printed one per line on stderr as file:line:column: message) or
// a failed route verification, 2 means a usage error. `test rules` exits 1 when a check fails
// and 3 when a test file or a rule file it names is invalid.

#include <cstdio>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "daemon/backtest.hpp"
#include "daemon/config.hpp"
#include "daemon/ctl_report.hpp"
#include "daemon/ctl_audit.hpp"
#include "daemon/ctl_runbooks.hpp"
#include "daemon/ctl_silence.hpp"
#include "daemon/rule_tests.hpp"
#include "routing/config.hpp"
#include "rules/duration.hpp"
#include "rules/rule_loader.hpp"

namespace {

// NOTE: kept in step with project(VERSION) in the top-level CMakeLists.txt by hand.
constexpr const char* tocsin_version = "0.1.0";

void print_diagnostics(const tocsin::diagnostics& diags)
{
    for (const auto& d : diags.items()) {
        std::fprintf(stderr, "%s\n", d.to_string().c_str());
    }
}

int check_config(const std::string& path)
{
    tocsin::diagnostics diags;
    auto config = tocsin::load_config(path, diags);
    if (!config) {
        print_diagnostics(diags);
        std::fprintf(stderr, "%s: FAILED (%zu %s)\n", path.c_str(), diags.size(), diags.size() == 1 ? "error" : "errors");
        return 1;
    }
    for (const auto& w : config->warnings.items()) {
        std::fprintf(stderr, "warning: %s\n", w.to_string().c_str());
    }
    std::printf("%s: OK (%zu rule files, %zu rules, %zu receivers, %zu runbooks)\n", path.c_str(),
                config->rule_file_paths.size(), config->rules->rules.size(), config->routing->receivers.size(),
                config->runbooks.size());
    return 0;
}

// Parses name=value or name="value" arguments into a label set.
bool parse_label_args(const std::vector<std::string>& args, tocsin::label_set& out)
{
    std::vector<tocsin::label> labels;
    for (const auto& arg : args) {
        auto eq = arg.find('=');
        if (eq == std::string::npos || eq == 0) {
            std::fprintf(stderr, "invalid label \"%s\"; expected name=value, for example severity=critical\n",
                         arg.c_str());
            return false;
        }
        std::string value = arg.substr(eq + 1);
        if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
            value = value.substr(1, value.size() - 2);
        }
        labels.push_back(tocsin::label{arg.substr(0, eq), value});
    }
    out = tocsin::label_set(std::move(labels));
    return true;
}

int test_routes(const std::string& path, const std::vector<std::string>& label_args, const std::string& expected)
{
    tocsin::diagnostics diags;
    auto config = tocsin::load_config(path, diags);
    if (!config) {
        print_diagnostics(diags);
        return 1;
    }
    tocsin::label_set labels;
    if (!parse_label_args(label_args, labels)) {
        return 2;
    }
    if (!config->routing->present) {
        std::fprintf(stderr, "%s has no route; add route and receivers in Alertmanager's format\n", path.c_str());
        return 1;
    }
    std::vector<std::string> receivers;
    for (const auto* route : tocsin::match_routes(config->routing->root, labels)) {
        std::string group_by = route->group_by_all ? "..." : fmt::format("{}", fmt::join(route->group_by, ","));
        std::printf("%s\troute=%s group_by=[%s] group_wait=%s group_interval=%s repeat_interval=%s\n",
                    route->receiver.c_str(), route->key.c_str(), group_by.c_str(),
                    tocsin::format_duration(route->group_wait).c_str(),
                    tocsin::format_duration(route->group_interval).c_str(),
                    tocsin::format_duration(route->repeat_interval).c_str());
        if (const auto* receiver = config->routing->find_receiver(route->receiver);
            receiver != nullptr && receiver->webhooks.empty() && receiver->pagerduty.empty() &&
            receiver->slack.empty() && receiver->console.empty()) {
            std::printf("\t(receiver %s has no integration tocsin delivers to, so these alerts notify nobody; "
                        "see the warnings of tocsinctl check)\n",
                        route->receiver.c_str());
        }
        // Escalation steps are listed on their own lines; --verify-receivers compares the
        // routes' own receivers only, as amtool does.
        for (std::size_t i = 0; i < route->escalate.size(); ++i) {
            std::printf("\tescalates to %s after %s when not acknowledged (step %zu)\n",
                        route->escalate[i].receiver.c_str(),
                        tocsin::format_duration(route->escalate[i].after).c_str(), i + 1);
        }
        receivers.push_back(route->receiver);
    }
    if (!expected.empty()) {
        const std::string got = fmt::format("{}", fmt::join(receivers, ","));
        if (got != expected) {
            std::fprintf(stderr, "route verification failed: expected receivers %s, got %s\n", expected.c_str(),
                         got.c_str());
            return 1;
        }
    }
    return 0;
}

int check_rules(const std::vector<std::string>& files)
{
    tocsin::diagnostics all;
    std::vector<tocsin::rule_group> groups;
    std::vector<std::string> lines;
    for (const auto& file : files) {
        tocsin::diagnostics diags;
        auto loaded = tocsin::load_rule_file(file, diags);
        if (diags.empty()) {
            std::size_t rules = 0;
            for (const auto& g : loaded) {
                rules += g.rules.size();
            }
            lines.push_back(fmt::format("{}: OK ({} groups, {} rules)", file, loaded.size(), rules));
        }
        all.append(diags);
        for (auto& g : loaded) {
            groups.push_back(std::move(g));
        }
    }
    // Alert names must also be unique across the files checked together.
    auto set = tocsin::make_rule_set(std::move(groups));
    tocsin::validate_rule_set(*set, all);

    if (!all.empty()) {
        print_diagnostics(all);
        return 1;
    }
    for (const auto& line : lines) {
        std::printf("%s\n", line.c_str());
    }
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    CLI::App app{"tocsinctl: check tocsin configuration and rule files, manage silences and runbook runs, and "
                 "report on noise"};
    app.require_subcommand(1);

    std::string config_path;
    auto* check = app.add_subcommand("check", "Check a main config file and every rule file it names");
    check->add_option("CONFIG", config_path, "Path of the main config file")->required();

    std::vector<std::string> rule_files;
    auto* check_rules_command = app.add_subcommand("check-rules", "Check rule files on their own");
    check_rules_command->add_option("FILE", rule_files, "Rule files to check")->required();

    auto* routes = app.add_subcommand("routes", "Routing tree tools");
    routes->require_subcommand(1);
    auto* routes_test = routes->add_subcommand("test", "Print the receivers an alert with LABELS reaches");
    std::string routes_config = "/etc/tocsin/tocsin.yaml";
    std::vector<std::string> route_labels;
    std::string verify_receivers;
    routes_test->add_option("--config", routes_config, "Path of the config file")->capture_default_str();
    routes_test->add_option("--verify-receivers", verify_receivers,
                            "Comma-separated receivers that must be reached, in order; exit 1 otherwise");
    routes_test->add_option("LABELS", route_labels, "Labels as name=value")->required();

    auto* test = app.add_subcommand("test", "Unit tests");
    test->require_subcommand(1);
    auto* test_rules = test->add_subcommand(
        "rules", "Run rule unit tests (promtool's format); exit 0 all passed, 1 a check failed, 3 a file is invalid");
    std::vector<std::string> rule_test_files;
    test_rules->add_option("FILE", rule_test_files, "Rule test files")->required();

    auto* backtest = app.add_subcommand("backtest", "Run rules over recorded series and show what would have fired");
    tocsin::backtest_command backtest_args;
    // allow_extra_args(false): each --rules and --label takes one value, so the inputs after it
    // stay positional.
    backtest->add_option("--rules", backtest_args.rule_files, "Rule file to run (repeatable)")
        ->allow_extra_args(false);
    backtest->add_option("--config", backtest_args.config_file, "Main config file whose rule files to run");
    backtest->add_option("INPUT", backtest_args.inputs,
                         "CSV files of timestamp,value or Prometheus query_range JSON responses")
        ->required();
    backtest->add_option("--metric", backtest_args.metric,
                         "Metric name (__name__) of the input series; default: the CSV file's name, or the "
                         "JSON series' own __name__");
    backtest->add_option("--label", backtest_args.labels, "Label name=value added to every input series (repeatable)")
        ->allow_extra_args(false);
    backtest->add_option("--svg-dir", backtest_args.svg_dir, "Folder for one SVG chart per rule and series");
    backtest->add_option("--samples-csv", backtest_args.samples_csv_dir,
                         "Folder for one CSV per rule and series: timestamp,value,score,ready,state,severity");
    backtest->add_flag("--json", backtest_args.json, "Print the report as JSON");
    backtest->add_flag("--skip-bad-rows", backtest_args.skip_bad_rows,
                       "Skip malformed or out-of-order rows with a warning instead of failing");
    backtest->add_option("--max-samples", backtest_args.limits.max_samples, "Maximum samples in all inputs")
        ->capture_default_str();
    backtest->add_option("--max-series", backtest_args.limits.max_series, "Maximum series in all inputs")
        ->capture_default_str();
    backtest->add_option("--max-file-bytes", backtest_args.limits.max_file_bytes, "Maximum size of one input file")
        ->capture_default_str();

    auto* silence = app.add_subcommand("silence", "Add, query, update and expire silences on a running tocsind");
    silence->require_subcommand(1);
    tocsin::silence_command silence_args;
    auto connection_options = [&](CLI::App* sub) {
        sub->add_option("--url", silence_args.url,
                        fmt::format("tocsind's address; default: $TOCSIN_URL, else {}", tocsin::default_tocsin_url));
        sub->add_option("--token-file", silence_args.token_file,
                        "File holding an admin token (see auth.admin_token_files); default: the token itself in "
                        "$TOCSIN_TOKEN");
        sub->add_option("--ca-file", silence_args.ca_file, "PEM CA certificate to verify an https:// tocsind");
        sub->add_option("--timeout", silence_args.timeout, "Timeout of each request")->capture_default_str();
    };
    auto* silence_add = silence->add_subcommand(
        "add", "Add a silence and print its ID; MATCHER is name=value, name!=value, name=~regex or name!~regex, "
               "and a bare first one means alertname=<it>");
    connection_options(silence_add);
    silence_add->add_option("--author,-a", silence_args.author, "Who creates the silence; default: $USER");
    silence_add->add_option("--comment,-c", silence_args.comment, "Why the alerts are silenced")->required();
    auto* add_duration = silence_add->add_option("--duration,-d", silence_args.duration,
                                                 "How long the silence lasts from its start (default 1h)");
    silence_add->add_option("--end,-e", silence_args.end, "End as RFC 3339, such as 2026-01-02T15:04:05Z")
        ->excludes(add_duration);
    silence_add->add_option("--start,-s", silence_args.start, "Start as RFC 3339; default: now");
    silence_add->add_option("MATCHER", silence_args.matchers, "Label matchers the silenced alerts have")->required();

    auto* silence_query = silence->add_subcommand(
        "query", "List active and pending silences whose equality matchers pass the MATCHERs");
    connection_options(silence_query);
    silence_query->add_flag("--expired", silence_args.expired, "List expired silences instead");
    silence_query->add_flag("--quiet,-q", silence_args.quiet, "Print only the IDs");
    silence_query->add_option("MATCHER", silence_args.matchers, "Label matchers to filter by");

    auto* silence_expire = silence->add_subcommand("expire", "Expire silences now; exit 1 if any fails");
    connection_options(silence_expire);
    silence_expire->add_option("ID", silence_args.ids, "IDs of the silences")->required();

    auto* silence_update = silence->add_subcommand(
        "update", "Change a silence's end or comment and print its ID, which is new when the change needs one");
    connection_options(silence_update);
    auto* update_duration =
        silence_update->add_option("--duration,-d", silence_args.duration,
                                   "New length, from now for a started silence, from its start for a pending one");
    silence_update->add_option("--end,-e", silence_args.end, "New end as RFC 3339")->excludes(update_duration);
    silence_update->add_option("--comment,-c", silence_args.comment, "New comment");
    silence_update->add_option("ID", silence_args.ids, "ID of the silence")->required()->expected(1);

    auto* report = app.add_subcommand("report", "Reports from a running tocsind");
    report->require_subcommand(1);
    tocsin::report_command report_args;
    auto* report_noise = report->add_subcommand(
        "noise", "List the rules and alert groups that notified most, with their episodes, firing times and "
                 "flapping, most notifications first");
    report_noise->add_option("--url", report_args.url,
                             fmt::format("tocsind's address; default: $TOCSIN_URL, else {}", tocsin::default_tocsin_url));
    report_noise->add_option("--token-file", report_args.token_file,
                             "File holding a token, when a proxy in front of tocsind requires one; default: "
                             "$TOCSIN_TOKEN");
    report_noise->add_option("--ca-file", report_args.ca_file, "PEM CA certificate to verify an https:// tocsind");
    report_noise->add_option("--timeout", report_args.timeout, "Timeout of the request")->capture_default_str();
    report_noise->add_option("--since", report_args.since, "Length of the period that ends now, such as 24h or 7d")
        ->capture_default_str();
    report_noise->add_option("--limit", report_args.limit, "Rows per table, 1 to 1000")->capture_default_str();
    report_noise->add_flag("--json", report_args.json, "Print the server's JSON instead of the tables");

    auto* audit = app.add_subcommand("audit", "Check and list the audit log of automated responses");
    audit->require_subcommand(1);
    tocsin::audit_command audit_args;
    auto* audit_verify = audit->add_subcommand(
        "verify", "Check the hash chain of an audit log; exit 1 and name the first broken record if it is broken");
    audit_verify->add_option("FILE", audit_args.path, "The audit log file")->required();
    auto* audit_show = audit->add_subcommand("show", "Verify an audit log, then list its records");
    audit_show->add_option("FILE", audit_args.path, "The audit log file")->required();
    audit_show->add_option("--kind", audit_args.kinds,
                           "Only records of this kind (run_started, step, approval, run_finished, ...); repeatable");
    audit_show->add_option("--run", audit_args.run_id, "Only records of this run id");
    audit_show->add_option("--since", audit_args.since,
                           "Only records of the period that ends now, such as 24h, or since an RFC 3339 time");
    audit_show->add_flag("--json", audit_args.json, "One JSON record per line, as stored");

    auto* runbooks = app.add_subcommand("runbooks", "List runbooks and their runs on a running tocsind, and "
                                                    "approve, reject or cancel runs");
    runbooks->require_subcommand(1);
    tocsin::runbooks_command runbooks_args;
    auto runbooks_connection = [&](CLI::App* sub) {
        sub->add_option("--url", runbooks_args.url,
                        fmt::format("tocsind's address; default: $TOCSIN_URL, else {}", tocsin::default_tocsin_url));
        sub->add_option("--token-file", runbooks_args.token_file,
                        "File holding an admin token (see auth.admin_token_files), needed by every runbook "
                        "command; default: the token itself in $TOCSIN_TOKEN");
        sub->add_option("--ca-file", runbooks_args.ca_file, "PEM CA certificate to verify an https:// tocsind");
        sub->add_option("--timeout", runbooks_args.timeout, "Timeout of the request")->capture_default_str();
    };
    auto* runbooks_list = runbooks->add_subcommand("list", "List the loaded runbooks, their triggers and steps");
    runbooks_connection(runbooks_list);
    runbooks_list->add_flag("--json", runbooks_args.json, "Print the server's JSON instead of the table");
    auto* runbooks_runs = runbooks->add_subcommand(
        "runs", "List runs, newest first, and the episodes a guard skipped (silenced, cooldown, max_runs)");
    runbooks_connection(runbooks_runs);
    runbooks_runs->add_option("--runbook", runbooks_args.runbook, "Only runs of this runbook");
    runbooks_runs->add_option("--phase", runbooks_args.phase,
                              "Only runs in this phase: queued, running, waiting_approval or finished");
    runbooks_runs->add_flag("--json", runbooks_args.json, "Print the server's JSON instead of the tables");
    auto* runbooks_show = runbooks->add_subcommand("show", "Show one run and its steps");
    runbooks_connection(runbooks_show);
    runbooks_show->add_option("RUN_ID", runbooks_args.run_id, "The run id, r and 16 hex digits")->required();
    runbooks_show->add_flag("--json", runbooks_args.json, "Print the server's JSON");
    std::vector<std::pair<CLI::App*, tocsin::runbooks_command::action>> runbook_actions;
    for (const auto& [name, help, what] :
         {std::tuple{"approve", "Approve a run waiting for approval, so that it goes on",
                     tocsin::runbooks_command::action::approve},
          std::tuple{"reject", "Reject a run waiting for approval; it ends rejected",
                     tocsin::runbooks_command::action::reject},
          std::tuple{"cancel", "Cancel a run before its next step; it ends cancelled",
                     tocsin::runbooks_command::action::cancel}}) {
        auto* sub = runbooks->add_subcommand(name, help);
        runbooks_connection(sub);
        sub->add_option("RUN_ID", runbooks_args.run_id, "The run id, r and 16 hex digits")->required();
        sub->add_option("--by", runbooks_args.by, "Who decides; recorded in the audit log")->required();
        sub->add_option("--reason", runbooks_args.reason,
                        what == tocsin::runbooks_command::action::approve ? "Why (optional)" : "Why (required)");
        runbook_actions.emplace_back(sub, what);
    }

    auto* version = app.add_subcommand("version", "Print the version");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        // app.exit prints the help or the usage error; --help exits 0, a usage error exits 2.
        return app.exit(e) == 0 ? 0 : 2;
    }

    if (check->parsed()) {
        return check_config(config_path);
    }
    if (audit_verify->parsed()) {
        return tocsin::run_audit_verify(audit_args, std::cout, std::cerr);
    }
    if (audit_show->parsed()) {
        return tocsin::run_audit_show(audit_args, tocsin::system_clock().now_ms(), std::cout, std::cerr);
    }
    if (check_rules_command->parsed()) {
        return check_rules(rule_files);
    }
    if (routes_test->parsed()) {
        return test_routes(routes_config, route_labels, verify_receivers);
    }
    if (test_rules->parsed()) {
        return static_cast<int>(tocsin::run_rule_test_files(rule_test_files, stdout, stderr));
    }
    if (backtest->parsed()) {
        return tocsin::run_backtest_command(backtest_args);
    }
    if (silence->parsed()) {
        using action = tocsin::silence_command::action;
        silence_args.subcommand = silence_add->parsed()      ? action::add
                            : silence_expire->parsed() ? action::expire
                            : silence_update->parsed() ? action::update
                                                       : action::query;
        return tocsin::run_silence_command(silence_args);
    }
    if (report_noise->parsed()) {
        return tocsin::run_report_command(report_args);
    }
    if (runbooks->parsed()) {
        using action = tocsin::runbooks_command::action;
        runbooks_args.subcommand = runbooks_runs->parsed() ? action::runs
                                   : runbooks_show->parsed() ? action::show
                                                             : action::list;
        for (const auto& [sub, what] : runbook_actions) {
            if (sub->parsed()) {
                runbooks_args.subcommand = what;
            }
        }
        return tocsin::run_runbooks_command(runbooks_args);
    }
    if (version->parsed()) {
        std::printf("tocsinctl %s\n", tocsin_version);
        return 0;
    }
    return 2;
}
