// Lexer and parser of the Go text/template language, and the template_set that contains the
// parsed templates. Evaluation and the function library are in go_template_eval.cpp.
//
// The grammar follows Go's text/template/parse package: text and {{ actions }}, with "{{- " and
// " -}}" trimming the white space next to them; an action contains a pipeline of commands joined
// by '|', each command a list of operands (fields, variables, literals, function names and
// parenthesised pipelines). As in Go, an undefined variable or function is a parse error,
// while a {{ template }} of an undefined name is only reported by check_references().

#include "notifiers/go_template.hpp"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <set>
#include <stdexcept>

#include <fmt/format.h>

#include "notifiers/go_template_impl.hpp"

namespace tocsin::gotmpl {

namespace detail {

std::string to_string(position pos)
{
    return fmt::format("{}:{}", pos.line, pos.column);
}

void append_utf8(std::string& out, std::uint32_t cp)
{
    if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        cp = 0xfffd;
    }
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xc0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xe0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else {
        out.push_back(static_cast<char>(0xf0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    }
}

std::size_t utf8_sequence_length(unsigned char lead)
{
    if (lead < 0x80) {
        return 1;
    }
    if ((lead & 0xe0) == 0xc0) {
        return 2;
    }
    if ((lead & 0xf0) == 0xe0) {
        return 3;
    }
    if ((lead & 0xf8) == 0xf0) {
        return 4;
    }
    return 0;
}

namespace {

enum class token_kind {
    text,
    left_delim,
    right_delim,
    eof,
    identifier,
    keyword,
    boolean,
    nil,
    field,     // .Name
    variable,  // $ or $name
    dot,       // .
    string,    // value already unquoted
    number,    // raw text
    character, // value is the code point in `number_value`
    pipe,
    left_paren,
    right_paren,
    declare, // :=
    assign,  // =
    comma,
};

struct token {
    token_kind kind = token_kind::eof;
    std::string text;
    std::size_t offset = 0;
    bool space_before = false;
    std::int64_t number_value = 0;
};

struct lex_error {
    std::size_t offset;
    std::string message;
};

bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           static_cast<unsigned char>(c) >= 0x80;
}

bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

int hex_value(char c)
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

// Decodes the Go escape sequences of a quoted string or character body (without the quotes).
// Returns false on an invalid escape.
bool unescape_go(std::string_view body, char quote, std::string& out)
{
    for (std::size_t i = 0; i < body.size(); ++i) {
        char c = body[i];
        if (c != '\\') {
            out.push_back(c);
            continue;
        }
        if (++i >= body.size()) {
            return false;
        }
        char e = body[i];
        switch (e) {
        case 'a': out.push_back('\a'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'v': out.push_back('\v'); break;
        case '\\': out.push_back('\\'); break;
        case '\'':
        case '"':
            if (e != quote) {
                return false;
            }
            out.push_back(e);
            break;
        case 'x':
        case 'u':
        case 'U': {
            std::size_t digits = 8;
            if (e == 'x') {
                digits = 2;
            } else if (e == 'u') {
                digits = 4;
            }
            if (i + digits >= body.size()) {
                return false; // fewer digits than the escape needs
            }
            std::uint32_t value = 0;
            for (std::size_t k = 1; k <= digits; ++k) {
                int h = hex_value(body[i + k]);
                if (h < 0) {
                    return false;
                }
                value = value * 16 + static_cast<std::uint32_t>(h);
            }
            i += digits;
            if (e == 'x') {
                out.push_back(static_cast<char>(value));
            } else {
                if (value > 0x10ffff || (value >= 0xd800 && value <= 0xdfff)) {
                    return false;
                }
                append_utf8(out, value);
            }
            break;
        }
        default:
            if (e >= '0' && e <= '7') {
                if (i + 2 >= body.size()) {
                    return false;
                }
                std::uint32_t value = 0;
                for (std::size_t k = 0; k < 3; ++k) {
                    char d = body[i + k];
                    if (d < '0' || d > '7') {
                        return false;
                    }
                    value = value * 8 + static_cast<std::uint32_t>(d - '0');
                }
                if (value > 255) {
                    return false;
                }
                i += 2;
                out.push_back(static_cast<char>(value));
                break;
            }
            return false;
        }
    }
    return true;
}

// Decodes one UTF-8 code point from `s`; returns false unless `s` is exactly one code point.
bool single_code_point(std::string_view s, std::int64_t& cp)
{
    if (s.empty()) {
        return false;
    }
    auto lead = static_cast<unsigned char>(s[0]);
    std::size_t length = utf8_sequence_length(lead);
    if (length == 0 || length != s.size()) {
        // A \x escape gives one byte that is not valid UTF-8 on its own: its value is the byte.
        if (s.size() == 1) {
            cp = lead;
            return true;
        }
        return false;
    }
    // The lead byte's payload bits: 7, 5, 4 or 3 of them for lengths 1 to 4.
    static constexpr unsigned char lead_mask[] = {0, 0x7f, 0x1f, 0x0f, 0x07};
    std::uint32_t value = lead & lead_mask[length];
    for (std::size_t i = 1; i < length; ++i) {
        value = (value << 6) | (static_cast<unsigned char>(s[i]) & 0x3f);
    }
    cp = value;
    return true;
}

const std::set<std::string, std::less<>>& keywords()
{
    static const std::set<std::string, std::less<>> words{"block", "break", "continue", "define", "else",
                                                          "end",   "if",    "range",    "template", "with"};
    return words;
}

class lexer {
public:
    explicit lexer(std::string_view source) : src_(source) {}

    std::vector<token> run()
    {
        std::size_t pos = 0;
        while (pos < src_.size()) {
            std::size_t at = src_.find("{{", pos);
            if (at == std::string_view::npos) {
                emit_text(pos, src_.size());
                break;
            }
            bool trim_left = at + 3 < src_.size() && src_[at + 2] == '-' && is_space(src_[at + 3]);
            std::size_t text_end = at;
            if (trim_left) {
                while (text_end > pos && is_space(src_[text_end - 1])) {
                    --text_end;
                }
            }
            emit_text(pos, text_end);
            std::size_t inside = at + (trim_left ? 4 : 2);
            if (src_.compare(inside, 2, "/*") == 0) {
                pos = lex_comment(at, inside);
            } else {
                pos = lex_action(at, inside);
            }
        }
        token end;
        end.kind = token_kind::eof;
        end.offset = src_.size();
        tokens_.push_back(end);
        return std::move(tokens_);
    }

private:
    void emit_text(std::size_t from, std::size_t to)
    {
        if (to > from) {
            token t;
            t.kind = token_kind::text;
            t.text = std::string(src_.substr(from, to - from));
            t.offset = from;
            tokens_.push_back(std::move(t));
        }
    }

    void emit(token_kind kind, std::size_t offset, std::string text, bool space_before)
    {
        token t;
        t.kind = kind;
        t.offset = offset;
        t.text = std::move(text);
        t.space_before = space_before;
        tokens_.push_back(std::move(t));
    }

    std::size_t skip_trailing_space(std::size_t pos) const
    {
        while (pos < src_.size() && is_space(src_[pos])) {
            ++pos;
        }
        return pos;
    }

    // Returns the offset after the comment's closing delimiter.
    std::size_t lex_comment(std::size_t at, std::size_t inside)
    {
        std::size_t close = src_.find("*/", inside + 2);
        if (close == std::string_view::npos) {
            throw lex_error{at, "unclosed comment; end it with */}}"};
        }
        std::size_t after = close + 2;
        if (after < src_.size() && is_space(src_[after]) && src_.compare(after + 1, 3, "-}}") == 0) {
            return skip_trailing_space(after + 4);
        }
        if (src_.compare(after, 2, "}}") == 0) {
            return after + 2;
        }
        throw lex_error{close, "comment ends before the closing delimiter; write */}} with nothing between"};
    }

    // Returns the offset after the action's closing delimiter.
    std::size_t lex_action(std::size_t at, std::size_t inside)
    {
        emit(token_kind::left_delim, at, "{{", false);
        std::size_t pos = inside;
        int paren_depth = 0;
        while (true) {
            bool space = false;
            while (pos < src_.size() && is_space(src_[pos])) {
                if (src_.compare(pos + 1, 3, "-}}") == 0) {
                    if (paren_depth > 0) {
                        throw lex_error{pos, "unclosed left parenthesis before the end of the action"};
                    }
                    emit(token_kind::right_delim, pos + 1, "}}", true);
                    return skip_trailing_space(pos + 4);
                }
                space = true;
                ++pos;
            }
            if (pos >= src_.size()) {
                throw lex_error{at, "unclosed action; end it with }}"};
            }
            if (src_.compare(pos, 2, "}}") == 0) {
                if (paren_depth > 0) {
                    throw lex_error{pos, "unclosed left parenthesis before the end of the action"};
                }
                emit(token_kind::right_delim, pos, "}}", space);
                return pos + 2;
            }
            char c = src_[pos];
            std::size_t start = pos;
            switch (c) {
            case '|':
                emit(token_kind::pipe, start, "|", space);
                ++pos;
                continue;
            case '(':
                emit(token_kind::left_paren, start, "(", space);
                ++paren_depth;
                ++pos;
                continue;
            case ')':
                if (paren_depth == 0) {
                    throw lex_error{start, "unexpected right parenthesis \")\""};
                }
                --paren_depth;
                emit(token_kind::right_paren, start, ")", space);
                ++pos;
                continue;
            case ',':
                emit(token_kind::comma, start, ",", space);
                ++pos;
                continue;
            case ':':
                if (pos + 1 < src_.size() && src_[pos + 1] == '=') {
                    emit(token_kind::declare, start, ":=", space);
                    pos += 2;
                    continue;
                }
                throw lex_error{start, "expected := after \":\""};
            case '=':
                emit(token_kind::assign, start, "=", space);
                ++pos;
                continue;
            case '"':
                pos = lex_quoted(start, space);
                continue;
            case '`':
                pos = lex_raw(start, space);
                continue;
            case '\'':
                pos = lex_char(start, space);
                continue;
            case '$': {
                ++pos;
                while (pos < src_.size() && is_alnum(src_[pos])) {
                    ++pos;
                }
                emit(token_kind::variable, start, std::string(src_.substr(start, pos - start)), space);
                continue;
            }
            case '.':
                if (pos + 1 < src_.size() && is_digit(src_[pos + 1])) {
                    pos = lex_number(start, space);
                    continue;
                }
                ++pos;
                if (pos < src_.size() && is_alnum(src_[pos])) {
                    while (pos < src_.size() && is_alnum(src_[pos])) {
                        ++pos;
                    }
                    emit(token_kind::field, start, std::string(src_.substr(start + 1, pos - start - 1)), space);
                } else {
                    emit(token_kind::dot, start, ".", space);
                }
                continue;
            default:
                break;
            }
            if (is_digit(c) || ((c == '+' || c == '-') && pos + 1 < src_.size() &&
                                (is_digit(src_[pos + 1]) || src_[pos + 1] == '.'))) {
                pos = lex_number(start, space);
                continue;
            }
            if (is_alnum(c)) {
                while (pos < src_.size() && is_alnum(src_[pos])) {
                    ++pos;
                }
                std::string word(src_.substr(start, pos - start));
                token_kind kind = token_kind::identifier;
                if (word == "true" || word == "false") {
                    kind = token_kind::boolean;
                } else if (word == "nil") {
                    kind = token_kind::nil;
                } else if (keywords().count(word) != 0) {
                    kind = token_kind::keyword;
                }
                emit(kind, start, std::move(word), space);
                continue;
            }
            throw lex_error{start, fmt::format("unrecognized character in action: {}", describe_char(c))};
        }
    }

    static std::string describe_char(char c)
    {
        auto byte = static_cast<unsigned char>(c);
        if (byte >= 0x20 && byte < 0x7f) {
            return fmt::format("'{}'", c);
        }
        return fmt::format("byte 0x{:02x}", byte);
    }

    std::size_t lex_quoted(std::size_t start, bool space)
    {
        std::size_t pos = start + 1;
        while (true) {
            if (pos >= src_.size() || src_[pos] == '\n') {
                throw lex_error{start, "unterminated quoted string; close it with \""};
            }
            if (src_[pos] == '\\') {
                pos += 2;
                continue;
            }
            if (src_[pos] == '"') {
                break;
            }
            ++pos;
        }
        std::string value;
        if (!unescape_go(src_.substr(start + 1, pos - start - 1), '"', value)) {
            throw lex_error{start, fmt::format("invalid escape sequence in string {}", src_.substr(start, pos + 1 - start))};
        }
        emit(token_kind::string, start, std::move(value), space);
        return pos + 1;
    }

    std::size_t lex_raw(std::size_t start, bool space)
    {
        std::size_t close = src_.find('`', start + 1);
        if (close == std::string_view::npos) {
            throw lex_error{start, "unterminated raw quoted string; close it with `"};
        }
        std::string value;
        for (char c : src_.substr(start + 1, close - start - 1)) {
            // Go drops carriage returns from raw strings.
            if (c != '\r') {
                value.push_back(c);
            }
        }
        emit(token_kind::string, start, std::move(value), space);
        return close + 1;
    }

    std::size_t lex_char(std::size_t start, bool space)
    {
        std::size_t pos = start + 1;
        while (true) {
            if (pos >= src_.size() || src_[pos] == '\n') {
                throw lex_error{start, "unterminated character constant; close it with '"};
            }
            if (src_[pos] == '\\') {
                pos += 2;
                continue;
            }
            if (src_[pos] == '\'') {
                break;
            }
            ++pos;
        }
        std::string value;
        std::int64_t cp = 0;
        if (!unescape_go(src_.substr(start + 1, pos - start - 1), '\'', value) || !single_code_point(value, cp)) {
            throw lex_error{start, fmt::format("invalid character constant {}", src_.substr(start, pos + 1 - start))};
        }
        emit(token_kind::character, start, std::string(src_.substr(start, pos + 1 - start)), space);
        tokens_.back().number_value = cp;
        return pos + 1;
    }

    std::size_t lex_number(std::size_t start, bool space)
    {
        std::size_t pos = start;
        if (src_[pos] == '+' || src_[pos] == '-') {
            ++pos;
        }
        bool hex = src_.compare(pos, 2, "0x") == 0 || src_.compare(pos, 2, "0X") == 0;
        while (pos < src_.size()) {
            char c = src_[pos];
            if (is_alnum(c) || c == '.') {
                ++pos;
                continue;
            }
            // A sign belongs to the number only right after an exponent letter.
            char prev = src_[pos - 1];
            bool exponent = hex ? (prev == 'p' || prev == 'P') : (prev == 'e' || prev == 'E');
            if ((c == '+' || c == '-') && exponent) {
                ++pos;
                continue;
            }
            break;
        }
        emit(token_kind::number, start, std::string(src_.substr(start, pos - start)), space);
        return pos;
    }

    std::string_view src_;
    std::vector<token> tokens_;
};

// Parses a Go integer or floating-point literal. Returns false when the text is not a number.
bool parse_number(std::string_view text, bool& is_float, std::int64_t& integer, double& floating)
{
    std::string clean;
    for (char c : text) {
        if (c != '_') {
            clean.push_back(c);
        }
    }
    if (clean.empty() || clean.back() == 'i') {
        return false;
    }
    bool negative = false;
    std::string_view body = clean;
    if (body.front() == '+' || body.front() == '-') {
        negative = body.front() == '-';
        body.remove_prefix(1);
    }
    if (body.empty()) {
        return false;
    }
    bool hex = body.size() > 1 && body[0] == '0' && (body[1] == 'x' || body[1] == 'X');
    bool looks_float = hex ? body.find_first_of("pP.") != std::string_view::npos
                           : body.find_first_of(".eE") != std::string_view::npos;
    if (looks_float) {
        std::string copy(clean);
        char* end = nullptr;
        double value = std::strtod(copy.c_str(), &end);
        if (end != copy.c_str() + copy.size()) {
            return false;
        }
        is_float = true;
        floating = value;
        return true;
    }
    int base = 10;
    if (body.size() > 1 && body[0] == '0') {
        char p = body[1];
        if (p == 'x' || p == 'X') {
            base = 16;
            body.remove_prefix(2);
        } else if (p == 'o' || p == 'O') {
            base = 8;
            body.remove_prefix(2);
        } else if (p == 'b' || p == 'B') {
            base = 2;
            body.remove_prefix(2);
        } else {
            base = 8;
            body.remove_prefix(1);
        }
    }
    std::uint64_t magnitude = 0;
    auto [ptr, ec] = std::from_chars(body.data(), body.data() + body.size(), magnitude, base);
    if (body.empty() || ec != std::errc() || ptr != body.data() + body.size()) {
        return false;
    }
    std::uint64_t limit = negative ? std::uint64_t{1} << 63 : (std::uint64_t{1} << 63) - 1;
    if (magnitude > limit) {
        return false;
    }
    is_float = false;
    integer = negative ? static_cast<std::int64_t>(0 - magnitude) : static_cast<std::int64_t>(magnitude);
    return true;
}

class parser {
public:
    parser(std::string_view source, std::vector<token> tokens, const std::string& file, parse_result& out)
        : source_(source), tokens_(std::move(tokens)), file_(file), out_(out)
    {
        std::size_t at = 0;
        line_starts_.push_back(0);
        while ((at = source_.find('\n', at)) != std::string_view::npos) {
            line_starts_.push_back(++at);
        }
    }

    position at(std::size_t offset) const
    {
        auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
        std::size_t line = static_cast<std::size_t>(it - line_starts_.begin());
        std::size_t column = offset - line_starts_[line - 1] + 1;
        return position{static_cast<int>(line), static_cast<int>(column)};
    }

    // Parses the top level: text, actions and {{ define }} blocks.
    node_list parse_top()
    {
        vars_ = {"$"};
        node_list root;
        stop s = parse_list(root, true);
        if (s.kind != stop_kind::eof) {
            throw parse_error_at(s.offset, fmt::format("unexpected {{{{{}}}}}; there is no open if, range, with, define or block for it",
                                                       s.kind == stop_kind::end ? "end" : "else"));
        }
        return root;
    }

private:
    enum class stop_kind { eof, end, else_ };
    struct stop {
        stop_kind kind;
        std::size_t offset;
    };

    struct error_exception {
        std::size_t offset;
        std::string message;
    };

    static error_exception parse_error_at(std::size_t offset, std::string message)
    {
        return error_exception{offset, std::move(message)};
    }

    const token& peek() const { return tokens_[i_]; }
    const token& next() { return tokens_[i_++]; }

    static std::string describe(const token& t)
    {
        switch (t.kind) {
        case token_kind::eof: return "end of input";
        case token_kind::right_delim: return "\"}}\"";
        case token_kind::left_delim: return "\"{{\"";
        case token_kind::text: return "text";
        case token_kind::field: return fmt::format("\".{}\"", t.text);
        case token_kind::string: return fmt::format("string \"{}\"", t.text.size() > 40 ? t.text.substr(0, 40) + "..." : t.text);
        default: return fmt::format("\"{}\"", t.text);
        }
    }

    void expect_right_delim(std::string_view context)
    {
        const token& t = next();
        if (t.kind != token_kind::right_delim) {
            throw parse_error_at(t.offset, fmt::format("unexpected {} in {}; expected }}}}", describe(t), context));
        }
    }

    void enter(std::size_t offset)
    {
        if (++depth_ > max_nesting_depth) {
            throw parse_error_at(offset, fmt::format("nesting deeper than {} levels; simplify the template",
                                                     max_nesting_depth));
        }
    }

    // Parses nodes into `list` until {{end}}, {{else}} or the end of input. The keyword's
    // right delimiter is left unread for {{else}} (it may be followed by "if" or "with").
    stop parse_list(node_list& list, bool top_level)
    {
        while (true) {
            const token& t = next();
            if (t.kind == token_kind::eof) {
                return stop{stop_kind::eof, t.offset};
            }
            if (t.kind == token_kind::text) {
                node n;
                n.kind = node_kind::text;
                n.pos = at(t.offset);
                n.text = t.text;
                list.push_back(std::move(n));
                continue;
            }
            // left delimiter
            std::size_t action_offset = t.offset;
            const token& first = peek();
            if (first.kind == token_kind::keyword) {
                const std::string& word = first.text;
                if (word == "end") {
                    next();
                    expect_right_delim("{{end}}");
                    return stop{stop_kind::end, action_offset};
                }
                if (word == "else") {
                    next();
                    return stop{stop_kind::else_, action_offset};
                }
                if (word == "define") {
                    if (!top_level) {
                        throw parse_error_at(first.offset, "{{define}} is only allowed at the top level, not inside another action");
                    }
                    next();
                    parse_define(action_offset);
                    continue;
                }
                next();
                list.push_back(parse_keyword_action(word, first.offset));
                continue;
            }
            node n;
            n.kind = node_kind::action;
            n.pos = at(first.offset);
            n.pipe = parse_pipeline("command", true, token_kind::right_delim);
            next(); // right delimiter
            list.push_back(std::move(n));
        }
    }

    node parse_keyword_action(const std::string& word, std::size_t word_offset)
    {
        if (word == "if") {
            return parse_control(node_kind::if_, word_offset);
        }
        if (word == "with") {
            return parse_control(node_kind::with, word_offset);
        }
        if (word == "range") {
            return parse_control(node_kind::range, word_offset);
        }
        if (word == "template") {
            return parse_template_call(word_offset);
        }
        if (word == "block") {
            return parse_block(word_offset);
        }
        if (word == "break" || word == "continue") {
            if (range_depth_ == 0) {
                throw parse_error_at(word_offset, fmt::format("{{{{{}}}}} outside {{{{range}}}}", word));
            }
            expect_right_delim(fmt::format("{{{{{}}}}}", word));
            node n;
            n.kind = word == "break" ? node_kind::break_ : node_kind::continue_;
            n.pos = at(word_offset);
            return n;
        }
        throw parse_error_at(word_offset, fmt::format("unexpected keyword \"{}\" in action", word));
    }

    // if, with and range: pipeline, list, optional else (or else if / else with), end.
    node parse_control(node_kind kind, std::size_t word_offset)
    {
        enter(word_offset);
        const char* name = "range";
        if (kind == node_kind::if_) {
            name = "if";
        } else if (kind == node_kind::with) {
            name = "with";
        }
        std::size_t vars_mark = vars_.size();
        node n;
        n.kind = kind;
        n.pos = at(word_offset);
        n.pipe = parse_pipeline(name, true, token_kind::right_delim, kind == node_kind::range);
        next(); // right delimiter
        if (kind == node_kind::range) {
            ++range_depth_;
        }
        stop s = parse_list(n.list, false);
        if (kind == node_kind::range) {
            --range_depth_;
        }
        if (s.kind == stop_kind::else_) {
            const token& after = peek();
            bool chained = after.kind == token_kind::keyword &&
                           ((kind == node_kind::if_ && after.text == "if") || (kind == node_kind::with && after.text == "with"));
            if (chained) {
                // {{else if x}} is {{else}}{{if x}}...{{end}} sharing the outer {{end}}.
                std::size_t offset = next().offset;
                n.else_list.push_back(parse_control(kind, offset));
                s = stop{stop_kind::end, offset};
            } else {
                expect_right_delim("{{else}}");
                s = parse_list(n.else_list, false);
                if (s.kind == stop_kind::else_) {
                    throw parse_error_at(s.offset, fmt::format("a second {{{{else}}}} in {{{{{}}}}}; only one is allowed", name));
                }
            }
        }
        if (s.kind != stop_kind::end) {
            throw parse_error_at(word_offset, fmt::format("{{{{{}}}}} is never closed; add {{{{end}}}}", name));
        }
        vars_.resize(vars_mark);
        --depth_;
        return n;
    }

    std::string parse_template_name(std::string_view context)
    {
        const token& t = next();
        if (t.kind != token_kind::string) {
            throw parse_error_at(t.offset, fmt::format("unexpected {} in {}; expected the template name as a quoted string",
                                                       describe(t), context));
        }
        return t.text;
    }

    node parse_template_call(std::size_t word_offset)
    {
        node n;
        n.kind = node_kind::template_call;
        n.pos = at(word_offset);
        n.text = parse_template_name("{{template}}");
        if (peek().kind != token_kind::right_delim) {
            n.pipe = parse_pipeline("template", false, token_kind::right_delim);
        }
        next();
        return n;
    }

    // {{block "name" pipeline}} list {{end}} defines "name" and calls it at once.
    node parse_block(std::size_t word_offset)
    {
        enter(word_offset);
        node n;
        n.kind = node_kind::template_call;
        n.pos = at(word_offset);
        n.text = parse_template_name("{{block}}");
        n.pipe = parse_pipeline("block", false, token_kind::right_delim);
        next();
        auto body = std::make_shared<tree>();
        body->name = n.text;
        body->file = file_;
        auto saved_vars = std::exchange(vars_, {"$"});
        int saved_range = std::exchange(range_depth_, 0);
        stop s = parse_list(body->root, false);
        vars_ = std::move(saved_vars);
        range_depth_ = saved_range;
        if (s.kind != stop_kind::end) {
            throw parse_error_at(s.kind == stop_kind::else_ ? s.offset : word_offset,
                                 s.kind == stop_kind::else_ ? "unexpected {{else}} in {{block}}"
                                                            : "{{block}} is never closed; add {{end}}");
        }
        out_.defines[n.text] = std::move(body);
        --depth_;
        return n;
    }

    void parse_define(std::size_t action_offset)
    {
        enter(action_offset);
        auto body = std::make_shared<tree>();
        body->name = parse_template_name("{{define}}");
        body->file = file_;
        expect_right_delim("{{define}}");
        vars_ = {"$"};
        stop s = parse_list(body->root, false);
        vars_ = {"$"};
        if (s.kind != stop_kind::end) {
            throw parse_error_at(s.kind == stop_kind::else_ ? s.offset : action_offset,
                                 s.kind == stop_kind::else_ ? "unexpected {{else}} in {{define}}"
                                                            : fmt::format("{{{{define \"{}\"}}}} is never closed; add {{{{end}}}}", body->name));
        }
        std::string name = body->name;
        out_.defines[name] = std::move(body);
        --depth_;
    }

    bool has_var(std::string_view name) const
    {
        return std::find(vars_.begin(), vars_.end(), name) != vars_.end();
    }

    // Parses a pipeline up to (not including) `end` (right delimiter or right parenthesis).
    std::shared_ptr<const pipeline> parse_pipeline(std::string_view context, bool allow_declaration, token_kind end,
                                                   bool in_range = false)
    {
        auto p = std::make_shared<pipeline>();
        p->pos = at(peek().offset);
        if (allow_declaration && peek().kind == token_kind::variable) {
            parse_declaration(*p, in_range);
        }
        while (true) {
            command c;
            c.pos = at(peek().offset);
            parse_command(c, p->commands.empty() ? 0 : 1);
            p->commands.push_back(std::move(c));
            const token& t = peek();
            if (t.kind == token_kind::pipe) {
                next();
                continue;
            }
            if (t.kind == end) {
                break;
            }
            throw parse_error_at(t.offset, fmt::format("unexpected {} in {}", describe(t), context));
        }
        // Variables become visible after their pipeline, so `$x := $x` needs an outer $x.
        if (!p->is_assignment) {
            for (const auto& name : p->declarations) {
                vars_.push_back(name);
            }
        }
        return p;
    }

    std::size_t offset_of(position pos) const
    {
        return line_starts_[static_cast<std::size_t>(pos.line - 1)] + static_cast<std::size_t>(pos.column - 1);
    }

    void parse_declaration(pipeline& p, bool in_range)
    {
        // Look ahead: `$x :=`, `$x =`, or (range only) `$i, $v :=`.
        std::size_t save = i_;
        std::vector<std::string> names{next().text};
        std::vector<std::size_t> offsets{tokens_[save].offset};
        if (peek().kind == token_kind::comma) {
            if (!in_range) {
                throw parse_error_at(peek().offset, "too many declarations; only range takes two variables");
            }
            next();
            const token& second = next();
            if (second.kind != token_kind::variable) {
                throw parse_error_at(second.offset, fmt::format("unexpected {} after \",\"; expected a variable", describe(second)));
            }
            names.push_back(second.text);
            offsets.push_back(second.offset);
            if (peek().kind != token_kind::declare && peek().kind != token_kind::assign) {
                throw parse_error_at(peek().offset, fmt::format("unexpected {} after {}, {}; expected := or =",
                                                                describe(peek()), names[0], names[1]));
            }
        }
        token_kind k = peek().kind;
        if (k != token_kind::declare && k != token_kind::assign) {
            i_ = save; // a plain variable operand
            return;
        }
        next();
        p.is_assignment = k == token_kind::assign;
        for (std::size_t n = 0; n < names.size(); ++n) {
            if (names[n] == "$") {
                throw parse_error_at(offsets[n], "cannot declare or assign $, because it is always the template's data");
            }
            if (p.is_assignment && !has_var(names[n])) {
                throw parse_error_at(offsets[n], fmt::format("undefined variable \"{}\"; declare it first with {} :=",
                                                             names[n], names[n]));
            }
        }
        p.declarations = std::move(names);
    }

    // `inputs`: 1 when the command receives the previous pipeline stage's value.
    void parse_command(command& c, std::size_t inputs)
    {
        while (true) {
            const token& t = peek();
            if (t.kind == token_kind::right_delim || t.kind == token_kind::right_paren || t.kind == token_kind::pipe) {
                break;
            }
            if (!c.args.empty() && !t.space_before) {
                throw parse_error_at(t.offset, fmt::format("missing space before {}", describe(t)));
            }
            c.args.push_back(parse_operand());
        }
        if (c.args.empty()) {
            throw parse_error_at(peek().offset, fmt::format("missing value for command before {}", describe(peek())));
        }
        const operand& head = c.args.front();
        if (head.kind == operand_kind::function) {
            std::string problem = check_arity(head.text, c.args.size() - 1 + inputs);
            if (!problem.empty()) {
                throw parse_error_at(offset_of(head.pos), problem);
            }
        } else if (c.args.size() > 1 || inputs > 0) {
            bool callable = !head.fields.empty() &&
                            (head.kind == operand_kind::field || head.kind == operand_kind::variable ||
                             head.kind == operand_kind::pipeline);
            if (!callable) {
                throw parse_error_at(offset_of(head.pos), c.args.size() > 1
                                                              ? "cannot give arguments to a value that is not a function or method"
                                                              : "cannot pipe a value into something that is not a function or method");
            }
        } else if (head.kind == operand_kind::nil) {
            throw parse_error_at(offset_of(head.pos), "nil is not a command");
        }
    }

    operand parse_operand()
    {
        const token& t = next();
        operand o;
        o.pos = at(t.offset);
        switch (t.kind) {
        case token_kind::identifier:
            if (!is_function(t.text)) {
                throw parse_error_at(t.offset, unknown_function_message(t.text));
            }
            o.kind = operand_kind::function;
            o.text = t.text;
            break;
        case token_kind::dot:
            o.kind = operand_kind::dot;
            break;
        case token_kind::field:
            o.kind = operand_kind::field;
            o.fields.push_back(t.text);
            break;
        case token_kind::variable:
            if (!has_var(t.text)) {
                throw parse_error_at(t.offset, fmt::format("undefined variable \"{}\"; declare it with {} := ...", t.text, t.text));
            }
            o.kind = operand_kind::variable;
            o.text = t.text;
            break;
        case token_kind::string:
            o.kind = operand_kind::string;
            o.text = t.text;
            break;
        case token_kind::boolean:
            o.kind = operand_kind::boolean;
            o.boolean = t.text == "true";
            break;
        case token_kind::nil:
            o.kind = operand_kind::nil;
            break;
        case token_kind::character:
            o.kind = operand_kind::integer;
            o.integer = t.number_value;
            break;
        case token_kind::number: {
            bool is_float = false;
            if (!parse_number(t.text, is_float, o.integer, o.floating)) {
                throw parse_error_at(t.offset, fmt::format("bad number syntax: \"{}\"", t.text));
            }
            o.kind = is_float ? operand_kind::floating : operand_kind::integer;
            break;
        }
        case token_kind::left_paren:
            enter(t.offset);
            o.kind = operand_kind::pipeline;
            o.sub = parse_pipeline("parenthesized pipeline", false, token_kind::right_paren);
            next(); // right parenthesis
            --depth_;
            break;
        default:
            throw parse_error_at(t.offset, fmt::format("unexpected {} in operand", describe(t)));
        }
        // A field chain written right after the term: $x.A, (pipeline).A, .A.B
        while (peek().kind == token_kind::field && !peek().space_before) {
            if (o.kind != operand_kind::field && o.kind != operand_kind::variable && o.kind != operand_kind::pipeline) {
                throw parse_error_at(peek().offset, fmt::format("unexpected .{} after a value that has no fields", peek().text));
            }
            o.fields.push_back(next().text);
        }
        if (peek().kind == token_kind::dot && !peek().space_before) {
            throw parse_error_at(peek().offset, "unexpected \".\" after term");
        }
        return o;
    }

    static std::string unknown_function_message(const std::string& name)
    {
        std::string message = fmt::format("function \"{}\" is not defined", name);
        // Function names are case-sensitive; point at the spelling that exists.
        static const char* const candidates[] = {
            "toUpper", "toLower", "title", "trimSpace", "join", "match", "reReplaceAll", "safeHtml", "safeUrl",
            "urlUnescape", "stringSlice", "toJson", "humanize", "humanize1024", "humanizeDuration",
            "humanizePercentage", "required", "default", "printf", "println", "urlquery"};
        for (const char* candidate : candidates) {
            std::string_view c(candidate);
            if (c.size() == name.size() &&
                std::equal(c.begin(), c.end(), name.begin(), [](char a, char b) { return std::tolower(a) == std::tolower(b); })) {
                return message + fmt::format("; did you mean \"{}\"?", c);
            }
        }
        if (name == "date" || name == "tz" || name == "since") {
            return message + "; tocsin does not implement the date functions yet";
        }
        return message;
    }

    std::string_view source_;
    std::vector<token> tokens_;
    std::size_t i_ = 0;
    std::vector<std::size_t> line_starts_;
    const std::string& file_;
    parse_result& out_;
    std::vector<std::string> vars_;
    int depth_ = 0;
    int range_depth_ = 0;

public:
    // Converts an error thrown by the parser into a positioned parse_error.
    template <typename F>
    bool guarded(F&& body, parse_error& error)
    {
        try {
            body();
            return true;
        } catch (const error_exception& e) {
            error.pos = at(e.offset);
            error.message = e.message;
            return false;
        }
    }
};

} // namespace

bool parse(std::string_view source, const std::string& name, const std::string& file, parse_result& out,
           parse_error& error)
{
    std::vector<token> tokens;
    try {
        tokens = lexer(source).run();
    } catch (const lex_error& e) {
        parser positions(source, {}, file, out);
        error.pos = positions.at(e.offset);
        error.message = e.message;
        return false;
    }
    parse_result result;
    parser p(source, std::move(tokens), file, result);
    auto root = std::make_shared<tree>();
    root->name = name;
    root->file = file;
    if (!p.guarded([&] { root->root = p.parse_top(); }, error)) {
        return false;
    }
    result.root = std::move(root);
    out = std::move(result);
    return true;
}

} // namespace detail

namespace {

struct inline_template {
    std::shared_ptr<const detail::tree> root;
    detail::tree_map locals;
};

void collect_calls(const detail::node_list& list, std::vector<const detail::node*>& calls)
{
    for (const auto& n : list) {
        if (n.kind == detail::node_kind::template_call) {
            calls.push_back(&n);
        }
        collect_calls(n.list, calls);
        collect_calls(n.else_list, calls);
    }
}

} // namespace

struct template_set::impl {
    detail::tree_map named;
    std::vector<inline_template> inlines;
};

template_set::template_set() : impl_(std::make_unique<impl>())
{
    detail::parse_result result;
    detail::parse_error error;
    if (!detail::parse(detail::default_templates_source(), "default templates", "", result, error)) {
        throw std::logic_error("the built-in notification templates do not parse: " + detail::to_string(error.pos) +
                               ": " + error.message);
    }
    impl_->named = std::move(result.defines);
}

template_set::~template_set() = default;
template_set::template_set(template_set&&) noexcept = default;
template_set& template_set::operator=(template_set&&) noexcept = default;

bool template_set::add_file(const std::string& file, std::string_view source, diagnostics& diags)
{
    detail::parse_result result;
    detail::parse_error error;
    if (!detail::parse(source, file, file, result, error)) {
        diags.add(file, error.pos.line, error.pos.column, error.message);
        return false;
    }
    for (auto& [name, body] : result.defines) {
        impl_->named[name] = std::move(body);
    }
    return true;
}

std::optional<std::size_t> template_set::add_inline(std::string_view source, std::string& error)
{
    detail::parse_result result;
    detail::parse_error parse_error;
    if (!detail::parse(source, "", "", result, parse_error)) {
        error = detail::to_string(parse_error.pos) + ": " + parse_error.message;
        return std::nullopt;
    }
    impl_->inlines.push_back(inline_template{std::move(result.root), std::move(result.defines)});
    return impl_->inlines.size() - 1;
}

bool template_set::check_references(diagnostics& diags, const std::string& config_file) const
{
    std::set<std::string, std::less<>> reported;
    auto check_tree = [&](const detail::tree& t, const detail::tree_map* locals) {
        std::vector<const detail::node*> calls;
        collect_calls(t.root, calls);
        for (const detail::node* call : calls) {
            if (impl_->named.count(call->text) != 0 || (locals != nullptr && locals->count(call->text) != 0)) {
                continue;
            }
            if (!reported.insert(call->text).second) {
                continue;
            }
            std::string message = fmt::format("template \"{}\" is not defined; define it with {{{{define \"{}\"}}}} "
                                              "in a template file listed under templates",
                                              call->text, call->text);
            if (t.file.empty()) {
                diags.add(config_file, 0, 0,
                          fmt::format("inline template at {}: {}", detail::to_string(call->pos), message));
            } else {
                diags.add(t.file, call->pos.line, call->pos.column, message);
            }
        }
    };
    std::size_t before = reported.size();
    for (const auto& [name, t] : impl_->named) {
        check_tree(*t, nullptr);
    }
    for (const auto& inl : impl_->inlines) {
        check_tree(*inl.root, &inl.locals);
        for (const auto& [name, t] : inl.locals) {
            check_tree(*t, &inl.locals);
        }
    }
    return reported.size() == before;
}

bool template_set::render(std::size_t inline_index, const nlohmann::json& data, std::string& out,
                          std::string& error) const
{
    out.clear();
    if (inline_index >= impl_->inlines.size()) {
        error = fmt::format("no inline template with index {}", inline_index);
        return false;
    }
    const inline_template& inl = impl_->inlines[inline_index];
    return detail::execute(*inl.root, inl.locals, impl_->named, data, out, error);
}

bool template_set::render_named(std::string_view name, const nlohmann::json& data, std::string& out,
                                std::string& error) const
{
    out.clear();
    auto it = impl_->named.find(name);
    if (it == impl_->named.end()) {
        error = fmt::format("template \"{}\" is not defined", name);
        return false;
    }
    static const detail::tree_map no_locals;
    return detail::execute(*it->second, no_locals, impl_->named, data, out, error);
}

bool template_set::has(std::string_view name) const
{
    return impl_->named.find(name) != impl_->named.end();
}

} // namespace tocsin::gotmpl
