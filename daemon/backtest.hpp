#pragma once
// Backtests: replays recorded series through the rule engine and reports what would have
// fired. The engine is the daemon's own (same rules, same state machine, same detectors), fed
// on sample time with a manual clock, so identical samples give identical alerts.
//
// Inputs are CSV files of timestamp,value and Prometheus HTTP API query_range responses (see
// read_input_file). The runner merges every series in time order, and the report lists alert
// episodes and per-rule noise figures. Charts and per-evaluation CSV files come from
// write_charts and write_samples_csv. docs/BACKTEST.md describes the command.
//
// Thread safety: none; every function works on its own arguments.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rules/clock.hpp"
#include "rules/diagnostics.hpp"
#include "rules/engine.hpp"
#include "rules/labels.hpp"
#include "rules/rule.hpp"
#include "rules/sample_time.hpp"

namespace tocsin {

// Limits on what the readers accept, so a wrong path (a disk image, /dev/zero) fails with a
// message instead of exhausting memory.
struct backtest_input_limits {
    std::size_t max_file_bytes = std::size_t{256} << 20; // per input file
    std::size_t max_samples = 20'000'000;              // all inputs together
    std::size_t max_series = 10'000;                   // all inputs together
};

struct backtest_read_options {
    std::string metric;        // sets __name__ of every series when not empty
    std::vector<label> labels; // added to every series, replacing a label of the same name
    // Skip malformed rows and out-of-order timestamps instead of failing; each skipped row is
    // reported as a warning.
    bool skip_bad_rows = false;
    backtest_input_limits limits;
};

// One recorded series.
struct recorded_series {
    std::string source; // the input file
    label_set labels;   // __name__ included
    std::vector<time_ms> times; // strictly increasing
    std::vector<double> values;
    // CSV inputs: the timestamp text of each sample exactly as the file wrote it, packed into
    // one buffer; sample i is [time_text_end[i-1], time_text_end[i]). Empty for JSON inputs.
    std::string time_text;
    std::vector<std::uint32_t> time_text_end;

    std::size_t size() const { return times.size(); }
    // The timestamp of sample i as the input wrote it (CSV), else Unix seconds with the
    // milliseconds as a fraction ("1700000000.5").
    std::string timestamp_text(std::size_t i) const;
};

// The series read from the input files, and the warnings of reading them.
struct backtest_inputs {
    std::vector<recorded_series> series;
    std::size_t samples = 0;
    diagnostics warnings; // rows skipped under skip_bad_rows, unit decisions
};

// Parses one CSV text of `timestamp,value` rows. A first row whose value is not a number is a
// header. Timestamps are Unix seconds (a fraction allowed), or Unix milliseconds when the
// number is above 1e11, because 1e11 seconds is the year 5138 and 1e11 milliseconds is March
// 1973. The first numeric row decides the unit for the whole file. Dates may be written
// "YYYY-MM-DD HH:MM:SS[.fff]" or RFC 3339 "YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM)", and are UTC
// unless an offset is given. Errors go to `errors` as file:line:column: message. Returns false
// on any error.
bool read_csv_text(std::string_view text, const std::string& file_name, const backtest_read_options& options,
                   backtest_inputs& into, diagnostics& errors);

// Parses a Prometheus HTTP API response of a range query ({"status":"success","data":
// {"resultType":"matrix","result":[...]}}) or a plain JSON array of its result objects
// ({"metric":{...},"values":[[1700000000.5,"1.5"],...]}). Timestamps are Unix seconds as
// Prometheus writes them. Errors name the file and the JSON path of the bad element
// (curl output is one line, so a line number would not help), or the line and column of a
// syntax error.
bool read_prometheus_json_text(std::string_view text, const std::string& file_name,
                               const backtest_read_options& options, backtest_inputs& into, diagnostics& errors);

// Reads one input file: JSON when its first non-blank character is '{' or '[', else CSV.
bool read_input_file(const std::string& path, const backtest_read_options& options, backtest_inputs& into,
                     diagnostics& errors);

// Checks what spans files: no two series may have the same label set, because the engine
// would take them as one series and drop one's samples as out of order.
bool check_distinct_series(const backtest_inputs& inputs, diagnostics& errors);

// One value evaluated by one rule on one series, kept for charts and samples-csv.
struct evaluation_record {
    time_ms at = 0;
    double value = 0; // after the rule's transform
    double score = 0; // dynamic rules
    double baseline = 0;
    double scale = 0;
    bool dynamic = false;
    bool ready = true; // dynamic rules: the detector had enough history
    alert_state state = alert_state::inactive;
    severity level = severity::warning;
};

// The firing or pending life of one alert, from its first pending or firing event to its
// resolution.
struct alert_episode {
    std::size_t rule_index = 0;   // into rule_set::rules
    std::size_t series_index = 0; // into backtest_inputs::series
    bool no_data = false;         // a no-data alert (no_data_action::alert)
    time_ms active_at = 0;        // first pending (or firing, without `for`)
    std::optional<time_ms> fired_at;
    std::optional<time_ms> resolved_at; // empty while still open at the end of the input
    std::string resolve_reason;
    severity peak = severity::warning; // highest severity while firing
    // Severity changes while firing, in time order; the first is the firing itself.
    std::vector<std::pair<time_ms, severity>> levels;
    double value_at_start = 0; // value when it started firing (after the transform)
    std::optional<detector_output> detector_at_start; // dynamic rules
};

// The evaluations of one rule on one series, kept only when requested.
struct binding_trace {
    std::size_t rule_index = 0;
    std::size_t series_index = 0;
    std::vector<evaluation_record> evaluations; // only with backtest_options::keep_evaluations
    std::size_t evaluated = 0;                  // evaluations, kept or not
    std::size_t warming_up = 0;                 // of those, dynamic ones whose detector was not ready
    std::size_t baseline_samples = 0;           // dynamic rules: the most samples the baseline held
};

struct backtest_options {
    engine_limits limits; // the struct defaults: no timestamp checks against the clock
    bool keep_evaluations = false; // fill backtest_result::traces (charts, samples-csv)
};

struct ingest_counts {
    std::uint64_t accepted = 0;
    std::uint64_t rejected = 0; // duplicates, out of order, series limit, stale markers
};

struct backtest_result {
    std::shared_ptr<const rule_set> rules;
    std::vector<alert_episode> episodes; // in order of their first event
    std::vector<binding_trace> traces;   // sorted by rule, then series
    ingest_counts ingest;
    time_ms first_sample_at = 0;
    time_ms last_sample_at = 0;
    std::size_t evaluations = 0; // observer calls; 0 means the engine reported none
};

// Runs the rules over every series, merged in time order. The manual clock is set to each
// sample's timestamp before the sample is ingested, and tick() runs whenever the clock
// moves, so no-data timers behave as in the daemon at sample resolution.
backtest_result run_backtest(std::shared_ptr<const rule_set> rules, const backtest_inputs& inputs,
                             const backtest_options& options);

// Noise figures of one rule, or of all rules together.
struct noise_summary {
    std::string rule; // empty for the total
    std::size_t series = 0; // series the rule selected
    std::size_t fired = 0;  // episodes that reached firing
    std::optional<double> alerts_per_day; // fired / span in days; empty when the span is 0
    std::optional<std::int64_t> median_firing_ms; // over fired episodes that resolved
    // Fired episodes resolved within 5 minutes of firing, over all fired episodes.
    std::optional<double> resolved_within_5m_share;
    std::size_t pending_never_fired = 0; // episodes that resolved without firing
    std::size_t still_pending = 0;       // pending at the end of the input
    std::size_t open = 0;                // firing at the end of the input
};

struct backtest_summary {
    std::vector<noise_summary> rules; // in rule order
    noise_summary total;
    double span_days = 0;
};

backtest_summary summarize(const backtest_result& result, const backtest_inputs& inputs);

// The report as text: one line per fired episode, then the noise summary.
std::string format_report_text(const backtest_result& result, const backtest_inputs& inputs,
                               const backtest_summary& summary);
// The same as a JSON document.
std::string format_report_json(const backtest_result& result, const backtest_inputs& inputs,
                               const backtest_summary& summary);

// A file-name-safe stem for a (rule, series) pair: rule, metric and a short hash of the labels.
std::string binding_file_stem(const rule& r, const recorded_series& series);

// Writes one SVG chart per (rule, series) pair the rule selected into `dir` (created when
// missing). Returns the written paths; on failure sets `error` and returns what was written.
std::vector<std::string> write_charts(const backtest_result& result, const backtest_inputs& inputs,
                                      const std::string& dir, std::string& error);

// Renders the chart of one trace.
std::string render_binding_chart(const backtest_result& result, const backtest_inputs& inputs,
                                 const binding_trace& trace);

// Writes one CSV per (rule, series) pair: timestamp,value,score,ready,state,severity, one row
// per input sample of the series, the timestamp written as the input wrote it. A row whose
// fields after the timestamp are empty is a sample the rule did not evaluate (its transform
// window was not filled yet, or the value was NaN and ignored).
std::vector<std::string> write_samples_csv(const backtest_result& result, const backtest_inputs& inputs,
                                           const std::string& dir, std::string& error);

// Everything `tocsinctl backtest` takes on its command line.
struct backtest_command {
    std::vector<std::string> rule_files;
    std::string config_file;
    std::vector<std::string> inputs;
    std::string metric;
    std::vector<std::string> labels; // name=value
    std::string svg_dir;
    std::string samples_csv_dir;
    bool json = false;
    bool skip_bad_rows = false;
    backtest_input_limits limits;
};

// Runs the command: loads rules and inputs, runs, prints the report on stdout and errors on
// stderr. Returns the exit status: 0 done, 1 invalid rules or inputs or a write failure,
// 2 a usage error.
int run_backtest_command(const backtest_command& command);

} // namespace tocsin
