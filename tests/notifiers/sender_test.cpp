// The HTTP sender against small receivers on 127.0.0.1: request shapes, response classes,
// keep-alive, deadlines, TLS and cancellation.

#include <catch2/catch.hpp>

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <set>
#include <thread>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "notifiers/sender.hpp"
#include "support/test_support.hpp"

namespace {

using namespace tocsin;
using namespace std::chrono_literals;

// An httplib server on 127.0.0.1 with a port picked by the system, served from a thread.
class local_server {
public:
    explicit local_server(std::unique_ptr<httplib::Server> server = std::make_unique<httplib::Server>())
        : server_(std::move(server))
    {
    }

    ~local_server() { stop(); }

    httplib::Server& http() { return *server_; }

    // Listens and serves; the socket accepts connections as soon as this returns.
    void start()
    {
        port_ = server_->bind_to_any_port("127.0.0.1");
        REQUIRE(port_ > 0);
        thread_ = std::thread([this] { server_->listen_after_bind(); });
    }

    void stop()
    {
        if (thread_.joinable()) {
            server_->stop();
            thread_.join();
        }
    }

    int port() const { return port_; }
    std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }

private:
    std::unique_ptr<httplib::Server> server_;
    int port_ = 0;
    std::thread thread_;
};

// A listening TCP socket on 127.0.0.1 that the test drives by hand.
class raw_listener {
public:
    raw_listener()
    {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        REQUIRE(fd_ >= 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
        REQUIRE(::listen(fd_, 16) == 0);
        socklen_t len = sizeof addr;
        REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
        port_ = ntohs(addr.sin_port);
    }
    ~raw_listener() { close(); }

    void close()
    {
        if (fd_ >= 0) {
            ::shutdown(fd_, SHUT_RDWR);
            ::close(fd_);
            fd_ = -1;
        }
    }

    int fd() const { return fd_; }
    int port() const { return port_; }
    std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }

private:
    int fd_ = -1;
    int port_ = 0;
};

outbox_entry make_entry(integration_kind kind, std::string body)
{
    outbox_entry entry;
    entry.id = 1;
    entry.message.integration = integration_ref{"team", kind, 0};
    entry.message.group_key = "{}:{alertname=\"DiskFull\"}";
    entry.message.body = std::move(body);
    return entry;
}

send_target make_target(std::string url, milliseconds timeout = 5000ms)
{
    send_target target;
    target.url = std::move(url);
    target.timeout = timeout;
    return target;
}

// Sends one entry and runs the io_context until its callback has run.
attempt_result send_one(boost::asio::io_context& io, http_sender& sender, const outbox_entry& entry,
                        const send_target& target)
{
    std::optional<attempt_result> result;
    int calls = 0;
    sender.send(entry, target, [&](attempt_result r) {
        ++calls;
        result = std::move(r);
    });
    io.restart();
    io.run();
    REQUIRE(calls == 1);
    return *result;
}

const char* event_body = R"({"event_action":"trigger","dedup_key":"abc","payload":{"summary":"disk full"}})";

} // namespace

TEST_CASE("sender splices the PagerDuty routing key")
{
    std::mutex mutex;
    std::vector<std::string> bodies;
    std::string content_type;
    std::string user_agent;
    local_server server;
    server.http().Post("/v2/enqueue", [&](const httplib::Request& req, httplib::Response& res) {
        std::lock_guard lock(mutex);
        bodies.push_back(req.body);
        content_type = req.get_header_value("Content-Type");
        user_agent = req.get_header_value("User-Agent");
        res.status = 202;
        res.set_content(R"({"status":"success","message":"Event processed","dedup_key":"abc"})", "application/json");
    });
    server.start();

    boost::asio::io_context io;
    http_sender sender(io, "tocsin/1.2.3");
    auto target = make_target(server.url("/v2/enqueue"));
    target.routing_key = "key\"with\\quotes";
    auto result = send_one(io, sender, make_entry(integration_kind::pagerduty, event_body), target);
    CHECK(result.outcome == attempt_outcome::delivered);
    CHECK(result.http_status == 202);

    result = send_one(io, sender, make_entry(integration_kind::pagerduty, " {} "), target);
    CHECK(result.outcome == attempt_outcome::delivered);

    std::lock_guard lock(mutex);
    REQUIRE(bodies.size() == 2);
    auto first = nlohmann::json::parse(bodies[0]);
    CHECK(first["routing_key"] == "key\"with\\quotes");
    CHECK(first["event_action"] == "trigger");
    CHECK(first["payload"]["summary"] == "disk full");
    auto second = nlohmann::json::parse(bodies[1]);
    CHECK(second == nlohmann::json{{"routing_key", "key\"with\\quotes"}});
    CHECK(content_type == "application/json");
    CHECK(user_agent == "tocsin/1.2.3");
}

TEST_CASE("sender sends a webhook bearer token")
{
    std::mutex mutex;
    std::string authorization;
    local_server server;
    server.http().Post("/hook", [&](const httplib::Request& req, httplib::Response& res) {
        std::lock_guard lock(mutex);
        authorization = req.get_header_value("Authorization");
        res.status = 200;
    });
    server.start();

    boost::asio::io_context io;
    http_sender sender(io, "tocsin/test");
    auto target = make_target(server.url("/hook"));
    target.bearer_token = "hook-token";
    auto result = send_one(io, sender, make_entry(integration_kind::webhook, "{}"), target);
    CHECK(result.outcome == attempt_outcome::delivered);
    std::lock_guard lock(mutex);
    CHECK(authorization == "Bearer hook-token");
}

TEST_CASE("sender classifies error statuses")
{
    local_server server;
    server.http().Post("/500", [](const httplib::Request&, httplib::Response& res) {
        res.status = 500;
        res.set_content("upstream broke", "text/plain");
    });
    server.http().Post("/429", [](const httplib::Request&, httplib::Response& res) {
        res.status = 429;
        res.set_header("Retry-After", "7");
        res.set_content("slow down", "text/plain");
    });
    server.http().Post("/400", [](const httplib::Request&, httplib::Response& res) {
        res.status = 400;
        res.set_content("field alerts is missing", "text/plain");
    });
    server.start();

    boost::asio::io_context io;
    http_sender sender(io, "tocsin/test");
    auto entry = make_entry(integration_kind::webhook, "{}");

    auto result = send_one(io, sender, entry, make_target(server.url("/500")));
    CHECK(result.outcome == attempt_outcome::retry);
    CHECK(result.http_status == 500);

    result = send_one(io, sender, entry, make_target(server.url("/429")));
    CHECK(result.outcome == attempt_outcome::retry);
    CHECK(result.http_status == 429);
    REQUIRE(result.retry_after);
    CHECK(*result.retry_after == 7000ms);

    result = send_one(io, sender, entry, make_target(server.url("/400")));
    CHECK(result.outcome == attempt_outcome::failed);
    CHECK(result.http_status == 400);
    CHECK_THAT(result.detail, Catch::Contains("field alerts is missing"));
}

TEST_CASE("sender reuses keep-alive connections")
{
    std::mutex mutex;
    std::set<int> ports;
    local_server server;
    auto record = [&](const httplib::Request& req) {
        std::lock_guard lock(mutex);
        ports.insert(req.remote_port);
    };
    server.http().Post("/keep", [&](const httplib::Request& req, httplib::Response& res) {
        record(req);
        res.set_content("ok", "text/plain");
    });
    server.http().Post("/close", [&](const httplib::Request& req, httplib::Response& res) {
        record(req);
        res.set_header("Connection", "close");
        res.set_content("ok", "text/plain");
    });
    server.start();

    boost::asio::io_context io;
    http_sender sender(io, "tocsin/test");
    auto entry = make_entry(integration_kind::webhook, "{}");
    for (int i = 0; i < 3; ++i) {
        CHECK(send_one(io, sender, entry, make_target(server.url("/keep"))).outcome == attempt_outcome::delivered);
    }
    {
        std::lock_guard lock(mutex);
        CHECK(ports.size() == 1);
        ports.clear();
    }
    for (int i = 0; i < 2; ++i) {
        CHECK(send_one(io, sender, entry, make_target(server.url("/close"))).outcome == attempt_outcome::delivered);
    }
    std::lock_guard lock(mutex);
    CHECK(ports.size() == 2);
}

TEST_CASE("sender retries a dead pooled connection")
{
    // The first connection serves one request and closes on reading the second, as a receiver
    // does when its idle timeout has just passed. Later connections serve every request.
    raw_listener listener;
    std::atomic<int> accepted{0};
    std::thread peer([&] {
        auto read_request = [](int fd) {
            std::string data;
            char buf[4096];
            while (data.find("\r\n\r\n") == std::string::npos) {
                auto n = ::recv(fd, buf, sizeof buf, 0);
                if (n <= 0) {
                    return false;
                }
                data.append(buf, static_cast<std::size_t>(n));
            }
            // The bodies here are two bytes ("{}"), so they are read too.
            auto header_end = data.find("\r\n\r\n") + 4;
            while (data.size() < header_end + 2) {
                auto n = ::recv(fd, buf, sizeof buf, 0);
                if (n <= 0) {
                    return false;
                }
                data.append(buf, static_cast<std::size_t>(n));
            }
            return true;
        };
        const std::string answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        for (;;) {
            int fd = ::accept(listener.fd(), nullptr, nullptr);
            if (fd < 0) {
                return;
            }
            const int number = ++accepted;
            bool first = number == 1;
            while (read_request(fd)) {
                if (!first && number == 1) {
                    break; // the second request on the first connection: close unanswered
                }
                first = false;
                ::send(fd, answer.data(), answer.size(), MSG_NOSIGNAL);
            }
            ::close(fd);
        }
    });

    {
        boost::asio::io_context io;
        http_sender sender(io, "tocsin/test");
        auto entry = make_entry(integration_kind::webhook, "{}");
        CHECK(send_one(io, sender, entry, make_target(listener.url("/hook"))).outcome == attempt_outcome::delivered);
        auto second = send_one(io, sender, entry, make_target(listener.url("/hook")));
        CHECK(second.outcome == attempt_outcome::delivered);
        CHECK(accepted == 2);
    }
    listener.close();
    peer.join();
}

TEST_CASE("sender times out a silent receiver")
{
    // The kernel completes the connection, but no process reads the request.
    raw_listener listener;
    boost::asio::io_context io;
    http_sender sender(io, "tocsin/test");
    const auto started = std::chrono::steady_clock::now();
    auto result = send_one(io, sender, make_entry(integration_kind::webhook, "{}"),
                           make_target(listener.url("/hook"), 200ms));
    const auto elapsed = std::chrono::steady_clock::now() - started;
    CHECK(result.outcome == attempt_outcome::retry);
    CHECK(result.reason == "timeout");
    CHECK(result.http_status == 0);
    CHECK(elapsed >= 190ms);
    CHECK(elapsed < 2s);
}

TEST_CASE("sender retries a refused connection")
{
    int port = 0;
    {
        raw_listener listener;
        port = listener.port();
    }
    boost::asio::io_context io;
    http_sender sender(io, "tocsin/test");
    auto result = send_one(io, sender, make_entry(integration_kind::webhook, "{}"),
                           make_target("http://127.0.0.1:" + std::to_string(port) + "/hook"));
    CHECK(result.outcome == attempt_outcome::retry);
    CHECK(result.reason == "network");
    CHECK_THAT(result.detail, Catch::Contains("http://127.0.0.1:" + std::to_string(port)));
}

TEST_CASE("sender retries a host that does not resolve")
{
    // The .invalid top-level domain never resolves, so the attempt fails before any stream exists.
    boost::asio::io_context io;
    http_sender sender(io, "tocsin/test");
    auto target = make_target("http://does-not-exist.invalid/hook");
    target.timeout = std::chrono::seconds(5);
    auto result = send_one(io, sender, make_entry(integration_kind::webhook, "{}"), target);
    CHECK(result.outcome == attempt_outcome::retry);
    CHECK((result.reason == "network" || result.reason == "timeout"));
}

TEST_CASE("sender threads and updates Slack messages")
{
    std::mutex mutex;
    std::vector<nlohmann::json> posts;
    std::vector<nlohmann::json> updates;
    std::vector<std::string> authorizations;
    local_server server;
    server.http().Post("/api/chat.postMessage", [&](const httplib::Request& req, httplib::Response& res) {
        std::lock_guard lock(mutex);
        posts.push_back(nlohmann::json::parse(req.body));
        authorizations.push_back(req.get_header_value("Authorization"));
        const auto ts = "1503435956.00024" + std::to_string(posts.size());
        res.set_content(R"({"ok":true,"channel":"C024BE91L","ts":")" + ts + "\"}", "application/json");
    });
    server.http().Post("/api/chat.update", [&](const httplib::Request& req, httplib::Response& res) {
        std::lock_guard lock(mutex);
        updates.push_back(nlohmann::json::parse(req.body));
        authorizations.push_back(req.get_header_value("Authorization"));
        res.set_content(R"({"ok":true,"channel":"C024BE91L","ts":"1503435956.000241"})", "application/json");
    });
    server.start();

    routing_config config;
    receiver_config receiver;
    receiver.name = "team";
    slack_config slack;
    slack.bot_token = secret{"xoxb-test-token", "inline"};
    slack.app_url = server.url("/api/chat.postMessage");
    slack.channel = "#alerts";
    receiver.slack.push_back(slack);
    config.receivers.push_back(receiver);

    boost::asio::io_context io;
    http_sender sender(io, "tocsin/test");
    auto entry = make_entry(integration_kind::slack, R"({"channel":"#alerts","text":"DiskFull firing"})");
    auto target = resolve_target(entry, config);
    REQUIRE(target);
    CHECK(target->slack_web_api);
    CHECK(target->slack_update_url == server.url("/api/chat.update"));

    auto first = send_one(io, sender, entry, *target);
    CHECK(first.outcome == attempt_outcome::delivered);
    CHECK(first.slack_channel == "C024BE91L");
    CHECK(first.slack_ts == "1503435956.000241");

    target->thread = slack_thread{first.slack_channel, first.slack_ts};
    auto second = send_one(io, sender, entry, *target);
    CHECK(second.outcome == attempt_outcome::delivered);

    std::unique_lock lock(mutex);
    REQUIRE(posts.size() == 2);
    CHECK_FALSE(posts[0].contains("thread_ts"));
    CHECK(posts[1]["thread_ts"] == "1503435956.000241");
    CHECK(posts[1]["channel"] == "C024BE91L");
    CHECK(posts[1]["text"] == "DiskFull firing");
    REQUIRE(updates.size() == 1);
    CHECK(updates[0]["ts"] == "1503435956.000241");
    CHECK(updates[0]["channel"] == "C024BE91L");
    CHECK_FALSE(updates[0].contains("thread_ts"));
    for (const auto& authorization : authorizations) {
        CHECK(authorization == "Bearer xoxb-test-token");
    }
    posts.clear();
    updates.clear();
    target->thread_replies = false;
    lock.unlock();
    auto third = send_one(io, sender, entry, *target);
    lock.lock();
    CHECK(third.outcome == attempt_outcome::delivered);
    CHECK(posts.empty());
    REQUIRE(updates.size() == 1);
    CHECK(updates[0]["ts"] == "1503435956.000241");
}

TEST_CASE("sender verifies TLS certificates")
{
    if (std::system("openssl version >/dev/null 2>&1") != 0) {
        WARN("openssl is not installed; skipping the TLS test");
        return;
    }
    test::temp_dir dir;
    const auto cert = (dir.path() / "cert.pem").string();
    const auto key = (dir.path() / "key.pem").string();
    const auto command = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost"
                         " -addext subjectAltName=DNS:localhost -keyout '" +
                         key + "' -out '" + cert + "' >/dev/null 2>&1";
    REQUIRE(std::system(command.c_str()) == 0);

    local_server server(std::make_unique<httplib::SSLServer>(cert.c_str(), key.c_str()));
    REQUIRE(server.http().is_valid());
    server.http().Post("/hook", [](const httplib::Request&, httplib::Response& res) {
        res.set_content("ok", "text/plain");
    });
    server.start();
    const auto port = std::to_string(server.port());
    auto entry = make_entry(integration_kind::webhook, "{}");
    boost::asio::io_context io;

    SECTION("extra CA and matching name")
    {
        ::setenv("TOCSIN_EXTRA_CA_FILE", cert.c_str(), 1);
        http_sender sender(io, "tocsin/test");
        ::unsetenv("TOCSIN_EXTRA_CA_FILE");
        auto result = send_one(io, sender, entry, make_target("https://localhost:" + port + "/hook"));
        CHECK(result.outcome == attempt_outcome::delivered);
        CHECK(result.detail.empty());
    }
    SECTION("certificate for another name")
    {
        ::setenv("TOCSIN_EXTRA_CA_FILE", cert.c_str(), 1);
        http_sender sender(io, "tocsin/test");
        ::unsetenv("TOCSIN_EXTRA_CA_FILE");
        auto result = send_one(io, sender, entry, make_target("https://127.0.0.1:" + port + "/hook"));
        CHECK(result.outcome == attempt_outcome::retry);
        CHECK(result.reason == "network");
        CHECK_THAT(result.detail, Catch::Contains("TLS handshake"));
    }
    SECTION("certificate from an untrusted CA")
    {
        http_sender sender(io, "tocsin/test");
        auto result = send_one(io, sender, entry, make_target("https://localhost:" + port + "/hook"));
        CHECK(result.outcome == attempt_outcome::retry);
        CHECK(result.reason == "network");
    }
}

TEST_CASE("sender stop cancels requests in flight")
{
    std::mutex mutex;
    std::condition_variable changed;
    bool arrived = false;
    bool released = false;
    local_server server;
    server.http().Post("/slow", [&](const httplib::Request&, httplib::Response& res) {
        std::unique_lock lock(mutex);
        arrived = true;
        changed.notify_all();
        changed.wait(lock, [&] { return released; });
        res.set_content("ok", "text/plain");
    });
    server.start();

    boost::asio::io_context io;
    http_sender sender(io, "tocsin/test");
    int calls = 0;
    attempt_result result;
    sender.send(make_entry(integration_kind::webhook, "{}"), make_target(server.url("/slow"), 10'000ms),
                [&](attempt_result r) {
                    ++calls;
                    result = std::move(r);
                });
    CHECK(sender.in_flight() == 1);
    // Runs the sender until the request has reached the receiver.
    const auto give_up = std::chrono::steady_clock::now() + 5s;
    for (;;) {
        {
            std::lock_guard lock(mutex);
            if (arrived || std::chrono::steady_clock::now() > give_up) {
                break;
            }
        }
        io.run_one_for(10ms);
    }
    REQUIRE(arrived);

    sender.stop();
    io.restart();
    io.run();
    CHECK(calls == 1);
    CHECK(result.outcome == attempt_outcome::retry);
    CHECK(result.reason == "network");
    CHECK(sender.in_flight() == 0);

    {
        std::lock_guard lock(mutex);
        released = true;
    }
    changed.notify_all();
}

TEST_CASE("sender keeps URL secrets out of results")
{
    const std::string secret_path = "/services/T000/B000/XXXXsecretXXXX";
    local_server server;
    server.http().Post(secret_path, [](const httplib::Request&, httplib::Response& res) {
        res.status = 404;
        res.set_content("no_service", "text/plain");
    });
    server.start();
    int refused_port = 0;
    {
        raw_listener listener;
        refused_port = listener.port();
    }
    raw_listener silent;

    boost::asio::io_context io;
    http_sender sender(io, "tocsin/test");
    auto entry = make_entry(integration_kind::slack, R"({"text":"hi"})");
    std::vector<std::pair<std::string, attempt_result>> results;
    for (const auto& url : {server.url(secret_path), "http://127.0.0.1:" + std::to_string(refused_port) + secret_path,
                            silent.url(secret_path), "ftp://example.org" + secret_path, "example.org" + secret_path,
                            "http://[::1" + secret_path, "http://example.org:99999" + secret_path,
                            "http://example.org" + secret_path + " HTTP/1.1\r\nX-Injected: 1"}) {
        results.emplace_back(url, send_one(io, sender, entry, make_target(url, 200ms)));
    }
    for (const auto& [url, result] : results) {
        INFO(url << " -> " << result.reason << ": " << result.detail);
        CHECK_FALSE(result.detail.empty());
        CHECK(result.detail.find("XXXXsecretXXXX") == std::string::npos);
        CHECK(result.outcome != attempt_outcome::delivered);
    }
    CHECK(results[0].second.outcome == attempt_outcome::failed);
    CHECK(results[1].second.reason == "network");
    CHECK(results[2].second.reason == "timeout");
    for (std::size_t i = 3; i < results.size(); ++i) {
        CHECK(results[i].second.outcome == attempt_outcome::failed);
        CHECK(results[i].second.reason == "bad_url");
    }
}

TEST_CASE("sender cuts oversized response bodies")
{
    local_server server;
    server.http().Post("/big", [](const httplib::Request&, httplib::Response& res) {
        res.status = 400;
        res.set_content("too bad " + std::string(3 * 1024 * 1024, 'x'), "text/plain");
    });
    server.start();
    boost::asio::io_context io;
    http_sender sender(io, "tocsin/test");
    auto result = send_one(io, sender, make_entry(integration_kind::webhook, "{}"), make_target(server.url("/big")));
    CHECK(result.outcome == attempt_outcome::failed);
    CHECK(result.http_status == 400);
    CHECK_THAT(result.detail, Catch::StartsWith("too bad"));
}

TEST_CASE("sender reaches IPv6 literal hosts")
{
    std::mutex mutex;
    std::string host;
    auto server = std::make_unique<httplib::Server>();
    server->Post("/hook", [&](const httplib::Request& req, httplib::Response& res) {
        std::lock_guard lock(mutex);
        host = req.get_header_value("Host");
        res.set_content("ok", "text/plain");
    });
    const int port = server->bind_to_any_port("::1");
    if (port <= 0) {
        WARN("no IPv6 loopback on this machine; skipping the IPv6 test");
        return;
    }
    std::thread thread([&] { server->listen_after_bind(); });
    attempt_result result;
    {
        // The sender goes first, so that the server does not wait out the idle connection.
        boost::asio::io_context io;
        http_sender sender(io, "tocsin/test");
        result = send_one(io, sender, make_entry(integration_kind::webhook, "{}"),
                          make_target("http://[::1]:" + std::to_string(port) + "/hook"));
    }
    server->stop();
    thread.join();
    CHECK(result.outcome == attempt_outcome::delivered);
    std::lock_guard lock(mutex);
    CHECK(host == "[::1]:" + std::to_string(port));
}

TEST_CASE("sender rejects console notifications")
{
    boost::asio::io_context io;
    http_sender sender(io, "tocsin/test");
    auto result = send_one(io, sender, make_entry(integration_kind::console, "DiskFull firing"), send_target{});
    CHECK(result.outcome == attempt_outcome::failed);
    CHECK(result.reason == "bad_url");
}

TEST_CASE("resolve_target reads the routing config")
{
    routing_config config;
    config.global.slack_api_url = secret{"https://hooks.slack.com/services/global", "inline"};
    receiver_config receiver;
    receiver.name = "team";
    webhook_config webhook;
    webhook.url = secret{"http://hooks.internal/alerts", "inline"};
    webhook.limits.timeout = 2500ms;
    receiver.webhooks.push_back(webhook);
    pagerduty_config pagerduty;
    pagerduty.routing_key = secret{"0123456789abcdef0123456789abcdef", "inline"};
    receiver.pagerduty.push_back(pagerduty);
    slack_config incoming;
    receiver.slack.push_back(incoming);
    slack_config bot;
    bot.bot_token = secret{"xoxb-1", "inline"};
    bot.thread_replies = false;
    receiver.slack.push_back(bot);
    config.receivers.push_back(receiver);

    auto entry_for = [](integration_kind kind, std::uint32_t index, std::string receiver_name = "team") {
        outbox_entry entry;
        entry.message.integration = integration_ref{std::move(receiver_name), kind, index};
        return entry;
    };

    auto target = resolve_target(entry_for(integration_kind::webhook, 0), config);
    REQUIRE(target);
    CHECK(target->url == "http://hooks.internal/alerts");
    CHECK(target->timeout == 2500ms);

    target = resolve_target(entry_for(integration_kind::pagerduty, 0), config);
    REQUIRE(target);
    CHECK(target->url == "https://events.pagerduty.com/v2/enqueue");
    CHECK(target->routing_key == "0123456789abcdef0123456789abcdef");
    CHECK(target->timeout == 10'000ms);

    target = resolve_target(entry_for(integration_kind::slack, 0), config);
    REQUIRE(target);
    CHECK(target->url == "https://hooks.slack.com/services/global");
    CHECK_FALSE(target->slack_web_api);
    CHECK(target->bearer_token.empty());

    target = resolve_target(entry_for(integration_kind::slack, 1), config);
    REQUIRE(target);
    CHECK(target->slack_web_api);
    CHECK(target->url == "https://slack.com/api/chat.postMessage");
    CHECK(target->slack_update_url == "https://slack.com/api/chat.update");
    CHECK(target->bearer_token == "xoxb-1");
    CHECK_FALSE(target->thread_replies);
    CHECK(target->update_message);
    CHECK_FALSE(target->thread);

    CHECK_FALSE(resolve_target(entry_for(integration_kind::slack, 2), config));
    CHECK_FALSE(resolve_target(entry_for(integration_kind::webhook, 0, "gone"), config));
    CHECK_FALSE(resolve_target(entry_for(integration_kind::console, 0), config));
}
