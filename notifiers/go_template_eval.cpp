// Evaluation of parsed Go templates over JSON data, and the function library: Go's builtins,
// the functions Alertmanager adds, and sprig's `default` and `required`.
//
// Data semantics follow Alertmanager, whose data is made of map[string]string and slices: a
// missing map key is an empty value (renders as ""), field access on a non-object is an error,
// and objects iterate in sorted key order. The methods of Alertmanager's Go types are resolved
// when a field name is not a member: Alerts.Firing/Resolved, KV.SortedPairs/Names/Values/Remove,
// Pairs.Names/Values.

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <map>
#include <unordered_map>

#include <fmt/format.h>
#include <re2/re2.h>

#include "notifiers/go_template_impl.hpp"
#include "rules/template.hpp"

namespace tocsin::gotmpl::detail {

namespace {

using json = nlohmann::json;

// A value during evaluation: a pointer into the caller's data, or into a JSON value made during
// the render and kept alive by `owner`. A null pointer is "no value", as a missing map key.
struct value {
    std::shared_ptr<const json> owner;
    const json* p = nullptr;

    bool missing() const { return p == nullptr || p->is_null(); }
    const json& get() const
    {
        static const json null_json;
        return p == nullptr ? null_json : *p;
    }
};

value make_value(json j)
{
    auto owner = std::make_shared<const json>(std::move(j));
    const json* p = owner.get();
    return value{std::move(owner), p};
}

value child_of(const value& parent, const json& member)
{
    return value{parent.owner, &member};
}

// An error inside a function; the caller adds which function and where.
struct function_error {
    std::string message;
};

// A runtime error with its complete message.
struct execution_error {
    std::string message;
};

bool truthy(const json& j)
{
    switch (j.type()) {
    case json::value_t::null: return false;
    case json::value_t::boolean: return j.get<bool>();
    case json::value_t::number_integer: return j.get<std::int64_t>() != 0;
    case json::value_t::number_unsigned: return j.get<std::uint64_t>() != 0;
    case json::value_t::number_float: return j.get<double>() != 0.0;
    case json::value_t::string: return !j.get_ref<const std::string&>().empty();
    case json::value_t::array:
    case json::value_t::object: return !j.empty();
    default: return true;
    }
}

// The Go type name printed in fmt's error notes, as Go names the type of decoded JSON.
std::string go_type(const json& j)
{
    switch (j.type()) {
    case json::value_t::string: return "string";
    case json::value_t::boolean: return "bool";
    case json::value_t::number_integer: return "int";
    case json::value_t::number_unsigned: return "uint";
    case json::value_t::number_float: return "float64";
    case json::value_t::array: return "[]interface {}";
    case json::value_t::object: return "map[string]interface {}";
    default: return "<nil>";
    }
}

// Formats a float the way Go's %v and shortest %g do: the shortest digits that round-trip, in
// exponent form when the decimal exponent is below -4 or at least 6 (Go prints 1e+06).
std::string format_float_shortest(double d)
{
    if (std::isnan(d)) {
        return "NaN";
    }
    if (std::isinf(d)) {
        return d > 0 ? "+Inf" : "-Inf";
    }
    if (d == 0) {
        return std::signbit(d) ? "-0" : "0";
    }
    char buf[64];
    auto result = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
    std::string_view sci(buf, static_cast<std::size_t>(result.ptr - buf));
    std::string sign;
    if (sci.front() == '-') {
        sign = "-";
        sci.remove_prefix(1);
    }
    std::size_t e = sci.find('e');
    std::string digits;
    for (char c : sci.substr(0, e)) {
        if (c != '.') {
            digits.push_back(c);
        }
    }
    int exponent = std::stoi(std::string(sci.substr(e + 1)));
    if (exponent < -4 || exponent >= 6) {
        std::string out = sign + digits.substr(0, 1);
        if (digits.size() > 1) {
            out += "." + digits.substr(1);
        }
        return out + fmt::format("e{}{:02}", exponent < 0 ? '-' : '+', std::abs(exponent));
    }
    if (exponent < 0) {
        return sign + "0." + std::string(static_cast<std::size_t>(-exponent - 1), '0') + digits;
    }
    auto integer_digits = static_cast<std::size_t>(exponent + 1);
    if (digits.size() <= integer_digits) {
        return sign + digits + std::string(integer_digits - digits.size(), '0');
    }
    return sign + digits.substr(0, integer_digits) + "." + digits.substr(integer_digits);
}

// Formats `j` as Go's fmt %v does for the corresponding Go value. A missing value is "",
// because Alertmanager's maps hold strings and a missing key yields the empty string.
void append_text(std::string& out, const json& j)
{
    switch (j.type()) {
    case json::value_t::null: return;
    case json::value_t::string: out += j.get_ref<const std::string&>(); return;
    case json::value_t::boolean: out += j.get<bool>() ? "true" : "false"; return;
    case json::value_t::number_integer: out += std::to_string(j.get<std::int64_t>()); return;
    case json::value_t::number_unsigned: out += std::to_string(j.get<std::uint64_t>()); return;
    case json::value_t::number_float: out += format_float_shortest(j.get<double>()); return;
    case json::value_t::array: {
        out += '[';
        bool first = true;
        for (const auto& element : j) {
            if (!first) {
                out += ' ';
            }
            first = false;
            append_text(out, element);
        }
        out += ']';
        return;
    }
    case json::value_t::object: {
        out += "map[";
        bool first = true;
        for (const auto& [key, element] : j.items()) {
            if (!first) {
                out += ' ';
            }
            first = false;
            out += key;
            out += ':';
            append_text(out, element);
        }
        out += ']';
        return;
    }
    default: out += j.dump(); return;
    }
}

std::string text_of(const json& j)
{
    std::string out;
    append_text(out, j);
    return out;
}

// The string argument of a string function; a missing value is "".
const std::string& string_arg(const value& v, std::string_view what = "argument")
{
    static const std::string empty;
    if (v.missing()) {
        return empty;
    }
    if (!v.get().is_string()) {
        throw function_error{fmt::format("wrong type for {}: expected string, got {}", what, go_type(v.get()))};
    }
    return v.get().get_ref<const std::string&>();
}

bool int_of(const json& j, std::int64_t& out)
{
    if (j.is_number_integer()) {
        out = j.get<std::int64_t>();
        if (j.is_number_unsigned() && j.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX)) {
            return false;
        }
        return true;
    }
    return false;
}

double float_of(const json& j)
{
    if (j.is_number_unsigned()) {
        return static_cast<double>(j.get<std::uint64_t>());
    }
    if (j.is_number_integer()) {
        return static_cast<double>(j.get<std::int64_t>());
    }
    return j.get<double>();
}

// ---------- printf ----------

struct format_spec {
    bool minus = false;
    bool plus = false;
    bool sharp = false;
    bool space = false;
    bool zero = false;
    int width = -1;
    int precision = -1;
    char verb = 'v';
};

std::size_t rune_count(std::string_view s)
{
    std::size_t n = 0;
    for (char c : s) {
        if ((static_cast<unsigned char>(c) & 0xc0) != 0x80) {
            ++n;
        }
    }
    return n;
}

void pad(std::string& out, std::string_view body, const format_spec& spec, bool zero_allowed)
{
    std::size_t length = rune_count(body);
    std::size_t width = spec.width > 0 ? static_cast<std::size_t>(spec.width) : 0;
    if (length >= width) {
        out += body;
        return;
    }
    std::size_t fill = width - length;
    if (spec.minus) {
        out += body;
        out.append(fill, ' ');
    } else if (spec.zero && zero_allowed) {
        // Zeros go after the sign.
        std::size_t sign = !body.empty() && (body[0] == '-' || body[0] == '+' || body[0] == ' ') ? 1 : 0;
        out += body.substr(0, sign);
        out.append(fill, '0');
        out += body.substr(sign);
    } else {
        out.append(fill, ' ');
        out += body;
    }
}

std::string go_quote(std::string_view s)
{
    std::string out = "\"";
    for (char c : s) {
        auto byte = static_cast<unsigned char>(c);
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\a': out += "\\a"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\v': out += "\\v"; break;
        default:
            // NOTE: bytes from 0x80 up are copied as they are; Go escapes invalid UTF-8 and
            // non-printable code points as \x or \u.
            if (byte < 0x20 || byte == 0x7f) {
                out += fmt::format("\\x{:02x}", byte);
            } else {
                out.push_back(c);
            }
        }
    }
    out += '"';
    return out;
}

std::string format_integer(std::int64_t v, const format_spec& spec)
{
    int base = 10;
    bool upper = false;
    std::string prefix;
    switch (spec.verb) {
    case 'b': base = 2; prefix = spec.sharp ? "0b" : ""; break;
    case 'o': base = 8; prefix = spec.sharp ? "0" : ""; break;
    case 'O': base = 8; prefix = "0o"; break;
    case 'x': base = 16; prefix = spec.sharp ? "0x" : ""; break;
    case 'X': base = 16; upper = true; prefix = spec.sharp ? "0X" : ""; break;
    default: break;
    }
    std::uint64_t magnitude = v < 0 ? 0 - static_cast<std::uint64_t>(v) : static_cast<std::uint64_t>(v);
    char buf[80];
    auto result = std::to_chars(buf, buf + sizeof buf, magnitude, base);
    std::string digits(buf, result.ptr);
    if (upper) {
        std::transform(digits.begin(), digits.end(), digits.begin(), [](char c) { return static_cast<char>(std::toupper(c)); });
    }
    if (spec.precision >= 0) {
        if (spec.precision == 0 && magnitude == 0) {
            digits.clear();
        } else if (digits.size() < static_cast<std::size_t>(spec.precision)) {
            digits.insert(0, static_cast<std::size_t>(spec.precision) - digits.size(), '0');
        }
    }
    if (prefix == "0" && !digits.empty() && digits[0] == '0') {
        prefix.clear();
    }
    std::string sign;
    if (v < 0) {
        sign = "-";
    } else if (spec.plus) {
        sign = "+";
    } else if (spec.space) {
        sign = " ";
    }
    std::string body = sign + prefix + digits;
    std::string out;
    if (spec.zero && !spec.minus && spec.precision < 0 && spec.width > static_cast<int>(body.size())) {
        out = sign + prefix + std::string(static_cast<std::size_t>(spec.width) - body.size(), '0') + digits;
        return out;
    }
    pad(out, body, spec, false);
    return out;
}

std::string format_float(double d, const format_spec& spec)
{
    if (std::isnan(d) || std::isinf(d)) {
        // Go prints infinities with their sign: +Inf, -Inf.
        std::string body = "NaN";
        if (std::isinf(d)) {
            body = d > 0 ? "+Inf" : "-Inf";
        } else if (spec.plus) {
            body = "+NaN";
        }
        format_spec no_zero = spec;
        no_zero.zero = false;
        std::string out;
        pad(out, body, no_zero, false);
        return out;
    }
    std::string body;
    char verb = spec.verb == 'v' ? 'g' : spec.verb;
    if ((verb == 'g' || verb == 'G') && spec.precision < 0) {
        body = format_float_shortest(d);
        if (verb == 'G') {
            std::transform(body.begin(), body.end(), body.begin(), [](char c) { return static_cast<char>(std::toupper(c)); });
        }
        if (d >= 0 && spec.plus) {
            body.insert(0, "+");
        } else if (d >= 0 && spec.space) {
            body.insert(0, " ");
        }
    } else {
        std::string c_format = "%";
        if (spec.plus) {
            c_format += '+';
        } else if (spec.space) {
            c_format += ' ';
        }
        if (spec.sharp) {
            c_format += '#';
        }
        if (spec.precision >= 0) {
            c_format += "." + std::to_string(spec.precision);
        }
        c_format += verb == 'F' ? 'f' : verb;
        int needed = std::snprintf(nullptr, 0, c_format.c_str(), d);
        body.resize(static_cast<std::size_t>(std::max(needed, 0)) + 1);
        std::snprintf(body.data(), body.size(), c_format.c_str(), d);
        body.resize(static_cast<std::size_t>(std::max(needed, 0)));
    }
    std::string out;
    pad(out, body, spec, true);
    return out;
}

void format_value(std::string& out, const json& j, const format_spec& spec);

void bad_verb(std::string& out, const json& j, char verb)
{
    if (j.is_null()) {
        out += fmt::format("%!{}(<nil>)", verb);
        return;
    }
    out += fmt::format("%!{}({}=", verb, go_type(j));
    append_text(out, j);
    out += ')';
}

void format_value(std::string& out, const json& j, const format_spec& spec)
{
    char verb = spec.verb;
    if (verb == 'T') {
        pad(out, go_type(j), spec, false);
        return;
    }
    switch (j.type()) {
    case json::value_t::null:
    case json::value_t::string: {
        const std::string empty;
        const std::string& s = j.is_null() ? empty : j.get_ref<const std::string&>();
        if (verb == 'v' || verb == 's') {
            std::string_view body = s;
            if (spec.precision >= 0) {
                std::size_t runes = 0;
                std::size_t cut = 0;
                while (cut < body.size() && runes < static_cast<std::size_t>(spec.precision)) {
                    ++cut;
                    while (cut < body.size() && (static_cast<unsigned char>(body[cut]) & 0xc0) == 0x80) {
                        ++cut;
                    }
                    ++runes;
                }
                body = body.substr(0, cut);
            }
            pad(out, body, spec, false);
        } else if (verb == 'q') {
            pad(out, go_quote(s), spec, false);
        } else if (verb == 'x' || verb == 'X') {
            std::string hex;
            for (char c : s) {
                hex += verb == 'x' ? fmt::format("{:02x}", static_cast<unsigned char>(c))
                                   : fmt::format("{:02X}", static_cast<unsigned char>(c));
            }
            pad(out, hex, spec, false);
        } else {
            bad_verb(out, j.is_null() ? json("") : j, verb);
        }
        return;
    }
    case json::value_t::boolean:
        if (verb == 'v' || verb == 't') {
            pad(out, j.get<bool>() ? "true" : "false", spec, false);
        } else {
            bad_verb(out, j, verb);
        }
        return;
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: {
        std::int64_t v = 0;
        if (!int_of(j, v)) {
            format_spec as_float = spec;
            format_value(out, json(float_of(j)), as_float);
            return;
        }
        switch (verb) {
        case 'v':
        case 'd': {
            format_spec decimal = spec;
            decimal.verb = 'd';
            out += format_integer(v, decimal);
            return;
        }
        case 'b':
        case 'o':
        case 'O':
        case 'x':
        case 'X': out += format_integer(v, spec); return;
        case 'c': {
            std::string c;
            append_utf8(c, static_cast<std::uint32_t>(v));
            pad(out, c, spec, false);
            return;
        }
        case 'q': {
            std::string c = "'";
            append_utf8(c, static_cast<std::uint32_t>(v));
            pad(out, c + "'", spec, false);
            return;
        }
        case 'U': pad(out, fmt::format("U+{:04X}", v), spec, false); return;
        default: bad_verb(out, j, verb); return;
        }
    }
    case json::value_t::number_float:
        switch (verb) {
        case 'v':
        case 'e':
        case 'E':
        case 'f':
        case 'F':
        case 'g':
        case 'G': out += format_float(j.get<double>(), spec); return;
        default: bad_verb(out, j, verb); return;
        }
    case json::value_t::array: {
        out += '[';
        bool first = true;
        for (const auto& element : j) {
            if (!first) {
                out += ' ';
            }
            first = false;
            format_value(out, element, spec);
        }
        out += ']';
        return;
    }
    case json::value_t::object: {
        out += "map[";
        bool first = true;
        for (const auto& [key, element] : j.items()) {
            if (!first) {
                out += ' ';
            }
            first = false;
            format_value(out, json(key), spec);
            out += ':';
            format_value(out, element, spec);
        }
        out += ']';
        return;
    }
    default: bad_verb(out, j, verb); return;
    }
}

// Go's fmt.Sprintf over JSON values. Widths and precisions above Go's own limit (1e6) print
// %!(BADWIDTH) / %!(BADPREC) as Go does; the result is capped at the output limit.
// NOTE: explicit argument indexes (%[2]d) are not supported; they print %!(BADINDEX).
std::string go_sprintf(std::string_view format, const std::vector<value>& args, std::size_t first_arg)
{
    std::string out;
    std::size_t arg = first_arg;
    std::size_t i = 0;
    auto read_number = [&](int& target) -> bool {
        std::int64_t n = 0;
        bool any = false;
        while (i < format.size() && format[i] >= '0' && format[i] <= '9') {
            n = n * 10 + (format[i] - '0');
            any = true;
            ++i;
            if (n > 1'000'000) {
                while (i < format.size() && format[i] >= '0' && format[i] <= '9') {
                    ++i;
                }
                target = -2;
                return true;
            }
        }
        if (any) {
            target = static_cast<int>(n);
        }
        return any;
    };
    while (i < format.size()) {
        if (out.size() > max_output_bytes) {
            throw function_error{fmt::format("result exceeds {} bytes", max_output_bytes)};
        }
        char c = format[i];
        if (c != '%') {
            out.push_back(c);
            ++i;
            continue;
        }
        ++i;
        format_spec spec;
        for (; i < format.size(); ++i) {
            char f = format[i];
            if (f == '-') {
                spec.minus = true;
            } else if (f == '+') {
                spec.plus = true;
            } else if (f == '#') {
                spec.sharp = true;
            } else if (f == ' ') {
                spec.space = true;
            } else if (f == '0') {
                spec.zero = !spec.minus;
            } else {
                break;
            }
        }
        bool bad_width = false;
        bool bad_precision = false;
        if (i < format.size() && format[i] == '*') {
            ++i;
            std::int64_t w = 0;
            if (arg < args.size() && int_of(args[arg].get(), w) && w >= -1'000'000 && w <= 1'000'000) {
                spec.width = static_cast<int>(w < 0 ? -w : w);
                spec.minus = spec.minus || w < 0;
            } else {
                bad_width = true;
            }
            ++arg;
        } else {
            read_number(spec.width);
            bad_width = spec.width == -2;
        }
        if (i < format.size() && format[i] == '.') {
            ++i;
            if (i < format.size() && format[i] == '*') {
                ++i;
                std::int64_t p = 0;
                if (arg < args.size() && int_of(args[arg].get(), p) && p >= 0 && p <= 1'000'000) {
                    spec.precision = static_cast<int>(p);
                } else {
                    bad_precision = true;
                }
                ++arg;
            } else if (!read_number(spec.precision)) {
                spec.precision = 0;
            }
            bad_precision = bad_precision || spec.precision == -2;
        }
        if (bad_width) {
            out += "%!(BADWIDTH)";
            spec.width = -1;
        }
        if (bad_precision) {
            out += "%!(BADPREC)";
            spec.precision = -1;
        }
        if (i >= format.size()) {
            out += "%!(NOVERB)";
            break;
        }
        char verb = format[i++];
        if (verb == '%') {
            out.push_back('%');
            continue;
        }
        if (verb == '[') {
            out += "%!(BADINDEX)";
            continue;
        }
        spec.verb = verb;
        if (arg >= args.size()) {
            out += fmt::format("%!{}(MISSING)", verb);
            continue;
        }
        format_value(out, args[arg++].get(), spec);
    }
    if (arg < args.size()) {
        out += "%!(EXTRA ";
        for (std::size_t k = arg; k < args.size(); ++k) {
            if (k > arg) {
                out += ", ";
            }
            const json& j = args[k].get();
            if (j.is_null()) {
                out += "<nil>";
            } else {
                out += go_type(j) + "=" + text_of(j);
            }
        }
        out += ')';
    }
    return out;
}

bool is_string_like(const json& j)
{
    return j.is_string() || j.is_null();
}

// Go's fmt.Sprint: operands are joined with a space when neither side is a string.
std::string go_sprint(const std::vector<value>& args)
{
    std::string out;
    for (std::size_t k = 0; k < args.size(); ++k) {
        if (k > 0 && !is_string_like(args[k - 1].get()) && !is_string_like(args[k].get())) {
            out += ' ';
        }
        append_text(out, args[k].get());
    }
    return out;
}

// The text of the escapers' arguments: one string as it is, anything else through Sprint.
std::string escaper_input(const std::vector<value>& args)
{
    if (args.size() == 1 && args[0].get().is_string()) {
        return args[0].get().get<std::string>();
    }
    return go_sprint(args);
}

std::string html_escape(std::string_view s)
{
    std::string out;
    for (char c : s) {
        switch (c) {
        case '"': out += "&#34;"; break;
        case '\'': out += "&#39;"; break;
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '\0': out += "\xef\xbf\xbd"; break;
        default: out.push_back(c);
        }
    }
    return out;
}

std::string js_escape(std::string_view s)
{
    std::string out;
    for (char c : s) {
        switch (c) {
        case '\\': out += "\\\\"; break;
        case '\'': out += "\\'"; break;
        case '"': out += "\\\""; break;
        case '<': out += "\\u003C"; break;
        case '>': out += "\\u003E"; break;
        case '&': out += "\\u0026"; break;
        case '=': out += "\\u003D"; break;
        default:
            if (static_cast<unsigned char>(c) < 0x20) {
                out += fmt::format("\\u{:04X}", static_cast<unsigned char>(c));
            } else {
                out.push_back(c);
            }
        }
    }
    return out;
}

std::string query_escape(std::string_view s)
{
    std::string out;
    for (char c : s) {
        auto byte = static_cast<unsigned char>(c);
        if (std::isalnum(byte) != 0 || c == '-' || c == '_' || c == '.' || c == '~') {
            out.push_back(c);
        } else if (c == ' ') {
            out.push_back('+');
        } else {
            out += fmt::format("%{:02X}", byte);
        }
    }
    return out;
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

std::string query_unescape(std::string_view s)
{
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (c == '+') {
            out.push_back(' ');
        } else if (c == '%') {
            if (i + 2 >= s.size()) {
                throw function_error{fmt::format("invalid URL escape \"{}\"", s.substr(i))};
            }
            int high = hex_digit(s[i + 1]);
            int low = hex_digit(s[i + 2]);
            if (high < 0 || low < 0) {
                throw function_error{fmt::format("invalid URL escape \"{}\"", s.substr(i, 3))};
            }
            out.push_back(static_cast<char>(high * 16 + low));
            i += 2;
        } else {
            out.push_back(c);
        }
    }
    return out;
}

// Go's strings.Title: upper-cases the first letter of each word.
// NOTE: only ASCII letters change case here and in toUpper/toLower; Go also maps other letters.
std::string title_case(std::string_view s)
{
    std::string out;
    bool after_separator = true;
    for (char c : s) {
        auto byte = static_cast<unsigned char>(c);
        out.push_back(after_separator ? static_cast<char>(std::toupper(byte)) : c);
        after_separator = byte < 0x80 && std::isalnum(byte) == 0 && c != '_';
    }
    return out;
}

std::string to_json_text(const json& j)
{
    std::string dumped = j.dump(-1, ' ', false, json::error_handler_t::replace);
    // Go's encoding/json escapes <, > and & so the result is safe inside HTML. They only occur
    // inside strings in JSON text, so replacing them everywhere is exact.
    std::string out;
    for (char c : dumped) {
        if (c == '<') {
            out += "\\u003c";
        } else if (c == '>') {
            out += "\\u003e";
        } else if (c == '&') {
            out += "\\u0026";
        } else {
            out.push_back(c);
        }
    }
    return out;
}

double number_arg(const value& v)
{
    const json& j = v.get();
    if (j.is_number()) {
        return float_of(j);
    }
    if (j.is_string()) {
        const std::string& s = j.get_ref<const std::string&>();
        char* end = nullptr;
        double d = std::strtod(s.c_str(), &end);
        if (s.empty() || end != s.c_str() + s.size()) {
            throw function_error{fmt::format("cannot convert \"{}\" to a number", s)};
        }
        return d;
    }
    throw function_error{fmt::format("expected a number, got {}", go_type(j))};
}

// ---------- comparison ----------

enum class basic_kind { boolean, integer, floating, string, other };

basic_kind kind_of(const json& j)
{
    switch (j.type()) {
    case json::value_t::boolean: return basic_kind::boolean;
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return basic_kind::integer;
    case json::value_t::number_float: return basic_kind::floating;
    case json::value_t::string: return basic_kind::string;
    default: return basic_kind::other;
    }
}

// A missing value compares as the empty value of the other operand's type, as a missing key of
// Alertmanager's string maps compares as "".
json comparable_of(const json& j, const json& other)
{
    if (!j.is_null()) {
        return j;
    }
    switch (kind_of(other)) {
    case basic_kind::boolean: return false;
    case basic_kind::integer: return 0;
    case basic_kind::floating: return 0.0;
    default: return "";
    }
}

template <typename T>
int three_way(const T& x, const T& y)
{
    if (x < y) {
        return -1;
    }
    return y < x ? 1 : 0;
}

// Returns <0, 0 or >0. Integers and floats compare by value.
// NOTE: Go rejects comparing an int with a float; here they compare numerically because JSON
// data does not keep that distinction reliably.
int compare(const json& left_in, const json& right_in, bool ordering)
{
    json left = comparable_of(left_in, right_in);
    json right = comparable_of(right_in, left_in);
    basic_kind a = kind_of(left);
    basic_kind b = kind_of(right);
    if (a == basic_kind::other || b == basic_kind::other) {
        throw function_error{fmt::format("non-comparable type {}", go_type(a == basic_kind::other ? left : right))};
    }
    bool numeric_a = a == basic_kind::integer || a == basic_kind::floating;
    bool numeric_b = b == basic_kind::integer || b == basic_kind::floating;
    if (numeric_a && numeric_b) {
        if (a == basic_kind::integer && b == basic_kind::integer) {
            std::int64_t x = 0;
            std::int64_t y = 0;
            if (int_of(left, x) && int_of(right, y)) {
                return three_way(x, y);
            }
        }
        double x = float_of(left);
        double y = float_of(right);
        return three_way(x, y);
    }
    if (a != b) {
        throw function_error{fmt::format("incompatible types for comparison: {} and {}", go_type(left), go_type(right))};
    }
    if (a == basic_kind::boolean) {
        if (ordering) {
            throw function_error{"invalid type for comparison: bool"};
        }
        return left.get<bool>() == right.get<bool>() ? 0 : 1;
    }
    return three_way(left.get_ref<const std::string&>(), right.get_ref<const std::string&>());
}

// ---------- regular expressions ----------

// Expands Go's replacement template ($1, ${1}, $name, ${name}, $$) for one match.
void expand_replacement(std::string& out, std::string_view repl, const RE2& re, const std::vector<re2::StringPiece>& groups)
{
    std::size_t i = 0;
    while (i < repl.size()) {
        std::size_t dollar = repl.find('$', i);
        if (dollar == std::string_view::npos) {
            out += repl.substr(i);
            return;
        }
        out += repl.substr(i, dollar - i);
        i = dollar + 1;
        if (i < repl.size() && repl[i] == '$') {
            out.push_back('$');
            ++i;
            continue;
        }
        bool brace = i < repl.size() && repl[i] == '{';
        std::size_t start = brace ? i + 1 : i;
        std::size_t end = start;
        while (end < repl.size() && (std::isalnum(static_cast<unsigned char>(repl[end])) != 0 || repl[end] == '_')) {
            ++end;
        }
        if (end == start || (brace && (end >= repl.size() || repl[end] != '}'))) {
            out.push_back('$'); // malformed: the dollar sign stays as it is
            continue;
        }
        std::string_view name = repl.substr(start, end - start);
        i = brace ? end + 1 : end;
        int index = -1;
        if (std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; })) {
            auto [ptr, ec] = std::from_chars(name.data(), name.data() + name.size(), index);
            if (ec != std::errc()) {
                index = -1;
            }
            (void)ptr;
        } else {
            const auto& named = re.NamedCapturingGroups();
            auto it = named.find(std::string(name));
            if (it != named.end()) {
                index = it->second;
            }
        }
        if (index >= 0 && static_cast<std::size_t>(index) < groups.size() && groups[static_cast<std::size_t>(index)].data() != nullptr) {
            const auto& g = groups[static_cast<std::size_t>(index)];
            out.append(g.data(), g.size());
        }
    }
}

// Go's Regexp.ReplaceAllString: non-overlapping matches left to right; an empty match right
// after a previous match is not replaced.
std::string replace_all(const RE2& re, std::string_view text, std::string_view repl)
{
    std::string out;
    std::vector<re2::StringPiece> groups(static_cast<std::size_t>(re.NumberOfCapturingGroups()) + 1);
    re2::StringPiece input(text.data(), text.size());
    std::size_t last_end = 0;
    std::size_t search = 0;
    while (search <= text.size()) {
        if (!re.Match(input, search, text.size(), RE2::UNANCHORED, groups.data(), static_cast<int>(groups.size()))) {
            break;
        }
        auto match_start = static_cast<std::size_t>(groups[0].data() - text.data());
        std::size_t match_end = match_start + groups[0].size();
        out += text.substr(last_end, match_start - last_end);
        if (match_end > last_end || match_start == 0) {
            expand_replacement(out, repl, re, groups);
        }
        if (out.size() > max_output_bytes) {
            throw function_error{fmt::format("result exceeds {} bytes", max_output_bytes)};
        }
        last_end = match_end;
        std::size_t width = 1;
        if (search < text.size()) {
            width = std::max<std::size_t>(utf8_sequence_length(static_cast<unsigned char>(text[search])), 1);
            width = std::min(width, text.size() - search);
        }
        if (search + width > match_end) {
            search += width;
        } else if (search + 1 > match_end) {
            ++search;
        } else {
            search = match_end;
        }
    }
    if (last_end < text.size()) {
        out += text.substr(last_end);
    }
    return out;
}

// ---------- executor ----------

enum class flow { normal, break_loop, continue_loop };

class executor;

using function_impl = value (*)(executor&, std::vector<value>&);

struct function_info {
    std::size_t min_args;
    std::size_t max_args; // SIZE_MAX: variadic
    function_impl impl;
};

const std::map<std::string, function_info, std::less<>>& function_table();

class executor {
public:
    executor(const tree_map& locals, const tree_map& named, std::string& out)
        : locals_(locals), named_(named), out_(out)
    {
    }

    void run(const tree& root, const value& data)
    {
        current_ = &root;
        vars_.emplace_back("$", data);
        exec_list(root.root, data);
    }

    const RE2& regex(const std::string& pattern)
    {
        auto it = regexes_.find(pattern);
        if (it != regexes_.end()) {
            return *it->second;
        }
        RE2::Options options;
        options.set_log_errors(false);
        auto re = std::make_unique<RE2>(pattern, options);
        if (!re->ok()) {
            throw function_error{fmt::format("error parsing regexp \"{}\": {}", pattern, re->error())};
        }
        // Patterns are usually literals of the template, so the cache stays small. A template
        // that builds patterns from data starts a fresh cache every 64 patterns.
        if (regexes_.size() >= 64) {
            regexes_.clear();
        }
        return *regexes_.emplace(pattern, std::move(re)).first->second;
    }

private:
    [[noreturn]] void fail(position pos, const std::string& what) const
    {
        std::string where;
        if (current_->name.empty()) {
            where = "the inline template";
        } else if (!current_->file.empty() && current_->file != current_->name) {
            where = fmt::format("template \"{}\" of {}", current_->name, current_->file);
        } else {
            where = fmt::format("template \"{}\"", current_->name);
        }
        throw execution_error{fmt::format("{} at {} in {}", what, to_string(pos), where)};
    }

    void step(position pos)
    {
        if (++steps_ > max_steps) {
            fail(pos, fmt::format("the template ran more than {} steps; it probably recurses without end", max_steps));
        }
    }

    void write(position pos, std::string_view text)
    {
        if (out_.size() + text.size() > max_output_bytes) {
            fail(pos, fmt::format("output exceeds the limit of {} bytes", max_output_bytes));
        }
        out_ += text;
    }

    void print(position pos, const value& v)
    {
        std::string text;
        append_text(text, v.get());
        write(pos, text);
    }

    flow exec_list(const node_list& list, const value& dot)
    {
        for (const node& n : list) {
            step(n.pos);
            flow f = exec_node(n, dot);
            if (f != flow::normal) {
                return f;
            }
        }
        return flow::normal;
    }

    flow exec_node(const node& n, const value& dot)
    {
        switch (n.kind) {
        case node_kind::text: write(n.pos, n.text); return flow::normal;
        case node_kind::action: {
            value v = eval_pipeline(*n.pipe, dot, true);
            if (n.pipe->declarations.empty()) {
                print(n.pos, v);
            }
            return flow::normal;
        }
        case node_kind::if_:
        case node_kind::with: {
            std::size_t mark = vars_.size();
            value v = eval_pipeline(*n.pipe, dot, true);
            flow f = flow::normal;
            if (truthy(v.get())) {
                f = exec_list(n.list, n.kind == node_kind::with ? v : dot);
            } else {
                f = exec_list(n.else_list, dot);
            }
            vars_.resize(mark);
            return f;
        }
        case node_kind::range: return exec_range(n, dot);
        case node_kind::template_call: exec_template(n, dot); return flow::normal;
        case node_kind::break_: return flow::break_loop;
        case node_kind::continue_: return flow::continue_loop;
        }
        return flow::normal;
    }

    // Runs one iteration; returns false when the loop must stop.
    bool iterate(const node& n, const value& key, const value& element)
    {
        if (++iterations_ > max_range_iterations) {
            fail(n.pos, fmt::format("range loops ran more than {} iterations in one render", max_range_iterations));
        }
        std::size_t mark = vars_.size();
        const auto& names = n.pipe->declarations;
        if (names.size() == 1) {
            bind(names[0], element, n.pipe->is_assignment);
        } else if (names.size() == 2) {
            bind(names[0], key, n.pipe->is_assignment);
            bind(names[1], element, n.pipe->is_assignment);
        }
        flow f = exec_list(n.list, element);
        vars_.resize(mark);
        return f != flow::break_loop;
    }

    flow exec_range(const node& n, const value& dot)
    {
        value v = eval_pipeline(*n.pipe, dot, false);
        const json& j = v.get();
        std::size_t count = 0;
        if (j.is_array()) {
            count = j.size();
            for (std::size_t i = 0; i < j.size(); ++i) {
                if (!iterate(n, make_value(json(static_cast<std::int64_t>(i))), child_of(v, j[i]))) {
                    break;
                }
            }
        } else if (j.is_object()) {
            count = j.size();
            for (const auto& [key, element] : j.items()) {
                if (!iterate(n, make_value(json(key)), child_of(v, element))) {
                    break;
                }
            }
        } else if (j.is_number_integer()) {
            if (n.pipe->declarations.size() > 1) {
                fail(n.pos, "cannot use two variables to range over an integer");
            }
            std::int64_t limit = 0;
            if (int_of(j, limit)) {
                for (std::int64_t i = 0; i < limit; ++i) {
                    ++count;
                    value index = make_value(json(i));
                    if (!iterate(n, index, index)) {
                        break;
                    }
                }
            }
        } else if (!j.is_null()) {
            fail(n.pos, fmt::format("range cannot iterate over {} {}", go_type(j), text_of(j).substr(0, 40)));
        }
        if (count == 0) {
            return exec_list(n.else_list, dot);
        }
        return flow::normal;
    }

    void exec_template(const node& n, const value& dot)
    {
        const tree* body = nullptr;
        if (auto it = locals_.find(n.text); it != locals_.end()) {
            body = it->second.get();
        } else if (auto named = named_.find(n.text); named != named_.end()) {
            body = named->second.get();
        }
        if (body == nullptr) {
            fail(n.pos, fmt::format("template \"{}\" is not defined", n.text));
        }
        if (call_depth_ >= max_call_depth) {
            fail(n.pos, fmt::format("templates nested more than {} calls deep; a template probably calls itself", max_call_depth));
        }
        value arg = n.pipe ? eval_pipeline(*n.pipe, dot, false) : value{};
        auto saved_vars = std::exchange(vars_, {});
        vars_.emplace_back("$", arg);
        const tree* saved_tree = std::exchange(current_, body);
        ++call_depth_;
        exec_list(body->root, arg);
        --call_depth_;
        current_ = saved_tree;
        vars_ = std::move(saved_vars);
    }

    void bind(const std::string& name, const value& v, bool assign)
    {
        if (assign) {
            for (auto it = vars_.rbegin(); it != vars_.rend(); ++it) {
                if (it->first == name) {
                    it->second = v;
                    return;
                }
            }
        }
        vars_.emplace_back(name, v);
    }

    value eval_pipeline(const pipeline& p, const value& dot, bool declare)
    {
        value v;
        bool has_input = false;
        for (const command& c : p.commands) {
            v = eval_command(c, dot, has_input ? &v : nullptr);
            has_input = true;
        }
        if (declare) {
            for (const auto& name : p.declarations) {
                bind(name, v, p.is_assignment);
            }
        }
        return v;
    }

    value eval_command(const command& c, const value& dot, const value* input)
    {
        step(c.pos);
        const operand& head = c.args.front();
        if (head.kind == operand_kind::function) {
            return call_function(head, c, dot, input);
        }
        if (c.args.size() == 1 && input == nullptr) {
            return eval_operand(head, dot);
        }
        // A method call with arguments: .CommonLabels.Remove (stringSlice "a").
        value receiver = eval_term(head, dot);
        for (std::size_t k = 0; k + 1 < head.fields.size(); ++k) {
            receiver = field_of(receiver, head.fields[k], head.pos, nullptr);
        }
        std::vector<value> args;
        for (std::size_t k = 1; k < c.args.size(); ++k) {
            args.push_back(eval_operand(c.args[k], dot));
        }
        if (input != nullptr) {
            args.push_back(*input);
        }
        return field_of(receiver, head.fields.back(), head.pos, &args);
    }

    // The operand without its field chain.
    value eval_term(const operand& o, const value& dot)
    {
        switch (o.kind) {
        case operand_kind::dot:
        case operand_kind::field: return dot;
        case operand_kind::variable:
            for (auto it = vars_.rbegin(); it != vars_.rend(); ++it) {
                if (it->first == o.text) {
                    return it->second;
                }
            }
            fail(o.pos, fmt::format("undefined variable \"{}\"", o.text));
        case operand_kind::string: return make_value(json(o.text));
        case operand_kind::integer: return make_value(json(o.integer));
        case operand_kind::floating: return make_value(json(o.floating));
        case operand_kind::boolean: return make_value(json(o.boolean));
        case operand_kind::nil: return value{};
        case operand_kind::function: {
            command bare;
            bare.pos = o.pos;
            bare.args.push_back(o);
            return call_function(o, bare, dot, nullptr);
        }
        case operand_kind::pipeline: return eval_pipeline(*o.sub, dot, false);
        }
        return value{};
    }

    value eval_operand(const operand& o, const value& dot)
    {
        value v = eval_term(o, dot);
        for (const auto& name : o.fields) {
            v = field_of(v, name, o.pos, nullptr);
        }
        return v;
    }

    // Field access, or a method of Alertmanager's data types when `name` is not a member.
    // `args` is non-null when the method is called with arguments.
    value field_of(const value& v, const std::string& name, position pos, std::vector<value>* args)
    {
        const json& j = v.get();
        if (j.is_object()) {
            auto it = j.find(name);
            if (it != j.end()) {
                if (args != nullptr) {
                    fail(pos, fmt::format("{} is a field, not a method; it takes no arguments", name));
                }
                return child_of(v, *it);
            }
            if (is_method(j, name)) {
                return call_method(v, name, pos, args);
            }
            if (args != nullptr) {
                fail(pos, fmt::format("{} is not a method of a map", name));
            }
            return value{}; // a missing key
        }
        if (j.is_array()) {
            if (is_method(j, name)) {
                return call_method(v, name, pos, args);
            }
            fail(pos, fmt::format("cannot evaluate field {} in a list (type {})", name, go_type(j)));
        }
        if (j.is_null()) {
            if (args != nullptr) {
                fail(pos, fmt::format("cannot call method {} of a missing value", name));
            }
            return value{}; // a field of a missing value is missing too, as in Go
        }
        fail(pos, fmt::format("cannot evaluate field {} in type {}", name, go_type(j)));
    }

    static bool is_method(const json& j, std::string_view name)
    {
        if (j.is_object()) {
            return name == "SortedPairs" || name == "Names" || name == "Values" || name == "Remove";
        }
        return name == "Firing" || name == "Resolved" || name == "Names" || name == "Values";
    }

    value call_method(const value& v, const std::string& name, position pos, std::vector<value>* args)
    {
        const json& j = v.get();
        std::size_t want = name == "Remove" ? 1 : 0;
        std::size_t got = args == nullptr ? 0 : args->size();
        if (got != want) {
            fail(pos, fmt::format("wrong number of arguments for {}: want {}, got {}", name, want, got));
        }
        if (name == "Firing" || name == "Resolved") {
            std::string status = name == "Firing" ? "firing" : "resolved";
            json out = json::array();
            for (const auto& alert : j) {
                if (alert.is_object()) {
                    auto s = alert.find("Status");
                    if (s != alert.end() && s->is_string() && s->get_ref<const std::string&>() == status) {
                        out.push_back(alert);
                    }
                }
            }
            return make_value(std::move(out));
        }
        if (j.is_array()) {
            // Pairs.Names and Pairs.Values: the Name or Value of each {Name, Value} element.
            const char* member = name == "Names" ? "Name" : "Value";
            json out = json::array();
            for (const auto& pair : j) {
                if (!pair.is_object() || !pair.contains(member)) {
                    fail(pos, fmt::format("{} needs a list of {{Name, Value}} pairs such as .SortedPairs", name));
                }
                out.push_back(pair[member]);
            }
            return make_value(std::move(out));
        }
        if (name == "SortedPairs") {
            json out = json::array();
            for (const auto& [key, element] : j.items()) {
                out.push_back(json{{"Name", key}, {"Value", element}});
            }
            return make_value(std::move(out));
        }
        if (name == "Names" || name == "Values") {
            json out = json::array();
            for (const auto& [key, element] : j.items()) {
                out.push_back(name == "Names" ? json(key) : element);
            }
            return make_value(std::move(out));
        }
        // Remove
        const json& keys = (*args)[0].get();
        json out = j;
        if (keys.is_array()) {
            for (const auto& key : keys) {
                if (key.is_string()) {
                    out.erase(key.get<std::string>());
                }
            }
        } else if (keys.is_string()) {
            out.erase(keys.get<std::string>());
        } else if (!keys.is_null()) {
            fail(pos, fmt::format("Remove takes a list of names such as (stringSlice \"a\" \"b\"), got {}", go_type(keys)));
        }
        return make_value(std::move(out));
    }

    value call_function(const operand& head, const command& c, const value& dot, const value* input)
    {
        const std::string& name = head.text;
        if (name == "and" || name == "or") {
            // Short-circuit: return the first argument that decides the result, or the last.
            bool is_and = name == "and";
            std::size_t total = c.args.size() - 1 + (input != nullptr ? 1 : 0);
            value v;
            for (std::size_t k = 0; k < total; ++k) {
                v = k + 1 < c.args.size() ? eval_operand(c.args[k + 1], dot) : *input;
                if (truthy(v.get()) != is_and) {
                    return v;
                }
            }
            return v;
        }
        const auto& table = function_table();
        auto it = table.find(name);
        if (it == table.end()) {
            fail(head.pos, fmt::format("function \"{}\" is not defined", name));
        }
        std::vector<value> args;
        args.reserve(c.args.size());
        for (std::size_t k = 1; k < c.args.size(); ++k) {
            args.push_back(eval_operand(c.args[k], dot));
        }
        if (input != nullptr) {
            args.push_back(*input);
        }
        value result;
        try {
            result = it->second.impl(*this, args);
        } catch (const function_error& e) {
            fail(head.pos, fmt::format("error calling {}: {}", name, e.message));
        }
        if (result.p != nullptr && result.p->is_string() && result.p->get_ref<const std::string&>().size() > max_output_bytes) {
            fail(head.pos, fmt::format("error calling {}: result exceeds {} bytes", name, max_output_bytes));
        }
        return result;
    }

    const tree_map& locals_;
    const tree_map& named_;
    std::string& out_;
    const tree* current_ = nullptr;
    std::vector<std::pair<std::string, value>> vars_;
    int call_depth_ = 0;
    std::uint64_t steps_ = 0;
    std::uint64_t iterations_ = 0;
    std::unordered_map<std::string, std::unique_ptr<RE2>> regexes_;
};

// ---------- the function library ----------

value string_result(std::string s)
{
    return make_value(json(std::move(s)));
}

value fn_not(executor&, std::vector<value>& a)
{
    return make_value(json(!truthy(a[0].get())));
}

value fn_len(executor&, std::vector<value>& a)
{
    const json& j = a[0].get();
    if (j.is_string()) {
        return make_value(json(static_cast<std::int64_t>(j.get_ref<const std::string&>().size())));
    }
    if (j.is_array() || j.is_object()) {
        return make_value(json(static_cast<std::int64_t>(j.size())));
    }
    if (j.is_null()) {
        return make_value(json(std::int64_t{0}));
    }
    throw function_error{fmt::format("len of type {}", go_type(j))};
}

value fn_index(executor&, std::vector<value>& a)
{
    value v = a[0];
    for (std::size_t k = 1; k < a.size(); ++k) {
        const json& j = v.get();
        const json& key = a[k].get();
        if (j.is_array() || j.is_string()) {
            std::int64_t i = 0;
            if (!int_of(key, i)) {
                throw function_error{fmt::format("cannot index a {} with a {}; use an integer", go_type(j), go_type(key))};
            }
            std::size_t size = j.is_array() ? j.size() : j.get_ref<const std::string&>().size();
            if (i < 0 || static_cast<std::size_t>(i) >= size) {
                throw function_error{fmt::format("index out of range: {} (length {})", i, size)};
            }
            if (j.is_string()) {
                v = make_value(json(static_cast<std::int64_t>(static_cast<unsigned char>(j.get_ref<const std::string&>()[static_cast<std::size_t>(i)]))));
            } else {
                v = child_of(v, j[static_cast<std::size_t>(i)]);
            }
        } else if (j.is_object()) {
            if (!key.is_string()) {
                throw function_error{fmt::format("cannot index a map with a {}; use a string", go_type(key))};
            }
            auto it = j.find(key.get_ref<const std::string&>());
            v = it == j.end() ? value{} : child_of(v, *it);
        } else if (j.is_null()) {
            v = value{}; // indexing a missing map gives a missing value, as Go's nil map does
        } else {
            throw function_error{fmt::format("cannot index into a value of type {}", go_type(j))};
        }
    }
    return v;
}

value fn_slice(executor&, std::vector<value>& a)
{
    const json& j = a[0].get();
    if (!j.is_array() && !j.is_string()) {
        throw function_error{fmt::format("cannot slice a value of type {}", go_type(j))};
    }
    std::size_t size = j.is_array() ? j.size() : j.get_ref<const std::string&>().size();
    if (j.is_string() && a.size() > 3) {
        throw function_error{"cannot 3-index slice a string"};
    }
    std::vector<std::int64_t> idx;
    for (std::size_t k = 1; k < a.size(); ++k) {
        std::int64_t i = 0;
        if (!int_of(a[k].get(), i)) {
            throw function_error{fmt::format("slice index must be an integer, got {}", go_type(a[k].get()))};
        }
        if (i < 0 || static_cast<std::size_t>(i) > size) {
            throw function_error{fmt::format("slice index out of range: {} (length {})", i, size)};
        }
        idx.push_back(i);
    }
    std::size_t low = idx.size() > 0 ? static_cast<std::size_t>(idx[0]) : 0;
    std::size_t high = idx.size() > 1 ? static_cast<std::size_t>(idx[1]) : size;
    if (low > high || (idx.size() > 2 && idx[2] < idx[1])) {
        throw function_error{fmt::format("invalid slice index: {} > {}", low, high)};
    }
    if (j.is_string()) {
        return string_result(j.get_ref<const std::string&>().substr(low, high - low));
    }
    json out = json::array();
    for (std::size_t i = low; i < high; ++i) {
        out.push_back(j[i]);
    }
    return make_value(std::move(out));
}

value fn_print(executor&, std::vector<value>& a)
{
    return string_result(go_sprint(a));
}

value fn_println(executor&, std::vector<value>& a)
{
    std::string out;
    for (std::size_t k = 0; k < a.size(); ++k) {
        if (k > 0) {
            out += ' ';
        }
        append_text(out, a[k].get());
    }
    out += '\n';
    return string_result(std::move(out));
}

value fn_printf(executor&, std::vector<value>& a)
{
    return string_result(go_sprintf(string_arg(a[0], "the format"), a, 1));
}

value fn_eq(executor&, std::vector<value>& a)
{
    for (std::size_t k = 1; k < a.size(); ++k) {
        if (compare(a[0].get(), a[k].get(), false) == 0) {
            return make_value(json(true));
        }
    }
    return make_value(json(false));
}

value fn_ne(executor&, std::vector<value>& a)
{
    return make_value(json(compare(a[0].get(), a[1].get(), false) != 0));
}

value fn_lt(executor&, std::vector<value>& a)
{
    return make_value(json(compare(a[0].get(), a[1].get(), true) < 0));
}

value fn_le(executor&, std::vector<value>& a)
{
    return make_value(json(compare(a[0].get(), a[1].get(), true) <= 0));
}

value fn_gt(executor&, std::vector<value>& a)
{
    return make_value(json(compare(a[0].get(), a[1].get(), true) > 0));
}

value fn_ge(executor&, std::vector<value>& a)
{
    return make_value(json(compare(a[0].get(), a[1].get(), true) >= 0));
}

value fn_html(executor&, std::vector<value>& a)
{
    return string_result(html_escape(escaper_input(a)));
}

value fn_js(executor&, std::vector<value>& a)
{
    return string_result(js_escape(escaper_input(a)));
}

value fn_urlquery(executor&, std::vector<value>& a)
{
    return string_result(query_escape(escaper_input(a)));
}

value fn_to_upper(executor&, std::vector<value>& a)
{
    std::string s = string_arg(a[0]);
    std::transform(s.begin(), s.end(), s.begin(), [](char c) { return static_cast<char>(std::toupper(static_cast<unsigned char>(c))); });
    return string_result(std::move(s));
}

value fn_to_lower(executor&, std::vector<value>& a)
{
    std::string s = string_arg(a[0]);
    std::transform(s.begin(), s.end(), s.begin(), [](char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); });
    return string_result(std::move(s));
}

value fn_title(executor&, std::vector<value>& a)
{
    return string_result(title_case(string_arg(a[0])));
}

value fn_trim_space(executor&, std::vector<value>& a)
{
    const std::string& s = string_arg(a[0]);
    const char* space = " \t\n\v\f\r";
    std::size_t first = s.find_first_not_of(space);
    if (first == std::string::npos) {
        return string_result("");
    }
    std::size_t last = s.find_last_not_of(space);
    return string_result(s.substr(first, last - first + 1));
}

value fn_join(executor&, std::vector<value>& a)
{
    const std::string& separator = string_arg(a[0], "the separator");
    const json& list = a[1].get();
    if (list.is_null()) {
        return string_result("");
    }
    if (!list.is_array()) {
        throw function_error{fmt::format("join needs a list of strings, got {}", go_type(list))};
    }
    std::string out;
    bool first = true;
    for (const auto& element : list) {
        if (!first) {
            out += separator;
        }
        first = false;
        append_text(out, element);
        if (out.size() > max_output_bytes) {
            throw function_error{fmt::format("result exceeds {} bytes", max_output_bytes)};
        }
    }
    return string_result(std::move(out));
}

value fn_match(executor& e, std::vector<value>& a)
{
    const RE2& re = e.regex(string_arg(a[0], "the pattern"));
    const std::string& text = string_arg(a[1], "the text");
    return make_value(json(RE2::PartialMatch(text, re)));
}

value fn_re_replace_all(executor& e, std::vector<value>& a)
{
    const RE2& re = e.regex(string_arg(a[0], "the pattern"));
    return string_result(replace_all(re, string_arg(a[2], "the text"), string_arg(a[1], "the replacement")));
}

value fn_identity_string(executor&, std::vector<value>& a)
{
    // text/template does not escape, so the "safe" markers return their argument as it is.
    return string_result(string_arg(a[0]));
}

value fn_url_unescape(executor&, std::vector<value>& a)
{
    return string_result(query_unescape(string_arg(a[0])));
}

value fn_string_slice(executor&, std::vector<value>& a)
{
    json out = json::array();
    for (const auto& v : a) {
        out.push_back(string_arg(v));
    }
    return make_value(std::move(out));
}

value fn_to_json(executor&, std::vector<value>& a)
{
    return string_result(to_json_text(a[0].get()));
}

value fn_humanize(executor&, std::vector<value>& a)
{
    return string_result(tocsin::humanize(number_arg(a[0])));
}

value fn_humanize_1024(executor&, std::vector<value>& a)
{
    return string_result(tocsin::humanize_1024(number_arg(a[0])));
}

value fn_humanize_duration(executor&, std::vector<value>& a)
{
    return string_result(tocsin::humanize_duration(number_arg(a[0])));
}

value fn_humanize_percentage(executor&, std::vector<value>& a)
{
    return string_result(tocsin::humanize_percentage(number_arg(a[0])));
}

bool empty_for_required(const json& j)
{
    return j.is_null() || (j.is_string() && j.get_ref<const std::string&>().empty());
}

// `required VALUE`, or sprig's `required "message" VALUE`.
value fn_required(executor&, std::vector<value>& a)
{
    const value& v = a.back();
    if (empty_for_required(v.get())) {
        if (a.size() == 2) {
            throw function_error{string_arg(a[0], "the message")};
        }
        throw function_error{"required value is empty"};
    }
    return v;
}

// sprig's `default DEFAULT VALUE`: VALUE unless it is empty.
value fn_default(executor&, std::vector<value>& a)
{
    if (a.size() == 1 || !truthy(a[1].get())) {
        return a[0];
    }
    return a[1];
}

constexpr std::size_t variadic = SIZE_MAX;

const std::map<std::string, function_info, std::less<>>& function_table()
{
    static const std::map<std::string, function_info, std::less<>> table{
        // Go's builtins. and/or are evaluated by the executor because they short-circuit.
        {"and", {1, variadic, nullptr}},
        {"or", {1, variadic, nullptr}},
        {"not", {1, 1, fn_not}},
        {"len", {1, 1, fn_len}},
        {"index", {1, variadic, fn_index}},
        {"slice", {1, 4, fn_slice}},
        {"print", {0, variadic, fn_print}},
        {"printf", {1, variadic, fn_printf}},
        {"println", {0, variadic, fn_println}},
        {"eq", {2, variadic, fn_eq}},
        {"ne", {2, 2, fn_ne}},
        {"lt", {2, 2, fn_lt}},
        {"le", {2, 2, fn_le}},
        {"gt", {2, 2, fn_gt}},
        {"ge", {2, 2, fn_ge}},
        {"html", {0, variadic, fn_html}},
        {"js", {0, variadic, fn_js}},
        {"urlquery", {0, variadic, fn_urlquery}},
        // Alertmanager's template functions.
        // NOTE: date, tz and since are not implemented; templates that call them fail to load.
        {"toUpper", {1, 1, fn_to_upper}},
        {"toLower", {1, 1, fn_to_lower}},
        {"title", {1, 1, fn_title}},
        {"trimSpace", {1, 1, fn_trim_space}},
        {"join", {2, 2, fn_join}},
        {"match", {2, 2, fn_match}},
        {"reReplaceAll", {3, 3, fn_re_replace_all}},
        {"safeHtml", {1, 1, fn_identity_string}},
        {"safeUrl", {1, 1, fn_identity_string}},
        {"urlUnescape", {1, 1, fn_url_unescape}},
        {"stringSlice", {0, variadic, fn_string_slice}},
        {"toJson", {1, 1, fn_to_json}},
        {"humanize", {1, 1, fn_humanize}},
        {"humanize1024", {1, 1, fn_humanize_1024}},
        {"humanizeDuration", {1, 1, fn_humanize_duration}},
        {"humanizePercentage", {1, 1, fn_humanize_percentage}},
        // sprig's, which many Alertmanager setups use.
        {"required", {1, 2, fn_required}},
        {"default", {1, 2, fn_default}},
    };
    return table;
}

} // namespace

bool is_function(std::string_view name)
{
    return function_table().count(name) != 0;
}

std::string check_arity(std::string_view name, std::size_t count)
{
    auto it = function_table().find(name);
    if (it == function_table().end()) {
        return fmt::format("function \"{}\" is not defined", name);
    }
    const function_info& info = it->second;
    if (count < info.min_args || count > info.max_args) {
        std::string want = info.max_args == variadic ? fmt::format("at least {}", info.min_args)
                           : info.min_args == info.max_args ? std::to_string(info.min_args)
                                                            : fmt::format("{} to {}", info.min_args, info.max_args);
        return fmt::format("wrong number of arguments for {}: want {}, got {} (a piped value counts as the last argument)",
                           name, want, count);
    }
    return {};
}

bool execute(const tree& root, const tree_map& locals, const tree_map& named, const nlohmann::json& data,
             std::string& out, std::string& error)
{
    out.clear();
    executor e(locals, named, out);
    try {
        e.run(root, value{nullptr, &data});
        return true;
    } catch (const execution_error& failure) {
        out.clear();
        error = failure.message;
        return false;
    }
}

} // namespace tocsin::gotmpl::detail
