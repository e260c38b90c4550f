#include "rules/expr.hpp"

#include <charconv>
#include <cmath>

#include <fmt/format.h>

#include "rules/duration.hpp"
#include "rules/promql_lexer.hpp"

namespace tocsin {

namespace {

constexpr std::string_view forms =
    "metric{label=\"value\", ...}, rate(SEL[W]), increase(SEL[W]), delta(SEL[W]), avg_over_time(SEL[W]), "
    "min_over_time(SEL[W]), max_over_time(SEL[W]), quantile_over_time(Q, SEL[W])";

struct function_info {
    std::string_view name;
    transform_kind kind;
};

constexpr function_info functions[] = {
    {"rate", transform_kind::rate},
    {"increase", transform_kind::increase},
    {"delta", transform_kind::delta},
    {"avg_over_time", transform_kind::avg},
    {"min_over_time", transform_kind::min},
    {"max_over_time", transform_kind::max},
    {"quantile_over_time", transform_kind::quantile},
};

constexpr std::string_view aggregations[] = {"sum",    "avg",      "min",   "max",          "count",
                                             "group",  "stddev",   "stdvar", "topk",        "bottomk",
                                             "quantile", "count_values", "limitk", "limit_ratio"};

class parser {
public:
    parser(std::string_view text, expr_error& error) : text_(text), error_(error) {}

    std::optional<parsed_expr> parse();

private:
    bool fail(std::size_t offset, std::string message)
    {
        error_.offset = offset;
        error_.message = std::move(message);
        return false;
    }

    bool at(char c) const { return pos_ < text_.size() && text_[pos_] == c; }
    bool parse_selector(parsed_expr& out);
    bool parse_braces(parsed_expr& out);
    bool parse_call(const std::string& name, std::size_t name_pos, parsed_expr& out);
    bool parse_window(const std::string& function, parsed_expr& out);
    bool parse_number(double& out);
    bool check_trailing();

    std::string_view text_;
    expr_error& error_;
    std::size_t pos_ = 0;
};

std::optional<parsed_expr> parser::parse()
{
    parsed_expr out;
    promql::skip_spaces(text_, pos_);
    if (pos_ >= text_.size()) {
        fail(0, fmt::format("empty expr; expected one of: {}", forms));
        return std::nullopt;
    }

    const std::size_t start = pos_;
    std::string name;
    if (promql::read_identifier(text_, pos_, name, true)) {
        promql::skip_spaces(text_, pos_);
        if (at('(') || (pos_ < text_.size() && (text_.substr(pos_).starts_with("by") ||
                                                text_.substr(pos_).starts_with("without")))) {
            if (!parse_call(name, start, out)) {
                return std::nullopt;
            }
        } else {
            pos_ = start;
            if (!parse_selector(out)) {
                return std::nullopt;
            }
            promql::skip_spaces(text_, pos_);
            if (at('[')) {
                fail(pos_, fmt::format("a range selector such as {}[5m] needs a function; expected rate({}[5m]), "
                                       "avg_over_time({}[5m]) or another of: {}",
                                       out.metric, out.metric, out.metric, forms));
                return std::nullopt;
            }
        }
    } else if (at('{')) {
        if (!parse_selector(out)) {
            return std::nullopt;
        }
        promql::skip_spaces(text_, pos_);
        if (at('[')) {
            fail(pos_, fmt::format("a range selector needs a function; expected one of: {}", forms));
            return std::nullopt;
        }
    } else {
        fail(pos_, fmt::format("unexpected '{}' at the start of expr; expected one of: {}", text_[pos_], forms));
        return std::nullopt;
    }
    if (!check_trailing()) {
        return std::nullopt;
    }
    return out;
}

bool parser::parse_selector(parsed_expr& out)
{
    std::string name;
    if (promql::read_identifier(text_, pos_, name, true)) {
        out.metric = name;
    }
    promql::skip_spaces(text_, pos_);
    if (at('{')) {
        if (!parse_braces(out)) {
            return false;
        }
    }
    if (out.metric.empty()) {
        return fail(0, "a metric name is required; expected metric{...} or {__name__=\"metric\", ...}");
    }
    return true;
}

bool parser::parse_braces(parsed_expr& out)
{
    const std::size_t open = pos_;
    ++pos_; // '{'
    while (true) {
        promql::skip_spaces(text_, pos_);
        if (pos_ >= text_.size()) {
            return fail(open, "unclosed '{'; expected '}' after the label matchers");
        }
        if (at('}')) {
            ++pos_;
            return true;
        }

        const std::size_t item_pos = pos_;
        bool done = false;
        if (at('"') || at('\'') || at('`')) {
            // A quoted string alone is the metric name: {"http.requests", job="x"}.
            std::string quoted;
            std::string problem;
            if (!promql::read_string(text_, pos_, quoted, problem)) {
                return fail(pos_, problem);
            }
            promql::skip_spaces(text_, pos_);
            if (at(',') || at('}')) {
                if (!out.metric.empty() && out.metric != quoted) {
                    return fail(item_pos, fmt::format("the metric name is given twice, as {} and {}; keep one",
                                                      promql::quote(out.metric), promql::quote(quoted)));
                }
                out.metric = quoted;
                done = true;
            } else {
                pos_ = item_pos;
            }
        }
        if (!done) {
            std::string problem;
            auto matcher = promql::read_matcher(text_, pos_, false, problem);
            if (!matcher) {
                return fail(pos_, problem);
            }
            if (matcher->name() == "__name__" && matcher->op() == match_op::equal) {
                if (!out.metric.empty() && out.metric != matcher->value()) {
                    return fail(item_pos, fmt::format("the metric name is given twice, as {} and {}; keep one",
                                                      promql::quote(out.metric), promql::quote(matcher->value())));
                }
                if (matcher->value().empty()) {
                    return fail(item_pos, "__name__=\"\" selects nothing; expected a metric name");
                }
                out.metric = matcher->value();
            } else {
                out.matchers.push_back(std::move(*matcher));
            }
        }

        promql::skip_spaces(text_, pos_);
        if (at(',')) {
            ++pos_;
            continue;
        }
        if (!at('}')) {
            if (pos_ >= text_.size()) {
                return fail(open, "unclosed '{'; expected '}' after the label matchers");
            }
            return fail(pos_, fmt::format("unexpected '{}' after a label matcher; expected ',' or '}}'", text_[pos_]));
        }
    }
}

bool parser::parse_call(const std::string& name, std::size_t name_pos, parsed_expr& out)
{
    const function_info* function = nullptr;
    for (const auto& f : functions) {
        if (f.name == name) {
            function = &f;
        }
    }
    if (function == nullptr) {
        for (auto a : aggregations) {
            if (a == name) {
                return fail(name_pos, fmt::format("aggregation {} is not supported, because tocsin evaluates each "
                                                  "series on its own; aggregate in a Prometheus recording rule and "
                                                  "remote_write its output, or use one of: {}",
                                                  name, forms));
            }
        }
        return fail(name_pos, fmt::format("unsupported function {}; expected one of: {}", name, forms));
    }
    if (!at('(')) {
        return fail(pos_, fmt::format("expected '(' after {}", name));
    }
    ++pos_;
    promql::skip_spaces(text_, pos_);
    out.xform.kind = function->kind;

    if (function->kind == transform_kind::quantile) {
        const std::size_t number_pos = pos_;
        double q = 0;
        if (!parse_number(q)) {
            return fail(number_pos, "quantile_over_time needs a quantile first; expected quantile_over_time(0.9, "
                                    "metric[5m])");
        }
        if (!(q >= 0 && q <= 1)) {
            return fail(number_pos, fmt::format("quantile {} is outside [0, 1]; expected for example 0.99 for the "
                                                "99th percentile",
                                                q));
        }
        out.xform.quantile = q;
        promql::skip_spaces(text_, pos_);
        if (!at(',')) {
            return fail(pos_, "expected ',' after the quantile; expected quantile_over_time(0.9, metric[5m])");
        }
        ++pos_;
        promql::skip_spaces(text_, pos_);
    }

    const std::size_t selector_pos = pos_;
    if (pos_ < text_.size() && promql::is_identifier_start(text_[pos_])) {
        // A nested call such as rate(sum(x)[5m]) is not a selector.
        std::size_t probe = pos_;
        std::string inner;
        promql::read_identifier(text_, probe, inner, true);
        promql::skip_spaces(text_, probe);
        if (probe < text_.size() && text_[probe] == '(') {
            return fail(selector_pos, fmt::format("{} takes a range selector such as metric[5m], not a function "
                                                  "call; expected one of: {}",
                                                  name, forms));
        }
    }
    if (!(pos_ < text_.size() && (promql::is_identifier_start(text_[pos_]) || text_[pos_] == ':' || at('{')))) {
        return fail(pos_, fmt::format("{} needs a range selector; expected {}(metric[5m])", name, name));
    }
    if (!parse_selector(out)) {
        return false;
    }
    if (!parse_window(name, out)) {
        return false;
    }
    promql::skip_spaces(text_, pos_);
    if (!at(')')) {
        if (pos_ >= text_.size()) {
            return fail(name_pos, fmt::format("unclosed '(' of {}; expected ')'", name));
        }
        return fail(pos_, fmt::format("unexpected '{}' in {}(...); expected ')'", text_[pos_], name));
    }
    ++pos_;
    return true;
}

bool parser::parse_window(const std::string& function, parsed_expr& out)
{
    promql::skip_spaces(text_, pos_);
    if (!at('[')) {
        return fail(pos_, fmt::format("{} needs a range window; expected {}({}[5m])", function, function, out.metric));
    }
    const std::size_t open = pos_;
    ++pos_;
    const auto close = text_.find(']', pos_);
    if (close == std::string_view::npos) {
        return fail(open, "unclosed '['; expected a window such as [5m]");
    }
    std::string_view window = text_.substr(pos_, close - pos_);
    while (!window.empty() && window.front() == ' ') {
        window.remove_prefix(1);
    }
    while (!window.empty() && window.back() == ' ') {
        window.remove_suffix(1);
    }
    if (window.find(':') != std::string_view::npos) {
        return fail(pos_, "subqueries such as [1h:5m] are not supported; expected a window such as [5m]");
    }
    std::string problem;
    auto d = parse_duration(window, problem);
    if (!d) {
        return fail(pos_, fmt::format("invalid window: {}", problem));
    }
    if (d->count() <= 0) {
        return fail(pos_, fmt::format("the window of {} must be greater than 0; expected for example [5m]", function));
    }
    out.xform.window = *d;
    pos_ = close + 1;
    return true;
}

bool parser::parse_number(double& out)
{
    const std::size_t start = pos_;
    while (pos_ < text_.size() && std::string_view("0123456789.eE+-").find(text_[pos_]) != std::string_view::npos) {
        ++pos_;
    }
    std::string_view token = text_.substr(start, pos_ - start);
    if (!token.empty() && token.front() == '+') {
        token.remove_prefix(1);
    }
    if (token.empty()) {
        pos_ = start;
        return false;
    }
    auto [ptr, ec] = std::from_chars(token.data(), token.data() + token.size(), out);
    if (ec != std::errc() || ptr != token.data() + token.size()) {
        pos_ = start;
        return false;
    }
    return true;
}

bool parser::check_trailing()
{
    promql::skip_spaces(text_, pos_);
    if (pos_ >= text_.size()) {
        return true;
    }
    const std::string_view rest = text_.substr(pos_);
    for (std::string_view op : {">=", "<=", "==", "!=", ">", "<"}) {
        if (rest.starts_with(op)) {
            return fail(pos_, fmt::format("comparisons do not belong in expr; move \"{}\" to tiers, for example "
                                          "tiers: {{warning: \"{}\"}}",
                                          rest, rest));
        }
    }
    for (std::string_view op : {"+", "-", "*", "/", "%", "^", "and", "or", "unless"}) {
        if (rest.starts_with(op)) {
            return fail(pos_, fmt::format("binary operator {} is not supported in expr; compute the result with a "
                                          "Prometheus recording rule and remote_write it to tocsin",
                                          op));
        }
    }
    if (rest.starts_with("offset") || rest.starts_with("@")) {
        return fail(pos_, "offset and @ modifiers are not supported, because tocsin evaluates samples as they "
                          "arrive");
    }
    return fail(pos_, fmt::format("unexpected \"{}\" after the expression; expected one of: {}", rest, forms));
}

} // namespace

std::optional<parsed_expr> parse_expr(std::string_view text, expr_error& error)
{
    parser p(text, error);
    return p.parse();
}

std::string_view expr_forms()
{
    return forms;
}

} // namespace tocsin
