#include "rules/promql_lexer.hpp"

#include <fmt/format.h>

#include "rules/labels.hpp"

namespace tocsin::promql {

namespace {

bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

int hex_digit(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

void append_utf8(std::string& out, char32_t cp)
{
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

// Reads the escape sequence whose backslash is at text[pos]. Advances pos past it.
bool read_escape(std::string_view text, std::size_t& pos, char quote_char, std::string& out,
                 std::string& error)
{
    const std::size_t start = pos;
    ++pos; // the backslash
    if (pos >= text.size()) {
        pos = start;
        error = "unterminated escape sequence at the end of the string";
        return false;
    }
    const char c = text[pos];
    switch (c) {
    case 'a': out += '\a'; ++pos; return true;
    case 'b': out += '\b'; ++pos; return true;
    case 'f': out += '\f'; ++pos; return true;
    case 'n': out += '\n'; ++pos; return true;
    case 'r': out += '\r'; ++pos; return true;
    case 't': out += '\t'; ++pos; return true;
    case 'v': out += '\v'; ++pos; return true;
    case '\\': out += '\\'; ++pos; return true;
    default: break;
    }
    if (c == quote_char) {
        out += c;
        ++pos;
        return true;
    }
    if (c == 'x' || c == 'u' || c == 'U') {
        const std::size_t digits = c == 'x' ? 2 : (c == 'u' ? 4 : 8);
        ++pos;
        std::uint32_t value = 0;
        for (std::size_t i = 0; i < digits; ++i) {
            const int d = pos < text.size() ? hex_digit(text[pos]) : -1;
            if (d < 0) {
                pos = start;
                error = fmt::format("invalid escape sequence \\{}: expected {} hexadecimal digits", c, digits);
                return false;
            }
            value = value * 16 + static_cast<std::uint32_t>(d);
            ++pos;
        }
        if (c == 'x') {
            out += static_cast<char>(value);
            return true;
        }
        if (value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) {
            pos = start;
            error = fmt::format("invalid escape sequence: U+{:X} is not a Unicode scalar value", value);
            return false;
        }
        append_utf8(out, static_cast<char32_t>(value));
        return true;
    }
    if (c >= '0' && c <= '7') {
        std::uint32_t value = 0;
        for (int i = 0; i < 3; ++i) {
            if (pos >= text.size() || text[pos] < '0' || text[pos] > '7') {
                pos = start;
                error = "invalid octal escape sequence: expected three octal digits";
                return false;
            }
            value = value * 8 + static_cast<std::uint32_t>(text[pos] - '0');
            ++pos;
        }
        if (value > 255) {
            pos = start;
            error = "invalid octal escape sequence: the value is above \\377";
            return false;
        }
        out += static_cast<char>(value);
        return true;
    }
    pos = start;
    error = fmt::format("unknown escape sequence \\{}; expected one of \\n \\t \\\\ \\{} \\xHH \\uHHHH",
                        c, quote_char);
    return false;
}

} // namespace

void skip_spaces(std::string_view text, std::size_t& pos)
{
    while (pos < text.size() && is_space(text[pos])) {
        ++pos;
    }
}

bool is_identifier_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

bool is_identifier_char(char c)
{
    return is_identifier_start(c) || (c >= '0' && c <= '9');
}

bool read_identifier(std::string_view text, std::size_t& pos, std::string& out, bool allow_colon)
{
    if (pos >= text.size() || !(is_identifier_start(text[pos]) || (allow_colon && text[pos] == ':'))) {
        return false;
    }
    const std::size_t start = pos;
    while (pos < text.size() && (is_identifier_char(text[pos]) || (allow_colon && text[pos] == ':'))) {
        ++pos;
    }
    out.assign(text.substr(start, pos - start));
    return true;
}

bool read_string(std::string_view text, std::size_t& pos, std::string& out, std::string& error)
{
    const std::size_t start = pos;
    if (pos >= text.size() || (text[pos] != '"' && text[pos] != '\'' && text[pos] != '`')) {
        error = "expected a string in double quotes";
        return false;
    }
    const char quote_char = text[pos];
    ++pos;
    out.clear();
    while (true) {
        if (pos >= text.size()) {
            pos = start;
            error = fmt::format("unterminated string: missing the closing {}", quote_char);
            return false;
        }
        const char c = text[pos];
        if (c == quote_char) {
            ++pos;
            break;
        }
        if (c == '\\' && quote_char != '`') {
            if (!read_escape(text, pos, quote_char, out, error)) {
                return false;
            }
            continue;
        }
        if (c == '\n' && quote_char != '`') {
            pos = start;
            error = "unterminated string: a newline comes before the closing quote";
            return false;
        }
        out += c;
        ++pos;
    }
    if (!is_valid_utf8(out)) {
        pos = start;
        error = "invalid UTF-8 in string";
        return false;
    }
    return true;
}

std::optional<label_matcher> read_matcher(std::string_view text, std::size_t& pos,
                                          bool allow_unquoted_value, std::string& error)
{
    // The name.
    std::string name;
    const std::size_t name_pos = pos;
    if (pos < text.size() && (text[pos] == '"' || text[pos] == '\'' || text[pos] == '`')) {
        if (!read_string(text, pos, name, error)) {
            return std::nullopt;
        }
        bool blank = true;
        for (char c : name) {
            blank = blank && is_space(c);
        }
        if (blank) {
            pos = name_pos;
            error = name.empty() ? "empty label name; expected a name such as instance or \"service.name\""
                                 : "label name is only whitespace; expected a name such as instance or \"service.name\"";
            return std::nullopt;
        }
    } else if (!read_identifier(text, pos, name, false)) {
        error = pos >= text.size()
                    ? std::string("missing label name; expected a name such as instance or \"service.name\"")
                    : fmt::format("unexpected '{}' where a label name was expected; names are "
                                  "[a-zA-Z_][a-zA-Z0-9_]* or quoted like \"service.name\"",
                                  text[pos]);
        return std::nullopt;
    }

    // The operator.
    skip_spaces(text, pos);
    match_op op = match_op::equal;
    const std::size_t op_pos = pos;
    const std::string_view rest = text.substr(pos);
    if (rest.starts_with("=~")) {
        op = match_op::regex;
        pos += 2;
    } else if (rest.starts_with("!~")) {
        op = match_op::not_regex;
        pos += 2;
    } else if (rest.starts_with("!=")) {
        op = match_op::not_equal;
        pos += 2;
    } else if (rest.starts_with("==")) {
        error = fmt::format("invalid operator '==' after label {}; expected one of = != =~ !~",
                            format_label_name(name));
        return std::nullopt;
    } else if (rest.starts_with("=")) {
        op = match_op::equal;
        pos += 1;
    } else {
        error = fmt::format("missing operator after label {}; expected one of = != =~ !~",
                            format_label_name(name));
        return std::nullopt;
    }
    const std::string_view op_text = text.substr(op_pos, pos - op_pos);

    // The value.
    skip_spaces(text, pos);
    std::string value;
    if (pos < text.size() && (text[pos] == '"' || text[pos] == '\'' || text[pos] == '`')) {
        if (!read_string(text, pos, value, error)) {
            return std::nullopt;
        }
    } else {
        const std::size_t value_pos = pos;
        while (pos < text.size() && !is_space(text[pos]) && text[pos] != ',' && text[pos] != '}' &&
               text[pos] != '{' && text[pos] != '"' && text[pos] != '\'' && text[pos] != '`') {
            ++pos;
        }
        value.assign(text.substr(value_pos, pos - value_pos));
        if (value.empty()) {
            pos = value_pos;
            error = fmt::format("missing value after {}{}; expected a quoted value such as {}{}\"x\" "
                                "({}{}\"\" matches an absent label)",
                                format_label_name(name), op_text, format_label_name(name), op_text,
                                format_label_name(name), op_text);
            return std::nullopt;
        }
        if (!allow_unquoted_value) {
            pos = value_pos;
            error = fmt::format("the value of label {} must be quoted: {}{}\"{}\"", format_label_name(name),
                                format_label_name(name), op_text, value);
            return std::nullopt;
        }
        if (op == match_op::regex || op == match_op::not_regex) {
            pos = value_pos;
            error = fmt::format("the regex of label {} must be quoted: {}{}\"{}\"", format_label_name(name),
                                format_label_name(name), op_text, value);
            return std::nullopt;
        }
        if (!is_valid_utf8(value)) {
            pos = value_pos;
            error = "invalid UTF-8 in label value";
            return std::nullopt;
        }
    }

    std::string make_error;
    auto matcher = label_matcher::make(std::move(name), op, std::move(value), make_error);
    if (!matcher) {
        pos = name_pos;
        error = make_error;
        return std::nullopt;
    }
    return matcher;
}

std::string quote(std::string_view value)
{
    std::string out;
    out.reserve(value.size() + 2);
    out += '"';
    for (char c : value) {
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) {
                out += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
            } else {
                out += c;
            }
        }
    }
    out += '"';
    return out;
}

std::string format_label_name(std::string_view name)
{
    if (is_legacy_label_name(name)) {
        return std::string(name);
    }
    return quote(name);
}

} // namespace tocsin::promql
