#include "daemon/ctl_silence.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <iostream>

#include <fmt/format.h>
#include <httplib.h>

#include "daemon/api.hpp"
#include "daemon/overrides.hpp"
#include "daemon/silence_api.hpp"
#include "daemon/terminal_text.hpp"
#include "rules/duration.hpp"
#include "rules/promql_lexer.hpp"
#include "rules/sample_time.hpp"

namespace tocsin {

namespace {

using json = nlohmann::json;

// Without --start, a new silence starts this long before the client's clock reads now. tocsind
// starts a silence whose start is in the past at its own now, so a client clock that runs
// ahead of the server's does not leave the new silence pending for a while.
constexpr time_ms start_slack_ms = 60'000;

// Maximum length of a printed server message, so that a huge error body cannot flood the terminal.
constexpr std::size_t max_message_chars = 2000;

// Maximum size of a token file.
constexpr std::size_t max_token_file_bytes = 64 * 1024;

constexpr std::string_view matcher_forms =
    "write name=value, name!=value, name=~regex or name!~regex, and quote the argument for the shell, "
    "for example 'instance=~\"db-.*\"'";

bool is_quote(char c) { return c == '"' || c == '\'' || c == '`'; }

std::string quoted_arg(std::string_view arg) { return promql::quote(arg); }

std::optional<label_matcher> parse_one_matcher(const std::string& arg, bool bare_alertname, std::string& error)
{
    // Skip a quoted name, so that an operator character inside it does not count.
    std::size_t pos = 0;
    while (pos < arg.size() && arg[pos] == ' ') {
        ++pos;
    }
    if (pos < arg.size() && is_quote(arg[pos])) {
        const char q = arg[pos++];
        while (pos < arg.size() && arg[pos] != q) {
            pos += (arg[pos] == '\\' && q != '`') ? 2 : 1;
        }
        ++pos;
    }
    const std::size_t op_pos = pos < arg.size() ? arg.find_first_of("=!", pos) : std::string::npos;
    if (op_pos == std::string::npos) {
        if (bare_alertname && !arg.empty()) {
            std::string problem;
            auto m = label_matcher::make("alertname", match_op::equal, arg, problem);
            if (!m) {
                error = fmt::format("invalid matcher {}: {}", quoted_arg(arg), problem);
            }
            return m;
        }
        error = fmt::format("invalid matcher {}: no operator; {}", quoted_arg(arg), matcher_forms);
        if (!bare_alertname) {
            error += " (only the first matcher may be a bare alert name)";
        }
        return std::nullopt;
    }

    const std::string_view name_text = trim_space(std::string_view(arg).substr(0, op_pos));
    const std::string_view rest = std::string_view(arg).substr(op_pos);
    std::string_view op_text;
    for (std::string_view candidate : {"=~", "!~", "!="}) {
        if (rest.starts_with(candidate)) {
            op_text = candidate;
            break;
        }
    }
    if (op_text.empty()) {
        if (rest.starts_with("==")) {
            error = fmt::format("invalid matcher {}: '==' is not an operator; {}", quoted_arg(arg), matcher_forms);
            return std::nullopt;
        }
        if (rest.starts_with("!")) {
            error = fmt::format("invalid matcher {}: '!' must be followed by = or ~; {}", quoted_arg(arg),
                                matcher_forms);
            return std::nullopt;
        }
        op_text = "=";
    }
    const std::string_view value_text = rest.substr(op_text.size());
    const std::string_view value_trimmed = trim_space(value_text);

    // A quoted value goes to the PromQL matcher parser as written. An unquoted one is taken
    // verbatim and quoted here, so regexes and spaces need no extra quoting in the shell.
    std::string text;
    if (!value_trimmed.empty() && is_quote(value_trimmed.front())) {
        text = fmt::format("{}{}{}", name_text, op_text, value_trimmed);
    } else {
        text = fmt::format("{}{}{}", name_text, op_text, promql::quote(value_text));
    }
    std::string problem;
    auto m = label_matcher::parse(text, problem);
    if (!m) {
        error = fmt::format("invalid matcher {}: {}; {}", quoted_arg(arg), problem, matcher_forms);
    }
    return m;
}

std::optional<time_ms> parse_time_arg(std::string_view flag, std::string_view text, std::string& error)
{
    auto parsed = parse_rfc3339(text);
    if (!parsed) {
        error = fmt::format("{} {} is not an RFC 3339 time; expected for example 2026-01-02T15:04:05Z or "
                            "2026-01-02T16:04:05+01:00",
                            flag, quoted_arg(text));
        return std::nullopt;
    }
    if (*parsed <= -timestamp_bound_ms || *parsed >= timestamp_bound_ms) {
        error = fmt::format("{} {} is out of range", flag, quoted_arg(text));
        return std::nullopt;
    }
    return parsed;
}

std::optional<time_ms> parse_duration_arg(std::string_view text, std::string& error)
{
    std::string problem;
    auto d = parse_duration(text, problem);
    if (!d) {
        error = fmt::format("--duration {}: {}", quoted_arg(text), problem);
        return std::nullopt;
    }
    if (d->count() <= 0) {
        error = fmt::format("--duration {} must be longer than 0s, for example 2h", quoted_arg(text));
        return std::nullopt;
    }
    // About 31,700 years: far past any silence, and start + duration cannot overflow.
    if (d->count() >= timestamp_bound_ms) {
        error = fmt::format("--duration {} is too long", quoted_arg(text));
        return std::nullopt;
    }
    return d->count();
}

// Checks the arguments of `silence update` that need no silence.
bool check_update_args(time_ms now, std::string_view duration, std::string_view end,
                       const std::optional<std::string>& comment, std::string& error)
{
    if (duration.empty() && end.empty() && !comment) {
        error = "nothing to change; pass --duration, --end or --comment";
        return false;
    }
    if (!duration.empty() && !end.empty()) {
        error = "--duration and --end both set the end; pass one of them";
        return false;
    }
    if (!duration.empty() && !parse_duration_arg(duration, error)) {
        return false;
    }
    if (!end.empty()) {
        auto parsed = parse_time_arg("--end", end, error);
        if (!parsed) {
            return false;
        }
        if (*parsed <= now) {
            error = fmt::format("--end {} is in the past; to end the silence now, run tocsinctl silence expire",
                                format_rfc3339(*parsed));
            return false;
        }
    }
    if (comment && trim_space(*comment).empty()) {
        error = "--comment is empty; say why the alerts are silenced";
        return false;
    }
    return true;
}

// A time for the table: RFC 3339 to the second, which --end and --start accept back.
std::string table_time(time_ms t) { return format_rfc3339(t - ((t % 1000) + 1000) % 1000); }

std::string matchers_text(const silence& s)
{
    std::string out;
    for (const label_matcher& m : s.matchers) {
        if (!out.empty()) {
            out += ' ';
        }
        out += m.to_string();
    }
    return out;
}

std::optional<silence_state> state_of(std::string_view text)
{
    if (text == "active") {
        return silence_state::active;
    }
    if (text == "pending") {
        return silence_state::pending;
    }
    if (text == "expired") {
        return silence_state::expired;
    }
    return std::nullopt;
}

// Prints the outcome of a failed exchange. Returns 1.
int report_failure(const transport_reply& reply, std::ostream& err)
{
    if (reply.status == 0) {
        err << "tocsinctl: " << reply.error << '\n';
    } else {
        err << "tocsinctl: " << reply.status << ": " << server_error_message(reply.status, reply.body) << '\n';
    }
    return 1;
}

bool succeeded(const transport_reply& reply) { return reply.status >= 200 && reply.status < 300; }

std::string silence_target(std::string_view id) { return "/api/v2/silence/" + percent_encode(id); }

// Reads the silence ID from a POST response, or reports the response as unexpected.
std::optional<std::string> posted_id(const transport_reply& reply, std::ostream& err)
{
    try {
        const json doc = json::parse(reply.body);
        if (doc.is_object() && doc.contains("silenceID") && doc["silenceID"].is_string()) {
            return doc["silenceID"].get<std::string>();
        }
    } catch (const json::exception&) {
        // Reported below.
    }
    err << "tocsinctl: the server answered " << reply.status << " without a silenceID in the response: "
        << server_error_message(reply.status, reply.body) << '\n';
    return std::nullopt;
}

// ---- HTTP ----

class http_transport final : public silence_transport {
public:
    http_transport(const std::string& scheme_authority, std::string url, std::string prefix,
                   const std::string& token, const std::string& ca_file, std::chrono::milliseconds timeout)
        : client_(scheme_authority), url_(std::move(url)), prefix_(std::move(prefix)),
          https_(scheme_authority.starts_with("https:"))
    {
        client_.set_url_encode(false); // targets are percent-encoded already
        // NOTE: cpp-httplib 0.11 has no limit on the size of a response body for a client, so a
        // hostile server can make tocsinctl buffer a large body.
        client_.set_follow_location(false);
        const auto seconds = static_cast<time_t>(timeout.count() / 1000);
        const auto micros = static_cast<time_t>((timeout.count() % 1000) * 1000);
        client_.set_connection_timeout(seconds, micros);
        client_.set_read_timeout(seconds, micros);
        client_.set_write_timeout(seconds, micros);
        if (https_ && !ca_file.empty()) {
            client_.set_ca_cert_path(ca_file);
        }
        headers_.emplace("Accept", "application/json");
        headers_.emplace("User-Agent", "tocsinctl");
        if (!token.empty()) {
            headers_.emplace("Authorization", "Bearer " + token);
        }
    }

    transport_reply send(const std::string& method, const std::string& target, const std::string& body) override
    {
        const std::string path = prefix_ + target;
        httplib::Result result = method == "POST"     ? client_.Post(path, headers_, body, "application/json")
                                 : method == "DELETE" ? client_.Delete(path, headers_)
                                                      : client_.Get(path, headers_);
        transport_reply reply;
        if (result) {
            reply.status = result->status;
            reply.body = result->body;
            return reply;
        }
        reply.error = describe(result.error());
        return reply;
    }

private:
    std::string describe(httplib::Error error) const
    {
        const std::string where = printable(url_);
        switch (error) {
        case httplib::Error::Connection:
            return fmt::format("cannot connect to {}; is tocsind running and listening there? Pass its address "
                               "with --url or TOCSIN_URL",
                               where);
        case httplib::Error::ConnectionTimeout:
            return fmt::format("timed out connecting to {}; check the address (--url or TOCSIN_URL) or raise "
                               "--timeout",
                               where);
        case httplib::Error::Read:
            return fmt::format("no HTTP response from {} (timed out or closed){}", where,
                               https_ ? "" : "; if tocsind serves TLS, use an https:// URL");
        case httplib::Error::SSLConnection:
            return fmt::format("TLS handshake with {} failed; if tocsind serves plain HTTP, use an http:// URL",
                               where);
        case httplib::Error::SSLLoadingCerts:
            return "cannot load the CA certificates; check the file that --ca-file names";
        case httplib::Error::SSLServerVerification:
            return fmt::format("the certificate of {} did not verify; pass the CA that signed it with --ca-file",
                               where);
        default:
            return fmt::format("request to {} failed: {}", where, httplib::to_string(error));
        }
    }

    httplib::Client client_;
    std::string url_;
    std::string prefix_;
    bool https_ = false;
    httplib::Headers headers_;
};

std::optional<std::string> read_token_file(const std::string& path, std::string& error)
{
    std::ifstream file(path, std::ios::binary);
    if (!file) {
        error = fmt::format("cannot read the token file {}; check the path given to --token-file",
                            quoted_arg(path));
        return std::nullopt;
    }
    std::string text;
    text.resize(max_token_file_bytes + 1);
    file.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<std::size_t>(file.gcount()));
    if (text.size() > max_token_file_bytes) {
        error = fmt::format("the token file {} is over {} bytes; it should hold only the token",
                            quoted_arg(path), max_token_file_bytes);
        return std::nullopt;
    }
    return std::string(trim_space(text));
}

bool valid_token(std::string_view token)
{
    return std::none_of(token.begin(), token.end(), [](char c) {
        const auto byte = static_cast<unsigned char>(c);
        return byte < 0x20 || byte == 0x7f;
    });
}

std::string env_or(const char* name, std::string fallback)
{
    const char* value = std::getenv(name);
    return value != nullptr && *value != '\0' ? std::string(value) : fallback;
}

} // namespace

std::optional<std::string> client_token(const std::string& token_file, std::ostream& err)
{
    std::string token;
    if (!token_file.empty()) {
        std::string error;
        auto read = read_token_file(token_file, error);
        if (!read) {
            err << "tocsinctl: " << error << '\n';
            return std::nullopt;
        }
        if (read->empty()) {
            err << "tocsinctl: the token file " << quoted_arg(token_file) << " is empty\n";
            return std::nullopt;
        }
        token = std::move(*read);
    } else {
        token = std::string(trim_space(env_or("TOCSIN_TOKEN", "")));
    }
    if (!valid_token(token)) {
        err << "tocsinctl: the token holds control characters; the token file or TOCSIN_TOKEN must hold the token "
               "alone\n";
        return std::nullopt;
    }
    return token;
}

std::optional<std::vector<label_matcher>> parse_matcher_args(const std::vector<std::string>& args,
                                                             bool bare_alertname, std::string& error)
{
    std::vector<label_matcher> out;
    for (std::size_t i = 0; i < args.size(); ++i) {
        auto m = parse_one_matcher(args[i], bare_alertname && i == 0, error);
        if (!m) {
            return std::nullopt;
        }
        out.push_back(std::move(*m));
    }
    return out;
}

std::optional<silence_window> new_silence_window(time_ms now, std::string_view start, std::string_view duration,
                                                 std::string_view end, std::string& error)
{
    if (!duration.empty() && !end.empty()) {
        error = "--duration and --end both set the end; pass one of them";
        return std::nullopt;
    }
    silence_window out;
    const bool explicit_start = !start.empty();
    time_ms from = now;
    if (explicit_start) {
        auto parsed = parse_time_arg("--start", start, error);
        if (!parsed) {
            return std::nullopt;
        }
        from = *parsed;
    }
    if (!end.empty()) {
        auto parsed = parse_time_arg("--end", end, error);
        if (!parsed) {
            return std::nullopt;
        }
        out.ends_at = *parsed;
    } else {
        auto d = parse_duration_arg(duration.empty() ? "1h" : duration, error);
        if (!d) {
            return std::nullopt;
        }
        out.ends_at = std::max(from, now) + *d;
    }
    if (out.ends_at <= from) {
        error = fmt::format("the end {} is not after the start {}", format_rfc3339(out.ends_at), format_rfc3339(from));
        return std::nullopt;
    }
    if (out.ends_at <= now) {
        error = fmt::format("the end {} is in the past; pass a later --end or a --duration", format_rfc3339(out.ends_at));
        return std::nullopt;
    }
    out.starts_at = explicit_start ? from : now - start_slack_ms;
    return out;
}

bool apply_silence_update(silence& s, time_ms now, std::string_view duration, std::string_view end,
                          const std::optional<std::string>& comment, std::string& error)
{
    if (!check_update_args(now, duration, end, comment, error)) {
        return false;
    }
    if (!duration.empty()) {
        s.ends_at = std::max(s.starts_at, now) + *parse_duration_arg(duration, error);
    } else if (!end.empty()) {
        const time_ms ends_at = *parse_time_arg("--end", end, error);
        if (ends_at <= s.starts_at) {
            error = fmt::format("--end {} is not after the silence's start {}", format_rfc3339(ends_at),
                                format_rfc3339(s.starts_at));
            return false;
        }
        s.ends_at = ends_at;
    }
    if (comment) {
        s.comment = *comment;
    }
    return true;
}

json postable_silence_json(const silence& s)
{
    json matchers = json::array();
    for (const label_matcher& m : s.matchers) {
        const bool regex = m.op() == match_op::regex || m.op() == match_op::not_regex;
        const bool equal = m.op() == match_op::equal || m.op() == match_op::regex;
        matchers.push_back({{"name", m.name()}, {"value", m.value()}, {"isRegex", regex}, {"isEqual", equal}});
    }
    json out = {
        {"matchers", std::move(matchers)},
        {"startsAt", format_rfc3339_ms(s.starts_at)},
        {"endsAt", format_rfc3339_ms(s.ends_at)},
        {"createdBy", s.created_by},
        {"comment", s.comment},
    };
    if (!s.id.empty()) {
        out["id"] = s.id;
    }
    return out;
}

std::optional<listed_silence> parse_gettable_silence(const json& doc, std::string& error)
{
    std::string problem;
    auto s = parse_stored_silence(doc.dump(-1, ' ', false, json::error_handler_t::replace), problem);
    if (!s) {
        error = "unexpected silence from the server: " + problem;
        return std::nullopt;
    }
    if (s->id.empty()) {
        error = "unexpected silence from the server: it has no id";
        return std::nullopt;
    }
    listed_silence out{std::move(*s), silence_state::active};
    const auto status = doc.find("status");
    const json* state = status != doc.end() && status->is_object() && status->contains("state")
                            ? &(*status)["state"]
                            : nullptr;
    auto parsed_state = state != nullptr && state->is_string() ? state_of(state->get<std::string>()) : std::nullopt;
    if (!parsed_state) {
        error = fmt::format("unexpected silence {} from the server: status.state is not active, pending or expired",
                            printable(out.value.id));
        return std::nullopt;
    }
    out.state = *parsed_state;
    return out;
}

std::optional<std::vector<listed_silence>> parse_gettable_silences(std::string_view body, std::string& error)
{
    json doc;
    try {
        doc = json::parse(body);
    } catch (const json::exception& e) {
        error = fmt::format("the server's answer is not JSON ({})", e.what());
        return std::nullopt;
    }
    if (!doc.is_array()) {
        error = "the server's answer is not a JSON array of silences";
        return std::nullopt;
    }
    std::vector<listed_silence> out;
    for (const json& item : doc) {
        auto s = parse_gettable_silence(item, error);
        if (!s) {
            return std::nullopt;
        }
        out.push_back(std::move(*s));
    }
    return out;
}

std::string percent_encode(std::string_view text)
{
    std::string out;
    for (char c : text) {
        const auto byte = static_cast<unsigned char>(c);
        if (std::isalnum(byte) != 0 || c == '-' || c == '.' || c == '_' || c == '~') {
            out += c;
        } else {
            out += fmt::format("%{:02X}", byte);
        }
    }
    return out;
}

std::string silences_query_target(const std::vector<label_matcher>& filter)
{
    std::string out = "/api/v2/silences";
    for (std::size_t i = 0; i < filter.size(); ++i) {
        out += i == 0 ? '?' : '&';
        out += "filter=" + percent_encode(filter[i].to_string());
    }
    return out;
}

std::string format_silence_table(const std::vector<listed_silence>& silences)
{
    std::vector<std::vector<std::string>> rows;
    rows.push_back({"ID", "Matchers", "Starts At", "Ends At", "Created By", "Comment"});
    for (const listed_silence& item : silences) {
        const silence& s = item.value;
        rows.push_back({printable(s.id), printable(matchers_text(s)), table_time(s.starts_at), table_time(s.ends_at),
                        printable(s.created_by), printable(s.comment)});
    }
    return format_columns(rows);
}

std::string format_columns(const std::vector<std::vector<std::string>>& rows)
{
    std::vector<std::size_t> widths;
    for (const auto& row : rows) {
        widths.resize(std::max(widths.size(), row.size()), 0);
        for (std::size_t c = 0; c < row.size(); ++c) {
            widths[c] = std::max(widths[c], display_width(row[c]));
        }
    }
    std::string out;
    for (const auto& row : rows) {
        std::string line;
        for (std::size_t c = 0; c < row.size(); ++c) {
            line += row[c];
            if (c + 1 < row.size()) {
                line.append(widths[c] - display_width(row[c]) + 2, ' ');
            }
        }
        while (!line.empty() && line.back() == ' ') {
            line.pop_back();
        }
        out += line + '\n';
    }
    return out;
}

std::unique_ptr<silence_transport> connect_to_tocsind(const std::string& url, const std::string& token_file,
                                                      const std::string& ca_file, const std::string& timeout,
                                                      std::ostream& err)
{
    const std::string target = !url.empty() ? url : env_or("TOCSIN_URL", default_tocsin_url);
    const auto token = client_token(token_file, err);
    if (!token) {
        return nullptr;
    }
    std::string error;
    auto limit = parse_duration(timeout, error);
    if (!limit || limit->count() <= 0) {
        err << "tocsinctl: --timeout " << quoted_arg(timeout) << ": "
            << (limit ? std::string("must be longer than 0s") : error) << '\n';
        return nullptr;
    }
    auto api = make_http_transport(target, *token, ca_file, *limit, error);
    if (!api) {
        err << "tocsinctl: " << error << '\n';
    }
    return api;
}

std::string server_error_message(int status, std::string_view body)
{
    std::string message;
    try {
        const json doc = json::parse(body);
        message = doc.is_string() ? doc.get<std::string>() : doc.dump(-1, ' ', false, json::error_handler_t::replace);
    } catch (const json::exception&) {
        message = std::string(body);
    }
    message = printable(trim_space(message));
    if (message.size() > max_message_chars) {
        message.resize(max_message_chars);
        message += "...";
    }
    if (message.empty()) {
        message = fmt::format("the server answered {} with an empty body", status);
    }
    return message;
}

std::unique_ptr<silence_transport> make_http_transport(const std::string& url, const std::string& token,
                                                       const std::string& ca_file,
                                                       std::chrono::milliseconds timeout, std::string& error)
{
    const auto scheme_end = url.find("://");
    std::string scheme = scheme_end == std::string::npos ? std::string() : url.substr(0, scheme_end);
    std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                   [](char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); });
    if (scheme != "http" && scheme != "https") {
        error = fmt::format("URL {} must start with http:// or https://, for example {}", quoted_arg(url),
                            default_tocsin_url);
        return nullptr;
    }
    const std::string rest = url.substr(scheme_end + 3);
    const auto path_start = rest.find('/');
    const std::string authority = rest.substr(0, path_start);
    std::string prefix = path_start == std::string::npos ? std::string() : rest.substr(path_start);
    while (!prefix.empty() && prefix.back() == '/') {
        prefix.pop_back();
    }
    const bool bad_char = std::any_of(url.begin(), url.end(), [](char c) {
        const auto byte = static_cast<unsigned char>(c);
        return byte <= 0x20 || byte == 0x7f;
    });
    if (authority.empty() || authority.find_first_of("@?#") != std::string::npos ||
        prefix.find_first_of("?#") != std::string::npos || bad_char) {
        error = fmt::format("URL {} is not of the form {}://host[:port][/path]; for example {}", quoted_arg(url),
                            scheme, default_tocsin_url);
        return nullptr;
    }
    return std::make_unique<http_transport>(scheme + "://" + authority, url, prefix, token, ca_file, timeout);
}

int silence_add(const silence_command& cmd, silence_transport& api, time_ms now, std::ostream& out, std::ostream& err)
{
    std::string error;
    auto matchers = parse_matcher_args(cmd.matchers, true, error);
    if (!matchers) {
        err << "tocsinctl: " << error << '\n';
        return 2;
    }
    if (matchers->empty()) {
        err << "tocsinctl: a silence needs at least one matcher, such as alertname=DiskFull or instance=~'db-.*'\n";
        return 2;
    }
    if (trim_space(cmd.author).empty()) {
        err << "tocsinctl: --author is empty and $USER is not set; pass --author NAME\n";
        return 2;
    }
    if (trim_space(cmd.comment).empty()) {
        err << "tocsinctl: --comment is empty; say why the alerts are silenced\n";
        return 2;
    }
    auto window = new_silence_window(now, cmd.start, cmd.duration, cmd.end, error);
    if (!window) {
        err << "tocsinctl: " << error << '\n';
        return 2;
    }
    silence s;
    s.matchers = std::move(*matchers);
    s.starts_at = window->starts_at;
    s.ends_at = window->ends_at;
    s.created_by = cmd.author;
    s.comment = cmd.comment;
    const transport_reply reply = api.send("POST", "/api/v2/silences", postable_silence_json(s).dump());
    if (!succeeded(reply)) {
        return report_failure(reply, err);
    }
    auto id = posted_id(reply, err);
    if (!id) {
        return 1;
    }
    out << printable(*id) << '\n';
    return 0;
}

int silence_query(const silence_command& cmd, silence_transport& api, std::ostream& out, std::ostream& err)
{
    std::string error;
    auto matchers = parse_matcher_args(cmd.matchers, true, error);
    if (!matchers) {
        err << "tocsinctl: " << error << '\n';
        return 2;
    }
    const transport_reply reply = api.send("GET", silences_query_target(*matchers), "");
    if (!succeeded(reply)) {
        return report_failure(reply, err);
    }
    auto list = parse_gettable_silences(reply.body, error);
    if (!list) {
        err << "tocsinctl: " << error << '\n';
        return 1;
    }
    std::erase_if(*list, [&](const listed_silence& s) {
        return (s.state == silence_state::expired) != cmd.expired;
    });
    if (cmd.quiet) {
        for (const listed_silence& s : *list) {
            out << printable(s.value.id) << '\n';
        }
        return 0;
    }
    out << format_silence_table(*list);
    return 0;
}

int silence_expire(const silence_command& cmd, silence_transport& api, std::ostream& /*out*/, std::ostream& err)
{
    if (cmd.ids.empty()) {
        err << "tocsinctl: pass the ID of each silence to expire; tocsinctl silence query -q lists them\n";
        return 2;
    }
    int code = 0;
    for (const std::string& id : cmd.ids) {
        const transport_reply reply = api.send("DELETE", silence_target(id), "");
        if (!succeeded(reply)) {
            code = report_failure(reply, err);
            if (reply.status == 0) {
                break; // the next ones would fail the same way
            }
        }
    }
    return code;
}

int silence_update(const silence_command& cmd, silence_transport& api, time_ms now, std::ostream& out,
                   std::ostream& err)
{
    if (cmd.ids.size() != 1) {
        err << "tocsinctl: pass the ID of one silence to update\n";
        return 2;
    }
    const std::string& id = cmd.ids.front();
    std::string error;
    const std::optional<std::string> comment =
        cmd.comment.empty() ? std::nullopt : std::optional<std::string>(cmd.comment);
    // Check the arguments before asking the server, so that a typo fails fast.
    if (!check_update_args(now, cmd.duration, cmd.end, comment, error)) {
        err << "tocsinctl: " << error << '\n';
        return 2;
    }
    const transport_reply got = api.send("GET", silence_target(id), "");
    if (!succeeded(got)) {
        return report_failure(got, err);
    }
    json doc;
    try {
        doc = json::parse(got.body);
    } catch (const json::exception& e) {
        err << "tocsinctl: the server's answer is not JSON (" << e.what() << ")\n";
        return 1;
    }
    auto current = parse_gettable_silence(doc, error);
    if (!current) {
        err << "tocsinctl: " << error << '\n';
        return 1;
    }
    if (current->state == silence_state::expired) {
        err << "tocsinctl: silence " << printable(id)
            << " has expired and cannot be updated; create a new one with tocsinctl silence add\n";
        return 1;
    }
    silence s = std::move(current->value);
    if (!apply_silence_update(s, now, cmd.duration, cmd.end, comment, error)) {
        err << "tocsinctl: " << error << '\n';
        return 2;
    }
    const transport_reply reply = api.send("POST", "/api/v2/silences", postable_silence_json(s).dump());
    if (!succeeded(reply)) {
        return report_failure(reply, err);
    }
    auto new_id = posted_id(reply, err);
    if (!new_id) {
        return 1;
    }
    out << printable(*new_id) << '\n';
    return 0;
}

int run_silence_command(const silence_command& args)
{
    silence_command cmd = args;
    if (cmd.author.empty()) {
        cmd.author = env_or("USER", "");
    }

    auto api = connect_to_tocsind(cmd.url, cmd.token_file, cmd.ca_file, cmd.timeout, std::cerr);
    if (!api) {
        return 2;
    }
    const time_ms now = system_clock{}.now_ms();
    switch (cmd.subcommand) {
    case silence_command::action::add: return silence_add(cmd, *api, now, std::cout, std::cerr);
    case silence_command::action::query: return silence_query(cmd, *api, std::cout, std::cerr);
    case silence_command::action::expire: return silence_expire(cmd, *api, std::cout, std::cerr);
    case silence_command::action::update: return silence_update(cmd, *api, now, std::cout, std::cerr);
    }
    return 2;
}

} // namespace tocsin
