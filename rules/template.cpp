#include "rules/template.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <optional>

#include <fmt/format.h>

#include "rules/promql_lexer.hpp"

namespace tocsin {

namespace {

constexpr std::string_view known_functions =
    "humanize, humanize1024, humanizePercentage, humanizeDuration, printf, index";

bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

// Formats like Go's fmt "%.4g": C's %g with Go's spelling of NaN and infinities.
std::string format_g4(double value)
{
    if (std::isnan(value)) {
        return "NaN";
    }
    if (std::isinf(value)) {
        return value > 0 ? "+Inf" : "-Inf";
    }
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, "%.4g", value);
    return buffer;
}

// Formats like Go's fmt "%v" for a float64: the shortest text that reads back as the same
// value, in exponent form when the decimal exponent is below -4 or at least 21.
std::string format_go_float(double value)
{
    if (std::isnan(value)) {
        return "NaN";
    }
    if (std::isinf(value)) {
        return value > 0 ? "+Inf" : "-Inf";
    }
    if (value == 0) {
        return std::signbit(value) ? "-0" : "0";
    }
    char buffer[64];
    auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::scientific);
    std::string scientific(buffer, end);
    const auto e = scientific.find('e');
    const int exponent = std::atoi(scientific.c_str() + e + 1);
    if (exponent < -4 || exponent >= 21) {
        return scientific;
    }
    // Rebuild a fixed form from the shortest digits.
    std::string digits;
    bool negative = false;
    for (std::size_t i = 0; i < e; ++i) {
        if (scientific[i] == '-') {
            negative = true;
        } else if (scientific[i] != '.') {
            digits += scientific[i];
        }
    }
    std::string out = negative ? "-" : "";
    if (exponent < 0) {
        out += "0.";
        out.append(static_cast<std::size_t>(-exponent - 1), '0');
        out += digits;
    } else {
        const auto integer_digits = static_cast<std::size_t>(exponent) + 1;
        if (digits.size() <= integer_digits) {
            out += digits;
            out.append(integer_digits - digits.size(), '0');
        } else {
            out += digits.substr(0, integer_digits);
            out += '.';
            out += digits.substr(integer_digits);
        }
    }
    return out;
}

// One printf format split around its single verb.
struct printf_format {
    std::string prefix; // literal text, %% already unescaped
    std::string spec;   // flags, width and precision between '%' and the verb
    char verb = 'v';
    std::string suffix;
};

std::optional<printf_format> split_printf(std::string_view format, std::string& error)
{
    printf_format out;
    bool seen_verb = false;
    for (std::size_t i = 0; i < format.size(); ++i) {
        std::string& literal = seen_verb ? out.suffix : out.prefix;
        if (format[i] != '%') {
            literal += format[i];
            continue;
        }
        if (i + 1 < format.size() && format[i + 1] == '%') {
            literal += '%';
            ++i;
            continue;
        }
        if (seen_verb) {
            error = fmt::format("printf format {} has more than one verb; expected exactly one, such as %.2f",
                                promql::quote(format));
            return std::nullopt;
        }
        std::size_t j = i + 1;
        while (j < format.size() && std::string_view("+- #0").find(format[j]) != std::string_view::npos) {
            ++j;
        }
        while (j < format.size() && format[j] >= '0' && format[j] <= '9') {
            ++j;
        }
        if (j < format.size() && format[j] == '.') {
            ++j;
            while (j < format.size() && format[j] >= '0' && format[j] <= '9') {
                ++j;
            }
        }
        if (j >= format.size()) {
            error = fmt::format("printf format {} ends inside a verb; expected a verb such as %.2f or %s",
                                promql::quote(format));
            return std::nullopt;
        }
        out.spec.assign(format.substr(i + 1, j - i - 1));
        out.verb = format[j];
        seen_verb = true;
        i = j;
    }
    if (!seen_verb) {
        error = fmt::format("printf format {} has no verb; expected exactly one, such as %.2f",
                            promql::quote(format));
        return std::nullopt;
    }
    return out;
}

bool is_number_verb(char verb)
{
    return std::string_view("eEfFgGv").find(verb) != std::string_view::npos;
}

bool is_string_verb(char verb)
{
    return verb == 's' || verb == 'v' || verb == 'q';
}

std::string render_printf_number(const printf_format& f, double value)
{
    std::string body;
    if (f.verb == 'v' && f.spec.empty()) {
        body = format_go_float(value);
    } else if (std::isnan(value) || std::isinf(value)) {
        body = format_go_float(value);
    } else {
        const char verb = f.verb == 'v' ? 'g' : (f.verb == 'F' ? 'f' : f.verb);
        const std::string c_format = "%" + f.spec + verb;
        char buffer[512];
        std::snprintf(buffer, sizeof buffer, c_format.c_str(), value);
        body = buffer;
    }
    return f.prefix + body + f.suffix;
}

std::string render_printf_string(const printf_format& f, std::string_view value)
{
    std::string body = f.verb == 'q' ? promql::quote(value) : std::string(value);
    if (!f.spec.empty()) {
        // Width and precision apply as in C; flags other than '-' have no effect on strings.
        const std::string c_format = "%" + f.spec + "s";
        const int size = std::snprintf(nullptr, 0, c_format.c_str(), body.c_str());
        std::string padded(static_cast<std::size_t>(size) + 1, '\0');
        std::snprintf(padded.data(), padded.size(), c_format.c_str(), body.c_str());
        padded.resize(static_cast<std::size_t>(size));
        body = std::move(padded);
    }
    return f.prefix + body + f.suffix;
}

std::string apply_function(const std::string& function, double value)
{
    if (function == "humanize") {
        return humanize(value);
    }
    if (function == "humanize1024") {
        return humanize_1024(value);
    }
    if (function == "humanizePercentage") {
        return humanize_percentage(value);
    }
    if (function == "humanizeDuration") {
        return humanize_duration(value);
    }
    return format_go_float(value);
}

// A token inside {{ }}.
struct token {
    enum class kind { word, variable, field, string, pipe, open_paren, close_paren } what = kind::word;
    std::string text;       // word, variable name with '$', field path with '.', unquoted string
    std::size_t offset = 0; // in the template source
};

class action_parser {
public:
    action_parser(std::string_view source, std::size_t begin, std::size_t end)
        : source_(source), begin_(begin), end_(end)
    {
    }

    bool parse(text_template::piece& out, std::string& error);

private:
    bool tokenize(std::string& error);
    bool parse_operand(std::size_t& i, std::size_t end, text_template::piece& out, std::string& error);
    bool apply_call(const token& name, std::size_t& i, std::size_t end, bool piped,
                    text_template::piece& out, std::string& error);
    std::string at(std::size_t offset) const { return fmt::format("at column {}", offset + 1); }

    std::string_view source_;
    std::size_t begin_;
    std::size_t end_;
    std::vector<token> tokens_;
};

bool action_parser::tokenize(std::string& error)
{
    std::size_t pos = begin_;
    const std::string_view text = source_.substr(0, end_);
    while (true) {
        while (pos < end_ && is_space(source_[pos])) {
            ++pos;
        }
        if (pos >= end_) {
            return true;
        }
        const char c = source_[pos];
        token t;
        t.offset = pos;
        if (c == '|') {
            t.what = token::kind::pipe;
            ++pos;
        } else if (c == '(') {
            t.what = token::kind::open_paren;
            ++pos;
        } else if (c == ')') {
            t.what = token::kind::close_paren;
            ++pos;
        } else if (c == '"' || c == '`') {
            t.what = token::kind::string;
            if (!promql::read_string(text, pos, t.text, error)) {
                error = fmt::format("{} {}", error, at(pos));
                return false;
            }
        } else if (c == '$' || c == '.' || promql::is_identifier_start(c)) {
            t.what = c == '$' ? token::kind::variable : (c == '.' ? token::kind::field : token::kind::word);
            const std::size_t start = pos;
            ++pos;
            while (pos < end_ && (promql::is_identifier_char(source_[pos]) || source_[pos] == '.')) {
                ++pos;
            }
            t.text.assign(source_.substr(start, pos - start));
        } else {
            error = fmt::format("unexpected '{}' {}; expected $labels.NAME, $value, a function or |", c, at(pos));
            return false;
        }
        tokens_.push_back(std::move(t));
    }
}

bool action_parser::parse_operand(std::size_t& i, std::size_t end, text_template::piece& out,
                                  std::string& error)
{
    const token& t = tokens_[i];
    if (t.what == token::kind::variable || t.what == token::kind::field) {
        // $value and .Value are the sample value; $labels.x and .Labels.x a label.
        std::string_view path = t.text;
        std::string_view root;
        std::string_view rest;
        const auto dot = path.find('.', 1);
        root = path.substr(0, dot);
        if (dot != std::string_view::npos) {
            rest = path.substr(dot + 1);
        }
        // $score and $baseline are what a dynamic rule measured; NaN for other rules.
        const bool is_score = root == "$score";
        const bool is_baseline = root == "$baseline";
        const bool is_value = root == "$value" || root == ".Value" || is_score || is_baseline;
        const bool is_labels = root == "$labels" || root == ".Labels";
        if (!is_value && !is_labels) {
            const bool is_variable = t.what == token::kind::variable;
            error = fmt::format("unknown {} \"{}\" {}; expected $labels, $value, $score or $baseline (or .Labels, "
                                ".Value)",
                                is_variable ? "variable" : "field", root, at(t.offset));
            return false;
        }
        if (is_value) {
            if (!rest.empty()) {
                error = fmt::format("{} has no field \"{}\" {}; {} is a number", root, rest, at(t.offset), root);
                return false;
            }
            out.what = text_template::piece::kind::value;
            out.text = is_score ? "score" : is_baseline ? "baseline" : "";
            ++i;
            return true;
        }
        if (rest.empty()) {
            error = fmt::format("{} needs a label name {}; expected $labels.instance or index $labels \"name\"",
                                root, at(t.offset));
            return false;
        }
        if (rest.find('.') != std::string_view::npos || rest.empty()) {
            error = fmt::format("invalid label reference \"{}\" {}; expected $labels.NAME, or index $labels "
                                "\"name\" for names that are not identifiers",
                                path, at(t.offset));
            return false;
        }
        out.what = text_template::piece::kind::label;
        out.text.assign(rest);
        ++i;
        return true;
    }
    if (t.what == token::kind::word) {
        return apply_call(t, ++i, end, false, out, error);
    }
    if (t.what == token::kind::string) {
        error = fmt::format("a string cannot be printed on its own {}; put literal text outside {{{{ }}}}",
                            at(t.offset));
        return false;
    }
    if (t.what == token::kind::open_paren || t.what == token::kind::close_paren) {
        error = fmt::format("parentheses are not supported {}; use a pipeline such as $value | humanize",
                            at(t.offset));
        return false;
    }
    error = fmt::format("unexpected '|' {}; expected $labels.NAME, $value or a function", at(t.offset));
    return false;
}

// Parses a function call whose name is `name` and whose arguments start at tokens_[i]. When
// `piped`, `out` already holds the piped operand, which Go passes as the last argument.
bool action_parser::apply_call(const token& name, std::size_t& i, std::size_t end, bool piped,
                               text_template::piece& out, std::string& error)
{
    const std::string& function = name.text;
    static constexpr std::string_view keywords[] = {"if",   "else",     "end",    "range", "with",
                                                    "define", "template", "block", "break", "continue"};
    for (auto keyword : keywords) {
        if (function == keyword) {
            error = fmt::format("unsupported action \"{}\" {}; templates support only {}", function,
                                at(name.offset), known_functions);
            return false;
        }
    }
    if (function == "nil" || function == "true" || function == "false") {
        error = fmt::format("unsupported constant \"{}\" {}; expected $labels.NAME or $value", function,
                            at(name.offset));
        return false;
    }

    if (function == "index") {
        if (piped) {
            error = fmt::format("index cannot take a piped value {}; write index $labels \"name\"",
                                at(name.offset));
            return false;
        }
        if (i + 2 > end || (tokens_[i].text != "$labels" && tokens_[i].text != ".Labels") ||
            tokens_[i + 1].what != token::kind::string) {
            error = fmt::format("invalid index call {}; expected index $labels \"name\"", at(name.offset));
            return false;
        }
        out.what = text_template::piece::kind::label;
        out.text = tokens_[i + 1].text;
        i += 2;
        return true;
    }

    const bool is_humanize = function == "humanize" || function == "humanize1024" ||
                             function == "humanizePercentage" || function == "humanizeDuration";
    if (!is_humanize && function != "printf") {
        error = fmt::format("unknown function \"{}\" {}; expected one of {}", function, at(name.offset),
                            known_functions);
        return false;
    }
    if (!out.function.empty()) {
        error = fmt::format("only one function per action is supported, but \"{}\" follows \"{}\" {}",
                            function, out.function, at(name.offset));
        return false;
    }

    std::string format;
    if (function == "printf") {
        if (i >= end || tokens_[i].what != token::kind::string) {
            error = fmt::format("printf needs a format string {}; expected printf \"%.2f\" $value",
                                at(name.offset));
            return false;
        }
        format = tokens_[i].text;
        ++i;
    }
    if (!piped) {
        if (i >= end || tokens_[i].what == token::kind::pipe) {
            error = fmt::format("{} needs an argument {}; expected {} {}$value", function, at(name.offset),
                                function, function == "printf" ? promql::quote(format) + " " : "");
            return false;
        }
        if (tokens_[i].what == token::kind::word) {
            error = fmt::format("the argument of {} must be $value or a label {}; nested calls are not supported",
                                function, at(tokens_[i].offset));
            return false;
        }
        text_template::piece operand;
        if (!parse_operand(i, end, operand, error)) {
            return false;
        }
        out.what = operand.what;
        out.text = operand.text;
    }
    if (i < end && tokens_[i].what != token::kind::pipe) {
        error = fmt::format("too many arguments for {} {}", function, at(tokens_[i].offset));
        return false;
    }

    if (function == "printf") {
        auto split = split_printf(format, error);
        if (!split) {
            error = fmt::format("{} {}", error, at(name.offset));
            return false;
        }
        const bool number = out.what == text_template::piece::kind::value;
        if (number && !is_number_verb(split->verb)) {
            error = fmt::format("printf verb %{} cannot format $value {}; expected one of %f %e %g %v",
                                split->verb, at(name.offset));
            return false;
        }
        if (!number && !is_string_verb(split->verb)) {
            error = fmt::format("printf verb %{} cannot format a label value {}; expected one of %s %v %q",
                                split->verb, at(name.offset));
            return false;
        }
        out.format = format;
    }
    out.function = function;
    return true;
}

bool action_parser::parse(text_template::piece& out, std::string& error)
{
    if (!tokenize(error)) {
        return false;
    }
    if (tokens_.empty()) {
        error = fmt::format("empty action {}; expected $labels.NAME or $value", at(begin_));
        return false;
    }
    const std::size_t end = tokens_.size();
    std::size_t i = 0;
    if (!parse_operand(i, end, out, error)) {
        return false;
    }
    while (i < end) {
        if (tokens_[i].what != token::kind::pipe) {
            error = fmt::format("unexpected \"{}\" {}; expected | or }}}}", tokens_[i].text, at(tokens_[i].offset));
            return false;
        }
        ++i;
        if (i >= end || tokens_[i].what != token::kind::word) {
            error = fmt::format("expected a function after | {}", at(tokens_[i - 1].offset));
            return false;
        }
        const token& name = tokens_[i];
        ++i;
        if (!apply_call(name, i, end, true, out, error)) {
            return false;
        }
    }
    return true;
}

// Finds the "}}" that closes an action opened before `pos`, skipping string literals.
std::size_t find_action_end(std::string_view source, std::size_t pos)
{
    while (pos + 1 < source.size()) {
        const char c = source[pos];
        if (c == '"' || c == '`') {
            std::size_t next = pos + 1;
            while (next < source.size() && source[next] != c) {
                next += (c == '"' && source[next] == '\\') ? 2 : 1;
            }
            pos = next + 1;
            continue;
        }
        if (c == '}' && source[pos + 1] == '}') {
            return pos;
        }
        ++pos;
    }
    return std::string_view::npos;
}

} // namespace

bool text_template::parse(std::string_view source, text_template& out, std::string& error)
{
    text_template result;
    result.source_.assign(source);
    std::size_t pos = 0;
    std::string literal;
    bool trim_next_literal = false;

    auto flush_literal = [&] {
        if (!literal.empty()) {
            piece p;
            p.what = piece::kind::literal;
            p.text = std::move(literal);
            result.pieces_.push_back(std::move(p));
        }
        literal.clear();
    };

    while (pos < source.size()) {
        const auto open = source.find("{{", pos);
        std::string_view text = source.substr(pos, open == std::string_view::npos ? std::string_view::npos : open - pos);
        if (trim_next_literal) {
            while (!text.empty() && is_space(text.front())) {
                text.remove_prefix(1);
            }
            trim_next_literal = false;
        }
        literal += text;
        if (open == std::string_view::npos) {
            break;
        }

        std::size_t begin = open + 2;
        // "{{- " trims the whitespace before the action; the space after '-' is required, as in Go.
        if (begin + 1 < source.size() && source[begin] == '-' && is_space(source[begin + 1])) {
            while (!literal.empty() && is_space(literal.back())) {
                literal.pop_back();
            }
            begin += 1;
        }
        const auto close = find_action_end(source, begin);
        if (close == std::string_view::npos) {
            error = fmt::format("unclosed action at column {}; expected }}}}", open + 1);
            return false;
        }
        std::size_t end = close;
        if (end >= begin + 2 && source[end - 1] == '-' && is_space(source[end - 2])) {
            trim_next_literal = true;
            end -= 1;
        }
        pos = close + 2;

        // Comments: {{/* ... */}}.
        std::string_view inner = source.substr(begin, end - begin);
        while (!inner.empty() && is_space(inner.front())) {
            inner.remove_prefix(1);
        }
        if (inner.starts_with("/*")) {
            continue;
        }

        flush_literal();
        piece p;
        action_parser parser(source, begin, end);
        if (!parser.parse(p, error)) {
            return false;
        }
        result.pieces_.push_back(std::move(p));
    }
    flush_literal();
    out = std::move(result);
    return true;
}

std::string text_template::render(const label_set& labels, double sample_value, double score, double baseline) const
{
    std::string out;
    for (const auto& p : pieces_) {
        switch (p.what) {
        case piece::kind::literal:
            out += p.text;
            break;
        case piece::kind::value: {
            const double value = p.text == "score" ? score : p.text == "baseline" ? baseline : sample_value;
            if (p.function == "printf") {
                std::string ignored;
                auto f = split_printf(p.format, ignored);
                out += f ? render_printf_number(*f, value) : format_go_float(value);
            } else {
                out += apply_function(p.function, value);
            }
            break;
        }
        case piece::kind::label: {
            const std::string_view label_value = labels.get(p.text);
            if (p.function == "printf") {
                std::string ignored;
                auto f = split_printf(p.format, ignored);
                out += f ? render_printf_string(*f, label_value) : std::string(label_value);
            } else if (p.function.empty()) {
                out += label_value;
            } else {
                // Prometheus converts a label value to a number for the humanize functions.
                double number = 0;
                const auto* first = label_value.data();
                const auto* last = first + label_value.size();
                auto [ptr, ec] = std::from_chars(first, last, number);
                if (ec == std::errc() && ptr == last) {
                    out += apply_function(p.function, number);
                } else {
                    out += label_value;
                }
            }
            break;
        }
        }
    }
    return out;
}

bool text_template::is_literal() const
{
    for (const auto& p : pieces_) {
        if (p.what != piece::kind::literal) {
            return false;
        }
    }
    return true;
}

std::string humanize(double value)
{
    if (value == 0 || std::isnan(value) || std::isinf(value)) {
        return format_g4(value);
    }
    const char* prefix = "";
    if (std::fabs(value) >= 1) {
        for (const char* p : {"k", "M", "G", "T", "P", "E", "Z", "Y"}) {
            if (std::fabs(value) < 1000) {
                break;
            }
            prefix = p;
            value /= 1000;
        }
    } else {
        for (const char* p : {"m", "u", "n", "p", "f", "a", "z", "y"}) {
            if (std::fabs(value) >= 1) {
                break;
            }
            prefix = p;
            value *= 1000;
        }
    }
    return format_g4(value) + prefix;
}

std::string humanize_1024(double value)
{
    if (std::fabs(value) <= 1 || std::isnan(value) || std::isinf(value)) {
        return format_g4(value);
    }
    // Prometheus spells the first prefix "ki" in lower case; the output matches it.
    const char* prefix = "";
    for (const char* p : {"ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"}) {
        if (std::fabs(value) < 1024) {
            break;
        }
        prefix = p;
        value /= 1024;
    }
    return format_g4(value) + prefix;
}

std::string humanize_percentage(double value)
{
    return format_g4(value * 100) + "%";
}

std::string humanize_duration(double seconds)
{
    if (std::isnan(seconds) || std::isinf(seconds)) {
        return format_g4(seconds);
    }
    if (seconds == 0) {
        return "0s";
    }
    if (std::fabs(seconds) >= 1) {
        const char* sign = seconds < 0 ? "-" : "";
        const double magnitude = std::fabs(seconds);
        // Whole seconds; beyond the int64 range only the days part matters anyway.
        const auto whole = magnitude < 9.2e18 ? static_cast<std::int64_t>(magnitude) : INT64_MAX;
        const auto s = whole % 60;
        const auto m = (whole / 60) % 60;
        const auto h = (whole / 3600) % 24;
        const auto d = whole / 86400;
        if (d != 0) {
            return fmt::format("{}{}d {}h {}m {}s", sign, d, h, m, s);
        }
        if (h != 0) {
            return fmt::format("{}{}h {}m {}s", sign, h, m, s);
        }
        if (m != 0) {
            return fmt::format("{}{}m {}s", sign, m, s);
        }
        return sign + format_g4(magnitude) + "s";
    }
    const char* prefix = "";
    for (const char* p : {"m", "u", "n", "p", "f", "a", "z", "y"}) {
        if (std::fabs(seconds) >= 1) {
            break;
        }
        prefix = p;
        seconds *= 1000;
    }
    return format_g4(seconds) + prefix + "s";
}

} // namespace tocsin
