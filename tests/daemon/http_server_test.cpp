// The HTTP listener against a real client on 127.0.0.1.

#include <catch2/catch.hpp>

#include <httplib.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <future>
#include <thread>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/http_server.hpp"

namespace {

using namespace tocsin;

// Runs an http_server on its own io_context thread for the duration of a test.
class server_fixture {
public:
    explicit server_fixture(http_handler handler, std::size_t max_body = 1024)
    {
        http_server_options options;
        options.address = "127.0.0.1";
        options.port = 0;
        options.max_body_bytes = max_body;
        server_ = std::make_unique<http_server>(io_, options, std::move(handler));
        server_->start();
        port_ = server_->port();
        thread_ = std::thread([this] { io_.run(); });
    }

    ~server_fixture()
    {
        stop();
        if (thread_.joinable()) {
            thread_.join();
        }
    }

    void stop()
    {
        boost::asio::post(io_, [this] {
            server_->stop_accepting();
            io_.stop();
        });
    }

    int port() const { return port_; }
    http_server& server() { return *server_; }
    boost::asio::io_context& io() { return io_; }

private:
    boost::asio::io_context io_{1};
    std::unique_ptr<http_server> server_;
    int port_ = 0;
    std::thread thread_;
};

http_response echo(const http_request& request)
{
    auto response = http_response::text(200, request.method + " " + request.path + " ?" + request.query + " " +
                                                 std::string(request.header("x-probe")) + " " +
                                                 std::to_string(request.body.size()));
    response.headers.emplace_back("X-Reply", "yes");
    return response;
}

} // namespace

TEST_CASE("http server routes a request to the handler")
{
    server_fixture fixture(echo);
    httplib::Client client("127.0.0.1", fixture.port());
    auto result = client.Get("/some/path?a=1", {{"X-Probe", "hello"}});
    REQUIRE(result);
    CHECK(result->status == 200);
    CHECK(result->body == "GET /some/path ?a=1 hello 0");
    CHECK(result->get_header_value("X-Reply") == "yes");
}

TEST_CASE("http server keeps a connection alive across requests")
{
    std::atomic<int> calls{0};
    server_fixture fixture([&](const http_request& r) {
        ++calls;
        return echo(r);
    });
    httplib::Client client("127.0.0.1", fixture.port());
    client.set_keep_alive(true);
    for (int i = 0; i < 5; ++i) {
        auto result = client.Post("/p", std::string(100, 'x'), "text/plain");
        REQUIRE(result);
        CHECK(result->body == "POST /p ?  100");
    }
    CHECK(calls == 5);
}

TEST_CASE("http server answers 413 for a declared body over the limit")
{
    std::atomic<int> calls{0};
    server_fixture fixture(
        [&](const http_request& r) {
            ++calls;
            return echo(r);
        },
        1024);
    httplib::Client client("127.0.0.1", fixture.port());
    auto result = client.Post("/api/v1/write", std::string(4096, 'x'), "application/x-protobuf");
    REQUIRE(result);
    CHECK(result->status == 413);
    CHECK_THAT(result->body, Catch::Contains("4096") && Catch::Contains("max_body_bytes"));
    CHECK(calls == 0);

    auto small = client.Post("/api/v1/write", std::string(1024, 'x'), "application/x-protobuf");
    REQUIRE(small);
    CHECK(small->status == 200);
}

TEST_CASE("http server answers 413 for a chunked body over the limit")
{
    server_fixture fixture(echo, 1024);
    httplib::Client client("127.0.0.1", fixture.port());
    std::string big(5000, 'y');
    auto result = client.Post(
        "/api/v1/push",
        [&](std::size_t offset, httplib::DataSink& sink) {
            if (offset < big.size()) {
                sink.write(big.data() + offset, std::min<std::size_t>(1000, big.size() - offset));
            } else {
                sink.done();
            }
            return true;
        },
        "application/json");
    REQUIRE(result);
    CHECK(result->status == 413);
}

TEST_CASE("http server answers 400 to malformed HTTP and keeps serving")
{
    server_fixture fixture(echo);
    {
        // httplib cannot send a broken request line, so write one on a plain socket.
        int sock = ::socket(AF_INET, SOCK_STREAM, 0);
        REQUIRE(sock >= 0);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_port = htons(static_cast<std::uint16_t>(fixture.port()));
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::connect(sock, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
        std::string garbage = "THIS IS NOT HTTP\r\n\r\n";
        REQUIRE(::send(sock, garbage.data(), garbage.size(), 0) == static_cast<ssize_t>(garbage.size()));
        char buffer[512] = {};
        auto n = ::recv(sock, buffer, sizeof buffer - 1, 0);
        ::close(sock);
        REQUIRE(n > 0);
        CHECK_THAT(std::string(buffer, static_cast<std::size_t>(n)), Catch::StartsWith("HTTP/1.1 400"));
    }
    httplib::Client client("127.0.0.1", fixture.port());
    auto result = client.Get("/after");
    REQUIRE(result);
    CHECK(result->status == 200);
}

TEST_CASE("http server turns a handler exception into 500")
{
    server_fixture fixture([](const http_request&) -> http_response { throw std::runtime_error("boom"); });
    httplib::Client client("127.0.0.1", fixture.port());
    auto result = client.Get("/x");
    REQUIRE(result);
    CHECK(result->status == 500);
    CHECK(result->body.find("boom") == std::string::npos);
}

TEST_CASE("http server answers HEAD with headers only")
{
    server_fixture fixture([](const http_request&) { return http_response::text(200, "OK\n"); });
    httplib::Client client("127.0.0.1", fixture.port());
    auto result = client.Head("/-/healthy");
    REQUIRE(result);
    CHECK(result->status == 200);
    CHECK(result->body.empty());
}

TEST_CASE("http server finishes the request in flight when it stops accepting")
{
    std::promise<void> entered;
    server_fixture* fixture_ptr = nullptr;
    server_fixture fixture([&](const http_request&) {
        // Stop accepting while this request is being handled; the answer must still arrive.
        fixture_ptr->server().stop_accepting();
        entered.set_value();
        return http_response::text(200, "finished");
    });
    fixture_ptr = &fixture;
    httplib::Client client("127.0.0.1", fixture.port());
    auto result = client.Get("/slow");
    REQUIRE(result);
    CHECK(result->status == 200);
    CHECK(result->body == "finished");

    httplib::Client late("127.0.0.1", fixture.port());
    late.set_connection_timeout(std::chrono::seconds(2));
    auto refused = late.Get("/late");
    CHECK_FALSE(refused);
}
