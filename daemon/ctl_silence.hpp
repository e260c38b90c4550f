#pragma once
// `tocsinctl silence add|expire|query|update`: a client of tocsind's Alertmanager-compatible
// v2 silence API (/api/v2/silences), in the spirit of `amtool silence`.
//
// The pure parts (matcher arguments, silence times, request bodies, the table) are separate
// functions so that they can be tested without a server. The commands talk to the server
// through silence_transport; run_silence_command() builds the HTTP one from the URL, the token
// and the CA file.
//
// Exit codes: 0 success, 1 a request failed (the server's status and message go to stderr as
// `tocsinctl: <status>: <message>`), 2 a usage error (a bad matcher, duration or time).

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "rules/clock.hpp"
#include "rules/matcher.hpp"
#include "routing/silences.hpp"

namespace tocsin {

inline constexpr const char* default_tocsin_url = "http://127.0.0.1:9793";

// The arguments of every silence subcommand, filled by the command-line parser.
struct silence_command {
    enum class action { add, expire, query, update };
    action subcommand = action::query;

    // Connection: --url (else $TOCSIN_URL, else default_tocsin_url), --token-file (else
    // $TOCSIN_TOKEN), --ca-file for https with a private CA, --timeout.
    std::string url;
    std::string token_file;
    std::string ca_file;
    std::string timeout = "10s";

    std::vector<std::string> matchers; // add, query
    std::string author;                // add; empty means $USER
    std::string comment;               // add, update
    std::string duration;              // add (default 1h), update
    std::string start;                 // add
    std::string end;                   // add, update
    bool expired = false;              // query
    bool quiet = false;                // query, add
    std::vector<std::string> ids;      // expire; update takes ids[0]
};

// Converts command-line matchers: name=value, name!=value, name=~regex, name!~regex. A value
// may be quoted ("..." with Go escapes, '...' or `...`). An unquoted one is taken verbatim to
// the end of the argument, regexes included. When `bare_alertname` is set, a first argument
// without an operator means alertname=<argument>, as in amtool. Returns nullopt and sets
// `error` to a message that names the argument and the fix.
std::optional<std::vector<label_matcher>> parse_matcher_args(const std::vector<std::string>& args,
                                                             bool bare_alertname, std::string& error);

// The start and end of a new silence. `start` and `end` are RFC 3339 times or empty;
// `duration` a Prometheus duration such as 2h or empty. The start defaults to `now`; the end
// to start + duration, with duration defaulting to 1h. Setting both `duration` and `end` is an
// error, as is an end not after the start or not after `now`.
struct silence_window {
    time_ms starts_at = 0;
    time_ms ends_at = 0;
};
std::optional<silence_window> new_silence_window(time_ms now, std::string_view start, std::string_view duration,
                                                 std::string_view end, std::string& error);

// Applies `update`'s --duration, --end and --comment to `s`. --duration counts from now for a
// silence that has started, and from its start for a pending one. Returns false and sets
// `error` when nothing is to change or a value is invalid.
bool apply_silence_update(silence& s, time_ms now, std::string_view duration, std::string_view end,
                          const std::optional<std::string>& comment, std::string& error);

// The PostableSilence body for `s`, with "id" when s.id is set.
nlohmann::json postable_silence_json(const silence& s);

// A silence as GET /api/v2/silences lists it, with its state as the server reported it.
struct listed_silence {
    silence value;
    silence_state state = silence_state::active;
};

// Reads a GettableSilence, or a JSON array of them. Returns nullopt and sets `error` when the
// document is not what tocsind or Alertmanager sends.
std::optional<listed_silence> parse_gettable_silence(const nlohmann::json& doc, std::string& error);
std::optional<std::vector<listed_silence>> parse_gettable_silences(std::string_view body, std::string& error);

// The path and query of GET /api/v2/silences with one percent-encoded `filter` per matcher.
std::string silences_query_target(const std::vector<label_matcher>& filter);

// Percent-encodes everything except RFC 3986's unreserved characters.
std::string percent_encode(std::string_view text);

// The table of `tocsinctl silence query`: a header and one row per silence with ID, Matchers,
// Starts At, Ends At, Created By and Comment, columns padded to line up. Control characters
// in the text are shown as spaces so that a comment cannot break a row.
std::string format_silence_table(const std::vector<listed_silence>& silences);

// The message of a failed request: the server's JSON string, or its text body, trimmed, with
// control characters replaced and cut at a length that fits a terminal.
std::string server_error_message(int status, std::string_view body);

// The result of one HTTP exchange with tocsind. `status` is 0 when no response arrived, and
// `error` then explains why.
struct transport_reply {
    int status = 0;
    std::string body;
    std::string error;
};

class silence_transport {
public:
    virtual ~silence_transport() = default;
    // `target` is the path and query, such as /api/v2/silences?filter=...; `method` is GET,
    // POST or DELETE; `body` is JSON for POST.
    virtual transport_reply send(const std::string& method, const std::string& target, const std::string& body) = 0;
};

// The HTTP(S) transport. `url` is http://host[:port][/prefix] or https://...; `token` is sent
// as a bearer token when not empty. Returns nullptr and sets `error` for a URL it cannot use.
std::unique_ptr<silence_transport> make_http_transport(const std::string& url, const std::string& token,
                                                       const std::string& ca_file,
                                                       std::chrono::milliseconds timeout, std::string& error);

// The commands, against a transport and a clock. Output goes to `out`, messages to `err`.
int silence_add(const silence_command& cmd, silence_transport& api, time_ms now, std::ostream& out,
                std::ostream& err);
int silence_query(const silence_command& cmd, silence_transport& api, std::ostream& out, std::ostream& err);
int silence_expire(const silence_command& cmd, silence_transport& api, std::ostream& out, std::ostream& err);
int silence_update(const silence_command& cmd, silence_transport& api, time_ms now, std::ostream& out,
                   std::ostream& err);

// Resolves the URL, token and author from the command and the environment, and runs the
// command against tocsind. Returns the exit code.
int run_silence_command(const silence_command& cmd);

// Lines up `rows` in columns two spaces apart, by display width, without trailing spaces.
std::string format_columns(const std::vector<std::vector<std::string>>& rows);

// The transport to tocsind from tocsinctl's connection flags: `url` (else $TOCSIN_URL, else
// the default), `token_file` (else $TOCSIN_TOKEN), `ca_file` and `timeout`. Returns null after
// printing the problem to `err`.
std::unique_ptr<silence_transport> connect_to_tocsind(const std::string& url, const std::string& token_file,
                                                      const std::string& ca_file, const std::string& timeout,
                                                      std::ostream& err);

// The client token from `token_file` or, without one, $TOCSIN_TOKEN. Returns nullopt after
// printing to `err` why it cannot be used. An empty token is valid: reads need none unless a
// proxy in front of tocsind requires one.
std::optional<std::string> client_token(const std::string& token_file, std::ostream& err);

} // namespace tocsin
