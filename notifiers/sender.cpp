#include "notifiers/sender.hpp"

#include <array>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <list>
#include <map>
#include <vector>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <sys/socket.h>

// Extra trust for tests and private receivers: when the environment variable
// TOCSIN_EXTRA_CA_FILE names a PEM file at construction, its certificates are trusted in
// addition to the system's CA store.

namespace tocsin {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t max_response_body = 1024 * 1024;
constexpr std::size_t max_idle_per_host = 4;
// Receivers close idle keep-alive connections after a while, so an older one is not worth trying.
constexpr auto max_idle_age = std::chrono::seconds(30);
constexpr milliseconds default_timeout{10'000};
constexpr const char* default_slack_app_url = "https://slack.com/api/chat.postMessage";

struct parsed_url {
    bool tls = false;
    std::string host;   // without brackets, for the resolver, SNI and certificate checks
    std::string port;
    std::string target; // path and query
    std::string host_header;
    std::string origin; // scheme://host[:port], the only part of a URL that is ever printed
    std::string pool_key;
};

std::string lower(std::string_view text)
{
    std::string out(text);
    for (auto& c : out) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return out;
}

// Parses an absolute http(s) URL. On failure, `error` describes the problem without repeating
// the URL, whose path may be a webhook secret.
std::optional<parsed_url> parse_url(std::string_view url, std::string& error)
{
    // A URL read from a file or an environment variable may carry a trailing newline.
    while (!url.empty() && std::isspace(static_cast<unsigned char>(url.back())) != 0) {
        url.remove_suffix(1);
    }
    while (!url.empty() && std::isspace(static_cast<unsigned char>(url.front())) != 0) {
        url.remove_prefix(1);
    }
    for (char c : url) {
        // These would break the request line or inject header lines.
        if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
            error = "the URL contains spaces or control characters; percent-encode them "
                    "(the value is not shown, it may be a secret)";
            return std::nullopt;
        }
    }
    auto scheme_end = url.find("://");
    if (url.empty()) {
        error = "no URL is configured for this integration";
        return std::nullopt;
    }
    if (scheme_end == std::string_view::npos) {
        error = "the URL is not absolute; write it as https://host/path (the value is not shown, it may be a secret)";
        return std::nullopt;
    }
    parsed_url out;
    auto scheme = lower(url.substr(0, scheme_end));
    if (scheme == "https") {
        out.tls = true;
    } else if (scheme != "http") {
        error = "unsupported URL scheme \"" + scheme.substr(0, 16) + "\"; use http:// or https://";
        return std::nullopt;
    }
    auto rest = url.substr(scheme_end + 3);
    auto authority_end = rest.find_first_of("/?#");
    auto authority = rest.substr(0, authority_end);
    auto path = authority_end == std::string_view::npos ? std::string_view{} : rest.substr(authority_end);
    if (authority.find('@') != std::string_view::npos) {
        error = "credentials in the URL (user:password@) are not supported; use the integration's token settings";
        return std::nullopt;
    }
    std::string_view port;
    if (!authority.empty() && authority.front() == '[') {
        auto close = authority.find(']');
        if (close == std::string_view::npos) {
            error = "the IPv6 address in the URL lacks its closing ']'";
            return std::nullopt;
        }
        out.host = std::string(authority.substr(1, close - 1));
        auto after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') {
                error = "unexpected text after the IPv6 address in the URL; write https://[addr]:port/path";
                return std::nullopt;
            }
            port = after.substr(1);
        }
    } else {
        auto colon = authority.find(':');
        out.host = std::string(authority.substr(0, colon));
        if (colon != std::string_view::npos) {
            port = authority.substr(colon + 1);
        }
    }
    if (out.host.empty()) {
        error = "the URL has no host; write it as " + scheme + "://host/path";
        return std::nullopt;
    }
    out.host = lower(out.host);
    const std::string default_port = out.tls ? "443" : "80";
    if (port.empty()) {
        out.port = default_port;
    } else {
        unsigned long value = 0;
        for (char c : port) {
            if (c < '0' || c > '9' || value > 65535) {
                value = 0;
                break;
            }
            value = value * 10 + static_cast<unsigned long>(c - '0');
        }
        if (value == 0 || value > 65535) {
            error = "the port in the URL of " + scheme + "://" + out.host + " is not a number from 1 to 65535";
            return std::nullopt;
        }
        out.port = std::to_string(value);
    }
    auto fragment = path.find('#');
    path = path.substr(0, fragment);
    out.target = path.empty() || path.front() != '/' ? "/" + std::string(path) : std::string(path);
    const bool ipv6 = out.host.find(':') != std::string::npos;
    out.host_header = ipv6 ? "[" + out.host + "]" : out.host;
    if (out.port != default_port) {
        out.host_header += ":" + out.port;
    }
    out.origin = scheme + "://" + out.host_header;
    out.pool_key = scheme + "://" + (ipv6 ? "[" + out.host + "]" : out.host) + ":" + out.port;
    return out;
}

// One keep-alive connection, plain or TLS. The read buffer belongs to the connection: bytes
// after one response are the start of the next.
struct connection {
    std::optional<beast::tcp_stream> plain;
    std::optional<beast::ssl_stream<beast::tcp_stream>> tls;
    beast::flat_buffer buffer;
    std::chrono::steady_clock::time_point idle_since;

    tcp::socket& socket() { return plain ? plain->socket() : beast::get_lowest_layer(*tls).socket(); }
    bool has_stream() const { return plain.has_value() || tls.has_value(); }

    // A connection whose name resolution failed has no stream yet, so there is nothing to close.
    void close()
    {
        if (!has_stream()) {
            return;
        }
        boost::system::error_code ignored;
        socket().close(ignored);
    }

    // Whether the peer closed the connection (or, on plain HTTP, sent something unasked)
    // while it sat in the pool.
    bool looks_dead()
    {
        if (!socket().is_open()) {
            return true;
        }
        char byte = 0;
        auto n = ::recv(socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0) {
            return true;
        }
        // TLS 1.3 servers may send session tickets after the handshake, which are no reason to
        // drop the connection.
        return n > 0 && !tls;
    }
};

using connection_ptr = std::shared_ptr<connection>;

// One send() call from start to its single done().
struct request_state {
    explicit request_state(asio::io_context& io) : resolver(io), timer(io) {}

    std::function<void(attempt_result)> done;
    bool finished = false;
    bool timed_out = false;
    std::uint64_t generation = 0; // which exchange the running timer belongs to
    tcp::resolver resolver;
    asio::steady_timer timer;
    connection_ptr conn; // the connection in use, so that a timeout or stop() can close it
};

using state_ptr = std::shared_ptr<request_state>;

// The response of one HTTP exchange, before classification.
struct exchange_result {
    bool answered = false;    // a complete response header arrived
    int status = 0;
    std::string retry_after;
    std::string body;
    attempt_result failure;   // when !answered: timeout or network
};

attempt_result make_result(attempt_outcome outcome, std::string reason, std::string detail)
{
    attempt_result r;
    r.outcome = outcome;
    r.reason = std::move(reason);
    r.detail = std::move(detail);
    return r;
}

time_ms system_now_ms()
{
    using namespace std::chrono;
    return duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string json_string(const std::string& text)
{
    return nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Puts "routing_key" first into the stored PagerDuty body without reparsing it, so the stored
// bytes are sent unchanged otherwise.
std::optional<std::string> splice_routing_key(const std::string& body, const std::string& key)
{
    auto open = body.find_first_not_of(" \t\r\n");
    if (open == std::string::npos || body[open] != '{') {
        return std::nullopt;
    }
    auto next = body.find_first_not_of(" \t\r\n", open + 1);
    if (next == std::string::npos) {
        return std::nullopt;
    }
    std::string out = "{\"routing_key\":" + json_string(key);
    if (body[next] != '}') {
        out += ',';
    }
    out.append(body, next, std::string::npos);
    return out;
}

// Whether a PagerDuty message is a change event: it has no dedup_key (see outbound_message),
// and its body is shaped like one, with a payload and no event_action. The body check keeps an
// alert event that lost its dedup_key on /v2/enqueue, where it still opens an incident, rather
// than have the change endpoint reject it. Bodies are parsed only for messages without a key.
bool is_change_event(const outbound_message& message)
{
    if (!message.dedup_key.empty()) {
        return false;
    }
    const auto body = nlohmann::json::parse(message.body, nullptr, false);
    return body.is_object() && body.contains("payload") && !body.contains("event_action");
}

std::string_view trim_spaces(std::string_view text)
{
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())) != 0) {
        text.remove_suffix(1);
    }
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front())) != 0) {
        text.remove_prefix(1);
    }
    return text;
}

std::shared_ptr<spdlog::logger> notify_log()
{
    auto log = spdlog::get("notify");
    return log ? log : spdlog::default_logger();
}

// The sender's state, shared by its coroutines.
struct sender_core {
    sender_core(asio::io_context& io_context, std::string agent)
        : io(io_context), user_agent(std::move(agent)), tls(ssl::context::tls_client)
    {
        tls.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                        ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
        tls.set_default_verify_paths();
        tls.set_verify_mode(ssl::verify_peer);
        if (const char* extra = std::getenv("TOCSIN_EXTRA_CA_FILE"); extra != nullptr && *extra != '\0') {
            boost::system::error_code ec;
            tls.load_verify_file(extra, ec);
            if (ec) {
                notify_log()->warn("cannot load the CA file named by TOCSIN_EXTRA_CA_FILE ({}): {}; "
                                   "only the system's CA store is trusted",
                                   extra, ec.message());
            }
        }
    }

    asio::io_context& io;
    std::string user_agent;
    // Dates a Retry-After given as an HTTP date; the same clock that schedules the retry.
    const tocsin::clock* retry_clock = nullptr;
    ssl::context tls;
    bool stopping = false;
    std::map<std::string, std::vector<connection_ptr>> idle; // by scheme://host:port, newest last
    std::list<state_ptr> active;

    connection_ptr take_idle(const std::string& key)
    {
        auto it = idle.find(key);
        if (it == idle.end()) {
            return nullptr;
        }
        auto& list = it->second;
        const auto now = std::chrono::steady_clock::now();
        while (!list.empty()) {
            auto conn = std::move(list.back());
            list.pop_back();
            if (now - conn->idle_since < max_idle_age && !conn->looks_dead()) {
                return conn;
            }
            conn->close();
        }
        return nullptr;
    }

    void put_idle(const std::string& key, connection_ptr conn)
    {
        if (stopping) {
            conn->close();
            return;
        }
        auto& list = idle[key];
        conn->idle_since = std::chrono::steady_clock::now();
        list.push_back(std::move(conn));
        if (list.size() > max_idle_per_host) {
            list.front()->close();
            list.erase(list.begin());
        }
    }

    void finish(const state_ptr& state, attempt_result result)
    {
        if (state->finished) {
            return;
        }
        state->finished = true;
        active.remove(state);
        auto done = std::move(state->done);
        state->done = nullptr;
        if (done) {
            done(std::move(result));
        }
    }

    // Cancels the operation `state` waits for, so that its coroutine gets an error and returns.
    static void interrupt(request_state& state)
    {
        state.resolver.cancel();
        state.timer.cancel();
        if (state.conn) {
            state.conn->close();
        }
    }

    void close_idle()
    {
        for (auto& [key, list] : idle) {
            for (auto& conn : list) {
                conn->close();
            }
        }
        idle.clear();
    }
};

using impl_ptr = std::shared_ptr<sender_core>;

// Arms the attempt's deadline: when it passes, whatever the exchange waits for is closed.
void arm_deadline(const state_ptr& state, milliseconds timeout)
{
    const auto generation = ++state->generation;
    state->timer.expires_after(timeout);
    std::weak_ptr<request_state> weak = state;
    state->timer.async_wait([weak, generation](const boost::system::error_code& ec) {
        auto s = weak.lock();
        if (ec || !s || s->generation != generation || s->finished) {
            return;
        }
        s->timed_out = true;
        s->resolver.cancel();
        if (s->conn) {
            s->conn->close();
        }
    });
}

void disarm_deadline(const state_ptr& state)
{
    ++state->generation;
    state->timer.cancel();
    state->conn = nullptr;
}

struct io_result {
    boost::system::error_code ec;
    const char* step = "";
    bool got_bytes = false;   // any part of a response arrived
    bool reusable = false;
    int status = 0;
    std::string retry_after;
    std::string body;
};

// Writes `req` and reads the response, keeping at most max_response_body bytes of its body.
template <class Stream>
asio::awaitable<io_result> write_and_read(Stream& stream, beast::flat_buffer& buffer,
                                          const http::request<http::string_body>& req)
{
    io_result out;
    auto [write_ec, written] = co_await http::async_write(stream, req, use_tuple);
    if (write_ec) {
        out.ec = write_ec;
        out.step = "sending the request to";
        co_return out;
    }

    http::response_parser<http::buffer_body> parser;
    parser.body_limit(boost::none); // the limit below keeps what was read instead of failing
    parser.header_limit(64 * 1024);
    auto [header_ec, header_bytes] = co_await http::async_read_header(stream, buffer, parser, use_tuple);
    out.got_bytes = parser.got_some() || header_bytes > 0;
    if (header_ec) {
        out.ec = header_ec;
        out.step = "reading the response from";
        co_return out;
    }
    out.status = static_cast<int>(parser.get().result_int());
    out.retry_after = std::string(parser.get()[http::field::retry_after]);

    std::array<char, 16 * 1024> chunk{};
    bool truncated = false;
    while (!parser.is_done()) {
        parser.get().body().data = chunk.data();
        parser.get().body().size = chunk.size();
        auto [body_ec, n] = co_await http::async_read(stream, buffer, parser, use_tuple);
        if (body_ec == http::error::need_buffer) {
            body_ec = {};
        }
        const std::size_t got = chunk.size() - parser.get().body().size;
        const std::size_t room = max_response_body - out.body.size();
        out.body.append(chunk.data(), std::min(got, room));
        if (got > room) {
            truncated = true;
            break;
        }
        if (body_ec) {
            // The header arrived, so the response is classified on the part of the body read so far.
            truncated = true;
            break;
        }
    }
    out.reusable = !truncated && parser.is_done() && parser.get().keep_alive();
    co_return out;
}

// Resolves, connects and, for https, shakes hands. Returns the failure, or nullopt when ready.
asio::awaitable<std::optional<attempt_result>> open_connection(state_ptr state, impl_ptr self, connection_ptr conn,
                                                               parsed_url url)
{
    auto network_failure = [&state, &url](const char* step,
                                          const boost::system::error_code& ec) -> std::optional<attempt_result> {
        if (state->timed_out) {
            return std::nullopt;
        }
        return make_result(attempt_outcome::retry, "network",
                           std::string(step) + " " + url.origin + " failed: " + ec.message());
    };

    auto [resolve_ec, endpoints] = co_await state->resolver.async_resolve(url.host, url.port, use_tuple);
    if (resolve_ec) {
        auto failure = network_failure("resolving", resolve_ec);
        co_return failure ? failure : make_result(attempt_outcome::retry, "timeout", "");
    }
    if (url.tls) {
        conn->tls.emplace(beast::tcp_stream(self->io), self->tls);
    } else {
        conn->plain.emplace(self->io);
    }
    state->conn = conn;
    if (state->timed_out || state->finished) {
        co_return make_result(attempt_outcome::retry, "timeout", "");
    }
    auto& lowest = url.tls ? beast::get_lowest_layer(*conn->tls) : *conn->plain;
    auto [connect_ec, endpoint] = co_await lowest.async_connect(endpoints, use_tuple);
    if (connect_ec) {
        auto failure = network_failure("connecting to", connect_ec);
        co_return failure ? failure : make_result(attempt_outcome::retry, "timeout", "");
    }
    boost::system::error_code ignored;
    lowest.socket().set_option(tcp::no_delay(true), ignored);
    if (!url.tls) {
        co_return std::nullopt;
    }

    auto* handle = conn->tls->native_handle();
    boost::system::error_code address_ec;
    asio::ip::make_address(url.host, address_ec);
    // SNI carries host names only (RFC 6066 section 3).
    if (address_ec && SSL_set_tlsext_host_name(handle, url.host.c_str()) != 1) {
        co_return make_result(attempt_outcome::retry, "network", "cannot set the TLS server name for " + url.origin);
    }
    conn->tls->set_verify_callback(ssl::host_name_verification(url.host));
    auto [handshake_ec] = co_await conn->tls->async_handshake(ssl::stream_base::client, use_tuple);
    if (handshake_ec) {
        auto failure = network_failure("the TLS handshake with", handshake_ec);
        co_return failure ? failure : make_result(attempt_outcome::retry, "timeout", "");
    }
    co_return std::nullopt;
}

// One request within the attempt's deadline, on a pooled connection when there is one. A
// reused connection that fails before any byte of a response is replaced once by a fresh one:
// the receiver most likely closed it while it was idle.
asio::awaitable<exchange_result> run_exchange(impl_ptr self, state_ptr state, parsed_url url,
                                              http::request<http::string_body> req, milliseconds timeout)
{
    exchange_result out;
    auto timeout_result = [&]() {
        return make_result(attempt_outcome::retry, "timeout",
                           "no answer from " + url.origin + " within " + std::to_string(timeout.count()) + "ms");
    };
    arm_deadline(state, timeout);
    for (int pass = 0; pass < 2; ++pass) {
        connection_ptr conn = pass == 0 ? self->take_idle(url.pool_key) : nullptr;
        const bool reused = conn != nullptr;
        if (!conn) {
            conn = std::make_shared<connection>();
            auto failure = co_await open_connection(state, self, conn, url);
            if (failure) {
                conn->close();
                out.failure = state->timed_out ? timeout_result() : *failure;
                break;
            }
        }
        state->conn = conn;
        io_result io;
        if (conn->tls) {
            io = co_await write_and_read(*conn->tls, conn->buffer, req);
        } else {
            io = co_await write_and_read(*conn->plain, conn->buffer, req);
        }
        if (io.status != 0) {
            out.answered = true;
            out.status = io.status;
            out.retry_after = std::move(io.retry_after);
            out.body = std::move(io.body);
            if (io.reusable && !state->finished && !state->timed_out) {
                state->conn = nullptr;
                self->put_idle(url.pool_key, conn);
            } else {
                conn->close();
            }
            break;
        }
        conn->close();
        if (state->timed_out) {
            out.failure = timeout_result();
            break;
        }
        if (reused && !io.got_bytes && !state->finished) {
            continue;
        }
        out.failure = make_result(attempt_outcome::retry, "network",
                                  std::string(io.step) + " " + url.origin + " failed: " + io.ec.message());
        break;
    }
    disarm_deadline(state);
    co_return out;
}

http::request<http::string_body> make_request(const std::string& user_agent, const parsed_url& url,
                                              std::string body, const char* content_type,
                                              const std::string& bearer_token)
{
    http::request<http::string_body> req{http::verb::post, url.target, 11};
    req.set(http::field::host, url.host_header);
    req.set(http::field::user_agent, user_agent);
    req.set(http::field::content_type, content_type);
    if (!bearer_token.empty()) {
        req.set(http::field::authorization, "Bearer " + bearer_token);
    }
    req.body() = std::move(body);
    req.keep_alive(true);
    req.prepare_payload();
    return req;
}

// Sends `body` to `url_text` and classifies the response.
asio::awaitable<attempt_result> post_and_classify(impl_ptr self, state_ptr state, std::string url_text,
                                                  std::string body, const char* content_type,
                                                  std::string bearer_token, milliseconds timeout,
                                                  integration_kind kind, bool slack_web_api)
{
    std::string error;
    auto url = parse_url(url_text, error);
    if (!url) {
        co_return make_result(attempt_outcome::failed, "bad_url", error);
    }
    auto req = make_request(self->user_agent, *url, std::move(body), content_type, bearer_token);
    auto exchange = co_await run_exchange(self, state, *url, std::move(req), timeout);
    if (!exchange.answered) {
        co_return exchange.failure;
    }
    co_return classify_response(kind, slack_web_api, exchange.status, exchange.retry_after, exchange.body,
                                self->retry_clock != nullptr ? self->retry_clock->now_ms() : system_now_ms());
}

std::optional<std::string> with_fields(const std::string& body,
                                       const std::vector<std::pair<std::string, std::string>>& fields)
{
    auto doc = nlohmann::json::parse(body, nullptr, false);
    if (!doc.is_object()) {
        return std::nullopt;
    }
    for (const auto& [name, value] : fields) {
        doc[name] = value;
    }
    return doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

asio::awaitable<attempt_result> deliver(impl_ptr self, state_ptr state, outbox_entry entry, send_target target)
{
    const auto kind = entry.message.integration.kind;
    const auto timeout = target.timeout.count() > 0 ? target.timeout : default_timeout;
    constexpr const char* json_type = "application/json";
    constexpr const char* slack_json_type = "application/json; charset=utf-8";

    switch (kind) {
    case integration_kind::console:
        co_return make_result(attempt_outcome::failed, "bad_url",
                              "console integrations print to the log and are not sent over HTTP");
    case integration_kind::webhook:
        co_return co_await post_and_classify(self, state, target.url, std::move(entry.message.body), json_type,
                                             target.bearer_token, timeout, kind, false);
    case integration_kind::pagerduty: {
        auto body = splice_routing_key(entry.message.body, target.routing_key);
        if (!body) {
            co_return make_result(attempt_outcome::failed, "bad_payload",
                                  "the stored PagerDuty event is not a JSON object");
        }
        // The URL is a named local because, built with GCC 12, a conditional expression in this
        // argument freed its temporary string twice (a double free in the sender tests).
        std::string url = target.url;
        if (is_change_event(entry.message)) {
            url = pagerduty_change_url(target.url);
        }
        co_return co_await post_and_classify(self, state, std::move(url), std::move(*body), json_type, "", timeout,
                                             kind, false);
    }
    case integration_kind::slack:
        break;
    }

    if (!target.slack_web_api) {
        co_return co_await post_and_classify(self, state, target.url, std::move(entry.message.body), json_type, "",
                                             timeout, kind, false);
    }
    if (!target.thread) {
        co_return co_await post_and_classify(self, state, target.url, std::move(entry.message.body),
                                             slack_json_type, target.bearer_token, timeout, kind, true);
    }

    const auto& thread = *target.thread;
    auto update_body = with_fields(entry.message.body, {{"channel", thread.channel}, {"ts", thread.ts}});
    if (!update_body) {
        co_return make_result(attempt_outcome::failed, "bad_payload", "the stored Slack message is not a JSON object");
    }
    if (!target.thread_replies) {
        if (!target.update_message) {
            // Neither threads nor updates: every notification is a message of its own.
            co_return co_await post_and_classify(self, state, target.url, std::move(entry.message.body),
                                                 slack_json_type, target.bearer_token, timeout, kind, true);
        }
        auto result = co_await post_and_classify(self, state, target.slack_update_url, std::move(*update_body),
                                                 slack_json_type, target.bearer_token, timeout, kind, true);
        result.slack_channel.clear();
        result.slack_ts.clear();
        co_return result;
    }

    auto reply_body = with_fields(entry.message.body, {{"channel", thread.channel}, {"thread_ts", thread.ts}});
    auto reply = co_await post_and_classify(self, state, target.url, std::move(*reply_body), slack_json_type,
                                            target.bearer_token, timeout, kind, true);
    // The thread's parent stays the group's message, so a reply's ts is of no further use.
    reply.slack_channel.clear();
    reply.slack_ts.clear();
    if (reply.outcome != attempt_outcome::delivered || !target.update_message || state->finished) {
        co_return reply;
    }
    auto update = co_await post_and_classify(self, state, target.slack_update_url, std::move(*update_body),
                                             slack_json_type, target.bearer_token, timeout, kind, true);
    if (update.outcome != attempt_outcome::delivered && !state->finished) {
        notify_log()->warn("slack chat.update of the first message failed: notifier={} reason={} status={} {}",
                           entry.message.integration.id(), update.reason, update.http_status, update.detail);
    }
    co_return reply;
}

asio::awaitable<void> run_send(impl_ptr self, state_ptr state, outbox_entry entry, send_target target)
{
    attempt_result result;
    bool crashed = false;
    std::string what;
    try {
        result = co_await deliver(self, state, std::move(entry), std::move(target));
    } catch (const std::exception& e) {
        crashed = true;
        what = e.what();
    }
    if (crashed) {
        result = make_result(attempt_outcome::retry, "network", "sending failed: " + what);
    }
    if (!state->finished) {
        self->finish(state, std::move(result));
    }
}

} // namespace

struct http_sender::impl : sender_core {
    using sender_core::sender_core;
};

std::string pagerduty_change_url(std::string_view enqueue_url)
{
    constexpr std::string_view enqueue_path = "/v2/enqueue";
    constexpr std::string_view change_path = "/v2/change/enqueue";
    const std::string_view url = trim_spaces(enqueue_url);
    if (url.ends_with(enqueue_path)) {
        return std::string(url.substr(0, url.size() - enqueue_path.size())) + std::string(change_path);
    }
    const auto scheme_end = url.find("://");
    if (scheme_end == std::string_view::npos) {
        return std::string(url);
    }
    const auto authority_end = url.find_first_of("/?#", scheme_end + 3);
    return std::string(url.substr(0, authority_end)) + std::string(change_path);
}

std::optional<std::string> url_problem(std::string_view url)
{
    std::string error;
    if (!parse_url(url, error)) {
        return error;
    }
    return std::nullopt;
}

std::optional<send_target> resolve_target(const outbox_entry& entry, const routing_config& config,
                                          milliseconds fallback_timeout)
{
    const auto& ref = entry.message.integration;
    const auto* receiver = config.find_receiver(ref.receiver);
    if (receiver == nullptr) {
        return std::nullopt;
    }
    send_target target;
    auto timeout_of = [fallback_timeout](const delivery_limits& limits) {
        return limits.timeout.count() > 0 ? limits.timeout : fallback_timeout;
    };
    switch (ref.kind) {
    case integration_kind::webhook: {
        if (ref.index >= receiver->webhooks.size()) {
            return std::nullopt;
        }
        const auto& c = receiver->webhooks[ref.index];
        target.url = c.url.value;
        target.bearer_token = c.bearer_token.value;
        target.timeout = timeout_of(c.limits);
        return target;
    }
    case integration_kind::pagerduty: {
        if (ref.index >= receiver->pagerduty.size()) {
            return std::nullopt;
        }
        const auto& c = receiver->pagerduty[ref.index];
        target.url = c.url.empty() ? config.global.pagerduty_url : c.url;
        target.routing_key = c.routing_key.value;
        target.timeout = timeout_of(c.limits);
        return target;
    }
    case integration_kind::slack: {
        if (ref.index >= receiver->slack.size()) {
            return std::nullopt;
        }
        const auto& c = receiver->slack[ref.index];
        target.timeout = timeout_of(c.limits);
        target.thread_replies = c.thread_replies;
        target.update_message = c.update_message;
        if (!c.bot_token.empty()) {
            target.slack_web_api = true;
            target.bearer_token = c.bot_token.value;
            target.url = c.app_url.empty() ? default_slack_app_url : c.app_url;
            // chat.update sits next to chat.postMessage: replace the last path segment.
            const auto scheme_end = target.url.find("://");
            if (scheme_end != std::string::npos) {
                const auto path_end = target.url.find_first_of("?#", scheme_end + 3);
                const auto cut = target.url.rfind('/', path_end == std::string::npos ? path_end : path_end - 1);
                if (cut != std::string::npos && cut > scheme_end + 2) {
                    target.slack_update_url = target.url.substr(0, cut + 1) + "chat.update";
                }
            }
        } else {
            target.url = c.api_url.empty() ? config.global.slack_api_url.value : c.api_url.value;
        }
        return target;
    }
    case integration_kind::console:
        if (ref.index >= receiver->console.size()) {
            return std::nullopt;
        }
        return target;
    }
    return std::nullopt;
}

http_sender::http_sender(asio::io_context& io, std::string user_agent, const tocsin::clock* clock)
    : impl_(std::make_shared<impl>(io, std::move(user_agent)))
{
    impl_->retry_clock = clock;
}

http_sender::~http_sender()
{
    // The owner is going away, so nothing may call back into it. Work in flight is cancelled and
    // its callbacks are dropped. The coroutines end when the io_context next runs or is destroyed.
    impl_->stopping = true;
    for (auto& state : impl_->active) {
        state->finished = true;
        state->done = nullptr;
        sender_core::interrupt(*state);
    }
    impl_->active.clear();
    impl_->close_idle();
}

void http_sender::send(const outbox_entry& entry, const send_target& target, std::function<void(attempt_result)> done)
{
    auto state = std::make_shared<request_state>(impl_->io);
    state->done = std::move(done);
    if (impl_->stopping) {
        // Called after stop(): the callback still runs on the io_context, as for any other send.
        asio::post(impl_->io, [self = impl_, state] {
            self->finish(state, make_result(attempt_outcome::retry, "network", "the sender is stopping"));
        });
        impl_->active.push_back(state);
        return;
    }
    impl_->active.push_back(state);
    asio::co_spawn(impl_->io, run_send(impl_, state, entry, target), [](std::exception_ptr error) {
        if (error) {
            try {
                std::rethrow_exception(error);
            } catch (const std::exception& e) {
                notify_log()->error("sender coroutine failed: {}", e.what());
            }
        }
    });
}

void http_sender::stop()
{
    impl_->stopping = true;
    impl_->close_idle();
    auto pending = impl_->active; // finish() edits the list
    for (auto& state : pending) {
        sender_core::interrupt(*state);
        impl_->finish(state, make_result(attempt_outcome::retry, "network", "the sender was stopped"));
    }
}

std::size_t http_sender::in_flight() const { return impl_->active.size(); }

} // namespace tocsin
