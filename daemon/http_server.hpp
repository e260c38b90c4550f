#pragma once
// The HTTP(S) listener: Boost.Beast on C++20 coroutines, one coroutine per connection.
//
// Thread safety: every member function and the handler run on the io_context's thread.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "daemon/http_types.hpp"

namespace boost::asio {
class io_context;
}

namespace tocsin {

struct http_server_options {
    std::string address = "127.0.0.1";
    std::uint16_t port = 9793; // 0 picks a free port
    std::size_t max_body_bytes = 32u << 20;
    std::string tls_cert_file; // TLS when set, with tls_key_file
    std::string tls_key_file;
    std::chrono::seconds read_timeout{30};
    std::chrono::seconds idle_timeout{120};
};

class http_server {
public:
    http_server(boost::asio::io_context& io, http_server_options options, http_handler handler);
    ~http_server();
    http_server(const http_server&) = delete;
    http_server& operator=(const http_server&) = delete;

    // Binds and starts accepting. Throws std::runtime_error naming the address on failure
    // (address in use, bad certificate, ...).
    void start();

    // The bound port (useful with port 0).
    std::uint16_t port() const;

    // Stops accepting. Connections finish the request in flight and then close; idle
    // keep-alive connections close at once.
    void stop_accepting();

    // Connections still open.
    std::size_t open_connections() const;

    // Requests answered with this status, by status class, for /metrics.
    struct request_stats {
        std::uint64_t requests = 0;
        std::uint64_t rejected_too_large = 0;
        std::uint64_t malformed = 0;
    };
    request_stats stats() const;

    struct impl; // opaque; public only so that the coroutines in the .cpp can name it

private:
    std::shared_ptr<impl> impl_;
};

} // namespace tocsin
