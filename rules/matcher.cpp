#include "rules/matcher.hpp"

#include <re2/re2.h>

#include <fmt/format.h>

#include "rules/promql_lexer.hpp"

namespace tocsin {

std::optional<label_matcher> label_matcher::make(std::string name, match_op op, std::string value,
                                                 std::string& error)
{
    if (name.empty()) {
        error = "empty label name; expected a name such as instance or \"service.name\"";
        return std::nullopt;
    }
    if (!is_valid_utf8(name)) {
        error = "invalid UTF-8 in label name";
        return std::nullopt;
    }
    if (!is_valid_utf8(value)) {
        error = fmt::format("invalid UTF-8 in the value of label {}", promql::format_label_name(name));
        return std::nullopt;
    }

    label_matcher m;
    if (op == match_op::regex || op == match_op::not_regex) {
        // (?s) lets `.` match a newline, as in PromQL. FullMatch anchors both ends, so the
        // pattern must match the whole value.
        RE2::Options options;
        options.set_log_errors(false);
        auto regex = std::make_shared<const RE2>("(?s:" + value + ")", options);
        if (!regex->ok()) {
            // RE2 describes the error in terms of the wrapped pattern; compiling the user's
            // pattern alone gives a message about the text they wrote.
            RE2 bare(value, options);
            const std::string& reason = bare.ok() ? regex->error() : bare.error();
            error = fmt::format("invalid regex {} for label {}: {}; use RE2 syntax", promql::quote(value),
                                promql::format_label_name(name), reason);
            return std::nullopt;
        }
        m.regex_ = std::move(regex);
    }
    m.name_ = std::move(name);
    m.op_ = op;
    m.value_ = std::move(value);
    return m;
}

std::optional<label_matcher> label_matcher::parse(std::string_view text, std::string& error)
{
    std::size_t pos = 0;
    promql::skip_spaces(text, pos);
    auto matcher = promql::read_matcher(text, pos, true, error);
    if (!matcher) {
        error = fmt::format("{} (column {} of {})", error, pos + 1, promql::quote(text));
        return std::nullopt;
    }
    promql::skip_spaces(text, pos);
    if (pos != text.size()) {
        error = fmt::format("unexpected text {} after the matcher {}; expected one matcher such as "
                            "name=\"value\"",
                            promql::quote(text.substr(pos)), matcher->to_string());
        return std::nullopt;
    }
    return matcher;
}

bool label_matcher::matches(std::string_view value) const
{
    switch (op_) {
    case match_op::equal: return value == value_;
    case match_op::not_equal: return value != value_;
    case match_op::regex: return RE2::FullMatch(value, *regex_);
    case match_op::not_regex: return !RE2::FullMatch(value, *regex_);
    }
    return false;
}

std::string label_matcher::to_string() const
{
    const char* symbol = "=";
    switch (op_) {
    case match_op::equal: symbol = "="; break;
    case match_op::not_equal: symbol = "!="; break;
    case match_op::regex: symbol = "=~"; break;
    case match_op::not_regex: symbol = "!~"; break;
    }
    return promql::format_label_name(name_) + symbol + promql::quote(value_);
}

} // namespace tocsin
