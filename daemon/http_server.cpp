#include "daemon/http_server.hpp"

#include <algorithm>
#include <list>
#include <optional>
#include <stdexcept>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "daemon/logging.hpp"

namespace tocsin {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// A connection's socket and whether a request is in progress, so that idle connections can be
// closed at shutdown.
struct connection {
    tcp::socket* socket = nullptr;
    bool busy = false;
};

bool is_normal_close(const boost::system::error_code& ec)
{
    return ec == http::error::end_of_stream || ec == asio::error::eof ||
           ec == asio::error::operation_aborted || ec == asio::error::connection_reset ||
           ec == beast::error::timeout || ec == asio::ssl::error::stream_truncated;
}

} // namespace

struct http_server::impl : std::enable_shared_from_this<http_server::impl> {
    impl(asio::io_context& io_context, http_server_options opts, http_handler handler_fn)
        : io(io_context), options(std::move(opts)), handler(std::move(handler_fn)), acceptor(io_context)
    {
    }

    asio::io_context& io;
    http_server_options options;
    http_handler handler;
    tcp::acceptor acceptor;
    std::optional<asio::ssl::context> tls;
    bool stopping = false;
    std::list<connection> connections;
    request_stats stats;
    std::shared_ptr<spdlog::logger> log = get_logger("http");
};

namespace {

using impl_ptr = std::shared_ptr<http_server::impl>;

http_request to_request(http::request<http::string_body>&& req, const std::string& remote)
{
    http_request out;
    out.method = std::string(req.method_string());
    out.target = std::string(req.target());
    auto question = out.target.find('?');
    out.path = out.target.substr(0, question);
    if (question != std::string::npos) {
        out.query = out.target.substr(question + 1);
    }
    for (const auto& field : req) {
        std::string name(field.name_string());
        std::transform(name.begin(), name.end(), name.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        out.headers.emplace_back(std::move(name), std::string(field.value()));
    }
    out.body = std::move(req.body());
    out.remote_address = remote;
    return out;
}

template <class Stream>
asio::awaitable<bool> write_response(Stream& stream, const http_response& response, unsigned version,
                                     bool keep_alive, bool head_only)
{
    if (head_only) {
        http::response<http::empty_body> res{static_cast<http::status>(response.status), version};
        res.set(http::field::server, "tocsind");
        res.set(http::field::content_type, response.content_type);
        for (const auto& [name, value] : response.headers) {
            res.set(name, value);
        }
        res.content_length(response.body.size());
        res.keep_alive(keep_alive);
        auto [ec, n] = co_await http::async_write(stream, res, use_tuple);
        co_return !ec;
    }
    http::response<http::string_body> res{static_cast<http::status>(response.status), version};
    res.set(http::field::server, "tocsind");
    if (!response.body.empty() || response.status != 204) {
        res.set(http::field::content_type, response.content_type);
    }
    for (const auto& [name, value] : response.headers) {
        res.set(name, value);
    }
    res.body() = response.body;
    res.keep_alive(keep_alive);
    res.prepare_payload();
    auto [ec, n] = co_await http::async_write(stream, res, use_tuple);
    co_return !ec;
}

// Serves requests on one connection until the peer closes, an error occurs or the server stops.
template <class Stream>
asio::awaitable<void> serve_requests(impl_ptr self, Stream& stream, connection& conn, std::string remote)
{
    beast::flat_buffer buffer;
    for (;;) {
        conn.busy = false;
        if (self->stopping) {
            co_return;
        }
        http::request_parser<http::string_body> parser;
        // The body limit is set after the header, so that a declared Content-Length over the
        // limit gets a 413 response naming the size.
        parser.body_limit(boost::none);
        parser.header_limit(64 * 1024);

        beast::get_lowest_layer(stream).expires_after(self->options.idle_timeout);
        auto [header_ec, header_bytes] = co_await http::async_read_header(stream, buffer, parser, use_tuple);
        if (is_normal_close(header_ec)) {
            co_return;
        }
        conn.busy = true;
        if (header_ec) {
            ++self->stats.malformed;
            co_await write_response(stream,
                                    http_response::text(400, "malformed HTTP request: " + header_ec.message() + "\n"),
                                    11, false, false);
            co_return;
        }

        const auto& header = parser.get();
        const unsigned version = header.version();
        auto length = parser.content_length();
        if (length && *length > self->options.max_body_bytes) {
            ++self->stats.rejected_too_large;
            auto message = "request body of " + std::to_string(*length) + " bytes exceeds limits.max_body_bytes (" +
                           std::to_string(self->options.max_body_bytes) +
                           "); send smaller batches or raise the limit\n";
            co_await write_response(stream, http_response::text(413, message), version, false, false);
            co_return;
        }
        // A Transfer-Encoding other than chunked would make the body run until the connection
        // closes, so it is refused before reading (RFC 9112 section 6.3).
        if (header.count(http::field::transfer_encoding) != 0 && !parser.chunked()) {
            ++self->stats.malformed;
            co_await write_response(stream,
                                    http_response::text(501, "unsupported Transfer-Encoding \"" +
                                                                 std::string(header[http::field::transfer_encoding]) +
                                                                 "\"; send the body plain or chunked\n"),
                                    version, false, false);
            co_return;
        }
        if (beast::iequals(header[http::field::expect], "100-continue")) {
            http::response<http::empty_body> proceed{http::status::continue_, version};
            auto [ec, n] = co_await http::async_write(stream, proceed, use_tuple);
            if (ec) {
                co_return;
            }
        }

        parser.body_limit(self->options.max_body_bytes);
        beast::get_lowest_layer(stream).expires_after(self->options.read_timeout);
        auto [body_ec, body_bytes] = co_await http::async_read(stream, buffer, parser, use_tuple);
        if (body_ec == http::error::body_limit) {
            ++self->stats.rejected_too_large;
            auto message = "request body exceeds limits.max_body_bytes (" +
                           std::to_string(self->options.max_body_bytes) +
                           " bytes); send smaller batches or raise the limit\n";
            co_await write_response(stream, http_response::text(413, message), version, false, false);
            co_return;
        }
        if (is_normal_close(body_ec)) {
            co_return;
        }
        if (body_ec) {
            ++self->stats.malformed;
            co_await write_response(stream,
                                    http_response::text(400, "malformed HTTP request body: " + body_ec.message() + "\n"),
                                    version, false, false);
            co_return;
        }

        auto request = parser.release();
        const bool keep_alive = request.keep_alive();
        const bool head_only = request.method() == http::verb::head;
        ++self->stats.requests;

        http_response response;
        try {
            response = self->handler(to_request(std::move(request), remote));
        } catch (const std::exception& e) {
            self->log->error("request handler failed: {}", e.what());
            response = http_response::text(500, "internal error; see the tocsind log\n");
        }

        beast::get_lowest_layer(stream).expires_after(self->options.read_timeout);
        const bool keep = keep_alive && !self->stopping;
        if (!co_await write_response(stream, response, version, keep, head_only) || !keep) {
            co_return;
        }
    }
}

asio::awaitable<void> run_plain_session(impl_ptr self, tcp::socket socket)
{
    std::string remote;
    boost::system::error_code ignored;
    auto endpoint = socket.remote_endpoint(ignored);
    remote = endpoint.address().to_string();

    beast::tcp_stream stream(std::move(socket));
    auto& conn = self->connections.emplace_back(connection{&stream.socket(), false});
    auto conn_it = std::prev(self->connections.end());

    co_await serve_requests(self, stream, conn, remote);

    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream.socket().close(ignored);
    self->connections.erase(conn_it);
}

asio::awaitable<void> run_tls_session(impl_ptr self, tcp::socket socket)
{
    std::string remote;
    boost::system::error_code ignored;
    auto endpoint = socket.remote_endpoint(ignored);
    remote = endpoint.address().to_string();

    beast::ssl_stream<beast::tcp_stream> stream(beast::tcp_stream(std::move(socket)), *self->tls);
    auto& conn = self->connections.emplace_back(connection{&beast::get_lowest_layer(stream).socket(), true});
    auto conn_it = std::prev(self->connections.end());

    beast::get_lowest_layer(stream).expires_after(self->options.read_timeout);
    auto [handshake_ec] = co_await stream.async_handshake(asio::ssl::stream_base::server, use_tuple);
    if (!handshake_ec) {
        co_await serve_requests(self, stream, conn, remote);
        beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(5));
        co_await stream.async_shutdown(use_tuple);
    } else if (!is_normal_close(handshake_ec)) {
        self->log->debug("TLS handshake with {} failed: {}", remote, handshake_ec.message());
    }
    beast::get_lowest_layer(stream).socket().close(ignored);
    self->connections.erase(conn_it);
}

void log_session_exception(const std::shared_ptr<spdlog::logger>& log, std::exception_ptr error)
{
    if (!error) {
        return;
    }
    try {
        std::rethrow_exception(error);
    } catch (const std::exception& e) {
        log->error("connection failed: {}", e.what());
    }
}

asio::awaitable<void> run_accept_loop(impl_ptr self)
{
    asio::steady_timer backoff(self->io);
    for (;;) {
        auto [ec, socket] = co_await self->acceptor.async_accept(use_tuple);
        if (self->stopping || ec == asio::error::operation_aborted) {
            co_return;
        }
        if (ec) {
            // Out of file descriptors and similar: wait instead of spinning on the error.
            self->log->warn("accept failed: {}; retrying in 100ms", ec.message());
            backoff.expires_after(std::chrono::milliseconds(100));
            co_await backoff.async_wait(use_tuple);
            continue;
        }
        // Responses are small and written whole; Nagle's algorithm would only hold them back.
        boost::system::error_code nodelay_ec;
        socket.set_option(tcp::no_delay(true), nodelay_ec);
        auto log = self->log;
        auto on_done = [log](std::exception_ptr error) { log_session_exception(log, error); };
        if (self->tls) {
            asio::co_spawn(self->io, run_tls_session(self, std::move(socket)), on_done);
        } else {
            asio::co_spawn(self->io, run_plain_session(self, std::move(socket)), on_done);
        }
    }
}

} // namespace

http_server::http_server(asio::io_context& io, http_server_options options, http_handler handler)
    : impl_(std::make_shared<impl>(io, std::move(options), std::move(handler)))
{
}

http_server::~http_server()
{
    if (impl_) {
        stop_accepting();
    }
}

void http_server::start()
{
    auto& opts = impl_->options;
    if (!opts.tls_cert_file.empty()) {
        try {
            impl_->tls.emplace(asio::ssl::context::tls_server);
            impl_->tls->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                                    asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                                    asio::ssl::context::no_tlsv1_1);
            impl_->tls->use_certificate_chain_file(opts.tls_cert_file);
            impl_->tls->use_private_key_file(opts.tls_key_file, asio::ssl::context::pem);
        } catch (const boost::system::system_error& e) {
            throw std::runtime_error("cannot load TLS certificate " + opts.tls_cert_file + " or key " +
                                     opts.tls_key_file + ": " + e.code().message() +
                                     "; check that both are readable PEM files that belong together");
        }
    }

    boost::system::error_code ec;
    auto address = asio::ip::make_address(opts.address, ec);
    if (ec) {
        throw std::runtime_error("invalid listen address \"" + opts.address + "\": " + ec.message());
    }
    tcp::endpoint endpoint(address, opts.port);
    auto& acceptor = impl_->acceptor;
    acceptor.open(endpoint.protocol(), ec);
    if (!ec) {
        acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    }
    if (!ec) {
        acceptor.bind(endpoint, ec);
    }
    if (!ec) {
        acceptor.listen(asio::socket_base::max_listen_connections, ec);
    }
    if (ec) {
        throw std::runtime_error("cannot listen on " + opts.address + ":" + std::to_string(opts.port) + ": " +
                                 ec.message() + "; pick a free port in `listen`");
    }
    asio::co_spawn(impl_->io, run_accept_loop(impl_), [log = impl_->log](std::exception_ptr error) {
        log_session_exception(log, error);
    });
}

std::uint16_t http_server::port() const
{
    boost::system::error_code ec;
    auto endpoint = impl_->acceptor.local_endpoint(ec);
    return ec ? 0 : endpoint.port();
}

void http_server::stop_accepting()
{
    impl_->stopping = true;
    boost::system::error_code ignored;
    impl_->acceptor.close(ignored);
    // Busy connections see `stopping` after writing their response and close then.
    for (auto& conn : impl_->connections) {
        if (!conn.busy && conn.socket != nullptr) {
            conn.socket->cancel(ignored);
        }
    }
}

std::size_t http_server::open_connections() const { return impl_->connections.size(); }

http_server::request_stats http_server::stats() const { return impl_->stats; }

} // namespace tocsin
