#pragma once
// The `expr` of a rule: a PromQL subset that selects series and optionally applies one
// per-series range function. Binary operators, aggregations and comparisons are not part of
// it, because tocsin evaluates each series on its own and compares in `tiers`.
//
//   metric{a="b", c=~"d.*"}      {__name__="metric", ...}      {"service.name"="x", __name__="m"}
//   rate(SEL[W])  increase(SEL[W])  delta(SEL[W])
//   avg_over_time(SEL[W])  min_over_time(SEL[W])  max_over_time(SEL[W])
//   quantile_over_time(Q, SEL[W])   with 0 <= Q <= 1

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rules/matcher.hpp"
#include "rules/rule.hpp"

namespace tocsin {

struct parsed_expr {
    std::string metric;                  // the required metric name
    std::vector<label_matcher> matchers; // without the __name__ matcher
    transform xform;                     // kind none when there is no function
};

struct expr_error {
    std::size_t offset = 0; // byte offset in the expression
    std::string message;    // "what is wrong; what was expected"
};

std::optional<parsed_expr> parse_expr(std::string_view text, expr_error& error);

// The accepted forms, for error messages.
std::string_view expr_forms();

} // namespace tocsin
