#include "runbooks/arg_template.hpp"

#include <ctime>

#include <fmt/format.h>
#include <re2/re2.h>

namespace tocsin::runbooks {

bool param::accepts(std::string_view value) const
{
    return re && RE2::FullMatch(re2::StringPiece(value.data(), value.size()), *re);
}

std::optional<param> make_param(std::string name, std::string pattern, std::string& error)
{
    RE2::Options options;
    options.set_log_errors(false);
    auto re = std::make_shared<const re2::RE2>(pattern, options);
    if (!re->ok()) {
        error = fmt::format("pattern {} does not compile: {}", quote_value(pattern), re->error());
        return std::nullopt;
    }
    return param{std::move(name), std::move(pattern), std::move(re)};
}

namespace {

std::string_view trim(std::string_view s)
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
        s.remove_suffix(1);
    }
    return s;
}

bool is_label_name(std::string_view name)
{
    return !name.empty() && is_legacy_label_name(name);
}

void append_escaped(std::string& out, std::string_view value, escape_mode mode)
{
    switch (mode) {
    case escape_mode::none:
        out += value;
        return;
    case escape_mode::url:
        for (unsigned char c : value) {
            if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                c == '.' || c == '_' || c == '~') {
                out += static_cast<char>(c);
            } else {
                out += fmt::format("%{:02X}", c);
            }
        }
        return;
    case escape_mode::json:
        for (unsigned char c : value) {
            switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (c < 0x20 || c == 0x7f) {
                    out += fmt::format("\\u{:04x}", c);
                } else {
                    out += static_cast<char>(c);
                }
            }
        }
        return;
    }
}

} // namespace

std::string quote_value(std::string_view value)
{
    constexpr std::size_t limit = 120;
    std::string out = "\"";
    std::size_t n = 0;
    for (unsigned char c : value) {
        if (++n > limit) {
            out += "...";
            break;
        }
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\0': out += "\\0"; break;
        default:
            if (c < 0x20 || c == 0x7f) {
                out += fmt::format("\\x{:02x}", c);
            } else {
                out += static_cast<char>(c);
            }
        }
    }
    out += '"';
    return out;
}

std::string format_rfc3339(time_ms t)
{
    std::time_t seconds = static_cast<std::time_t>(t / 1000);
    int millis = static_cast<int>(t % 1000);
    if (millis < 0) {
        millis += 1000;
        seconds -= 1;
    }
    std::tm tm{};
    ::gmtime_r(&seconds, &tm);
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                       tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
}

bool arg_template::parse(std::string_view source, const std::vector<param>& params, arg_template& out,
                         std::string& error)
{
    out.source_ = std::string(source);
    out.pieces_.clear();
    std::size_t pos = 0;
    while (pos < source.size()) {
        const auto open = source.find("{{", pos);
        if (open == std::string_view::npos) {
            out.pieces_.push_back({piece::kind::literal, std::string(source.substr(pos))});
            break;
        }
        if (open > pos) {
            out.pieces_.push_back({piece::kind::literal, std::string(source.substr(pos, open - pos))});
        }
        const auto close = source.find("}}", open + 2);
        if (close == std::string_view::npos) {
            error = fmt::format("column {}: \"{{{{\" without a closing \"}}}}\"", open + 1);
            return false;
        }
        const std::string_view inside = trim(source.substr(open + 2, close - open - 2));
        piece p;
        if (inside.starts_with("$labels.")) {
            const std::string_view name = inside.substr(8);
            if (!is_label_name(name)) {
                error = fmt::format("column {}: {} is not a label name; write {{{{ $labels.model }}}}", open + 1,
                                    quote_value(name));
                return false;
            }
            bool declared = false;
            for (const auto& prm : params) {
                declared = declared || prm.name == name;
            }
            if (!declared) {
                error = fmt::format("column {}: label {} is not declared under params; add params: {{{}: "
                                    "'^[a-z0-9][a-z0-9-]{{0,62}}$'}} (a pattern its values must match)",
                                    open + 1, std::string(name), std::string(name));
                return false;
            }
            p = {piece::kind::label, std::string(name)};
        } else if (inside == "$run.id") {
            p.what = piece::kind::run_id;
        } else if (inside == "$runbook.name") {
            p.what = piece::kind::runbook;
        } else if (inside == "$episode.start") {
            p.what = piece::kind::episode_start;
        } else if (inside == "$alert.fingerprint") {
            p.what = piece::kind::fingerprint;
        } else {
            error = fmt::format("column {}: unknown placeholder {{{{ {} }}}}; expected $labels.<name>, $run.id, "
                                "$runbook.name, $episode.start or $alert.fingerprint",
                                open + 1, std::string(inside));
            return false;
        }
        out.pieces_.push_back(std::move(p));
        pos = close + 2;
    }
    return true;
}

bool arg_template::is_literal() const
{
    for (const auto& p : pieces_) {
        if (p.what != piece::kind::literal) {
            return false;
        }
    }
    return true;
}

std::string arg_template::literal_prefix() const
{
    std::string out;
    for (const auto& p : pieces_) {
        if (p.what != piece::kind::literal) {
            break;
        }
        out += p.text;
    }
    return out;
}

std::optional<std::string> arg_template::render(const render_context& ctx, escape_mode mode,
                                                std::string& error) const
{
    std::string out;
    for (const auto& p : pieces_) {
        switch (p.what) {
        case piece::kind::literal:
            out += p.text;
            break;
        case piece::kind::label: {
            const param* declared = nullptr;
            if (ctx.params) {
                for (const auto& prm : *ctx.params) {
                    if (prm.name == p.text) {
                        declared = &prm;
                    }
                }
            }
            if (!declared) {
                error = fmt::format("label {} is not declared under params", p.text);
                return std::nullopt;
            }
            const std::string_view value = ctx.labels ? ctx.labels->get(p.text) : std::string_view{};
            if (value.empty()) {
                error = fmt::format("label {} is absent from the alert; the template needs it", p.text);
                return std::nullopt;
            }
            if (value.find('\0') != std::string_view::npos) {
                error = fmt::format("label {}: value {} holds a NUL byte, which no argument may contain", p.text,
                                    quote_value(value));
                return std::nullopt;
            }
            if (!declared->accepts(value)) {
                error = fmt::format("label {}: value {} does not match the pattern {} declared under params", p.text,
                                    quote_value(value), quote_value(declared->pattern));
                return std::nullopt;
            }
            append_escaped(out, value, mode);
            break;
        }
        case piece::kind::run_id:
            append_escaped(out, ctx.run_id, mode);
            break;
        case piece::kind::runbook:
            append_escaped(out, ctx.runbook, mode);
            break;
        case piece::kind::episode_start:
            append_escaped(out, format_rfc3339(ctx.episode_start), mode);
            break;
        case piece::kind::fingerprint:
            append_escaped(out, fmt::format("{:016x}", ctx.fingerprint), mode);
            break;
        }
    }
    return out;
}

} // namespace tocsin::runbooks
