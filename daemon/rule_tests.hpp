#pragma once
// Unit tests for rule files, in the format of `promtool test rules` where it applies: a test
// file names rule files, gives input series in promtool's expanding notation, and lists the
// alerts expected to be firing at given times. `tocsinctl test rules FILE...` runs them through
// a fresh rule engine per test, so a passing test shows what the daemon would do with the same
// samples. The format and its differences from promtool are described in docs/RULE_TESTS.md.
//
// Thread safety: the functions keep no shared state; each call may run on any thread.

#include <cstddef>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rules/clock.hpp"
#include "rules/diagnostics.hpp"
#include "rules/labels.hpp"

namespace tocsin {

// Exit statuses of `tocsinctl test rules`. 2 is CLI11's usage error, as for every subcommand.
enum class rule_test_exit : int {
    passed = 0,       // every check of every file passed
    failed = 1,       // at least one check failed, and every file loaded
    usage = 2,        // bad command line
    invalid_file = 3, // a test file, or a rule file it names, is invalid or missing; it did not run
};

// Bounds on the input a test file may expand to, so that a typo such as 1x100000000000 fails
// with a message instead of exhausting memory.
struct rule_test_limits {
    std::size_t max_samples_per_series = 1'000'000;
    std::size_t max_samples_per_test = 5'000'000; // all series of one test together
};

// A problem in a notation string, at a byte offset of that string.
struct notation_error {
    std::size_t offset = 0;
    std::string message; // "what is wrong; what was expected"
};

// Expands promtool's series value notation into one entry per sample interval; an empty
// optional is a missing sample. Items are separated by spaces:
//   a          one value: a number, 1e3, Inf, -Inf or NaN (case-insensitive), or `stale`
//   a+bxn      n+1 values a, a+b, ..., a+n*b, each the previous plus b, as promtool adds them
//   a-bxn      the same with -b
//   axn        a repeated n+1 times (also `stalexn`)
//   _          one missing sample
//   _xn        n missing samples
// `stale` is a Prometheus stale marker (the NaN with bits 0x7ff0000000000002). More than
// `max_samples` values is an error.
std::optional<std::vector<std::optional<double>>> expand_series_values(std::string_view text, std::size_t max_samples,
                                                                       notation_error& error);

// Parses a series in Prometheus notation: metric{name="value", ...}, {__name__="metric", ...}
// or {"metric.name", "label.name"="value"}. Values are string literals with Go escapes; names
// are identifiers or string literals. The result includes __name__.
std::optional<label_set> parse_series_labels(std::string_view text, notation_error& error);

// One expected or actual alert in a failed check.
struct rule_test_alert {
    label_set labels;
    std::vector<std::pair<std::string, std::string>> annotations; // sorted by name
    bool annotations_given = true; // false for an expected alert without exp_annotations
};

// An alert_rule_test entry whose firing alerts differ from the expected ones.
struct rule_test_failure {
    std::string file;       // the test file
    std::string test;       // the test's name, or tests[i] when it has none
    std::string alertname;
    time_ms eval_time = 0;  // milliseconds from the test's start_timestamp
    std::string eval_time_text; // as written in the test file, such as 2000h
    int line = 0;           // position of the alert_rule_test entry in the test file
    int column = 0;
    std::vector<rule_test_alert> expected;
    std::vector<rule_test_alert> got;
};

struct rule_test_file_result {
    std::string file;
    // Problems that kept the file from running: YAML, format, notation and rule-file errors.
    // When it is not empty, no test of the file ran.
    diagnostics errors;
    std::size_t tests = 0;  // test groups run
    std::size_t checks = 0; // alert_rule_test entries evaluated
    std::vector<rule_test_failure> failures;

    bool passed() const { return errors.empty() && failures.empty(); }
};

// Loads the test file at `path`, its rule files (globs relative to the test file's folder),
// and runs every test.
rule_test_file_result run_rule_test_file(const std::string& path, const rule_test_limits& limits = {});

// Formats one failure as promtool does, with both alert lists in diff form: "-" lines are
// expected but not firing, "+" lines are firing but not expected, "~" lines have the expected
// labels but other annotations.
std::string format_rule_test_failure(const rule_test_failure& failure);

// Runs every file, prints the results to `out` and the errors to `err`, and returns the exit
// status of `tocsinctl test rules`.
rule_test_exit run_rule_test_files(const std::vector<std::string>& paths, std::FILE* out, std::FILE* err,
                                   const rule_test_limits& limits = {});

} // namespace tocsin
