#include <catch2/catch.hpp>

#include <atomic>
#include <mutex>
#include <thread>

#include <httplib.h>

#include "runbooks/http_step.hpp"

using namespace tocsin;
using namespace tocsin::runbooks;
using namespace std::chrono_literals;

namespace {

// A deploy API on 127.0.0.1 that responds with the statuses in `script`, one per request, then
// 200. It keeps each request's Idempotency-Key and body.
class deploy_api {
public:
    explicit deploy_api(std::vector<int> script) : script_(std::move(script))
    {
        server_.Post("/models/fraud/rollback", [this](const httplib::Request& req, httplib::Response& res) {
            std::lock_guard lock(mutex_);
            keys_.push_back(req.get_header_value("Idempotency-Key"));
            bodies_.push_back(req.body);
            const std::size_t n = keys_.size() - 1;
            res.status = n < script_.size() ? script_[n] : 200;
            res.set_content(res.status == 200 ? "rolled back" : "try again", "text/plain");
        });
        port_ = server_.bind_to_any_port("127.0.0.1");
        thread_ = std::thread([this] { server_.listen_after_bind(); });
        const auto deadline = std::chrono::steady_clock::now() + 5s;
        while (!server_.is_running() && std::chrono::steady_clock::now() < deadline) {
            std::this_thread::sleep_for(1ms);
        }
    }
    ~deploy_api()
    {
        server_.stop();
        thread_.join();
    }
    std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }
    std::vector<std::string> keys() const
    {
        std::lock_guard lock(mutex_);
        return keys_;
    }
    std::vector<std::string> bodies() const
    {
        std::lock_guard lock(mutex_);
        return bodies_;
    }

private:
    httplib::Server server_;
    std::vector<int> script_;
    int port_ = 0;
    std::thread thread_;
    mutable std::mutex mutex_;
    std::vector<std::string> keys_;
    std::vector<std::string> bodies_;
};

http_call call_to(const deploy_api& api, const std::string& key)
{
    http_call call;
    call.request.method = "POST";
    call.request.url = api.url("/models/fraud/rollback");
    call.request.body = R"({"model":"fraud"})";
    call.request.timeout = 2s;
    call.key = key;
    call.attempts = 3;
    call.backoff = 1ms;
    return call;
}

const auto no_wait = [](std::chrono::milliseconds) {};

} // namespace

TEST_CASE("idempotency key stability")
{
    const auto k = idempotency_key("model-rollback", 0xabc, 1000, "rollback");
    CHECK(k.size() == 32);
    CHECK(k == idempotency_key("model-rollback", 0xabc, 1000, "rollback"));
    CHECK(k != idempotency_key("model-rollback", 0xabc, 2000, "rollback"));
    CHECK(k != idempotency_key("model-rollback", 0xabd, 1000, "rollback"));
    CHECK(k != idempotency_key("model-rollback", 0xabc, 1000, "notify"));
    CHECK(k != idempotency_key("model-rollbac", 0xabc, 1000, "krollback"));
}

TEST_CASE("500 retried with the same key")
{
    deploy_api api({500});
    httplib_transport transport;
    const std::string key = idempotency_key("model-rollback", 0xabc, 1000, "rollback");
    auto outcome = run_http_call(transport, call_to(api, key), no_wait);
    CHECK(outcome.ok);
    CHECK(outcome.attempts == 2);
    CHECK(outcome.detail == "attempt 1: 500; attempt 2: 200");
    const auto keys = api.keys();
    REQUIRE(keys.size() == 2);
    CHECK(keys[0] == key);
    CHECK(keys[1] == key);
    CHECK(api.bodies()[1] == R"({"model":"fraud"})");
}

TEST_CASE("4xx fails without retry")
{
    deploy_api api({409});
    httplib_transport transport;
    auto outcome = run_http_call(transport, call_to(api, "k"), no_wait);
    CHECK_FALSE(outcome.ok);
    CHECK(outcome.attempts == 1);
    CHECK(outcome.status == 409);
    CHECK(api.keys().size() == 1);
}

TEST_CASE("5xx exhausts attempts with backoff")
{
    deploy_api api({502, 503, 504, 500});
    httplib_transport transport;
    std::vector<std::chrono::milliseconds> waits;
    auto call = call_to(api, "k");
    call.backoff = 100ms;
    auto outcome = run_http_call(transport, call, [&](std::chrono::milliseconds d) { waits.push_back(d); });
    CHECK_FALSE(outcome.ok);
    CHECK(outcome.attempts == 3);
    CHECK(waits == std::vector<std::chrono::milliseconds>{100ms, 200ms});
    CHECK(api.keys() == std::vector<std::string>{"k", "k", "k"});
}

TEST_CASE("refused connection is retried")
{
    // Bind a port, then close it, so nothing listens there.
    int port = 0;
    {
        httplib::Server s;
        port = s.bind_to_any_port("127.0.0.1");
    }
    http_call call;
    call.request.url = "http://127.0.0.1:" + std::to_string(port) + "/x";
    call.request.timeout = 500ms;
    call.key = "k";
    call.attempts = 2;
    httplib_transport transport;
    auto outcome = run_http_call(transport, call, no_wait);
    CHECK_FALSE(outcome.ok);
    CHECK(outcome.attempts == 2);
    CHECK_THAT(outcome.detail, Catch::Contains("no answer"));
}
