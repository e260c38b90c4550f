// Delivery benchmark: time from a sample reaching tocsind to the webhook request reaching its
// receiver, measured from outside against a real tocsind process.
//
//   delivery_bench [--tocsind PATH] [--alerts 2000] [--preload 100000] [--batch 1000]
//                  [--sync both|full|normal] [--state-parent DIR]
//
// The benchmark runs a webhook receiver on 127.0.0.1 and writes a config with one rule that fires
// on the first sample of `bench_delivery` (`for: 0s`). Its route groups by alertname and instance
// with `group_wait: 0s`, so every new instance makes one new group and one webhook request. For
// each state_sync mode the benchmark starts tocsind with a fresh state folder and then:
//
//   1. empty:   pushes `--alerts` samples one at a time, each for a new instance, through
//               POST /api/v1/push, and times each from just before the push to the arrival of
//               the webhook request for that instance;
//   2. preload: pushes `--preload` new firing series in requests of `--batch` samples and
//               waits for all their notifications, counting arrivals over time;
//   3. loaded:  repeats step 1 with the preloaded alerts still active.
//
// It also times write + fsync of 4 KiB on the state folder's file system, and reads tocsind's
// peak RSS (VmHWM) before stopping it. Latencies include the benchmark's own HTTP client and
// receiver, which share the machine's cores with tocsind.

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

namespace {

namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;

struct options {
    std::string tocsind;
    std::size_t alerts = 2'000;
    std::size_t preload = 100'000;
    std::size_t batch = 1'000;
    std::vector<std::string> sync_modes = {"full", "normal"};
    std::string state_parent;
};

// tocsind may have this many requests in flight to the receiver. The receiver's thread pool is
// larger, because cpp-httplib ties up one worker thread per keep-alive connection.
constexpr int webhook_max_concurrency = 32;

// Rounds of the fsync probe next to each latency measurement.
constexpr int fsync_rounds_per_phase = 200;

// How long one alert may take from push to webhook before the benchmark gives up on it.
constexpr auto alert_timeout = std::chrono::seconds(30);

double ms_between(steady::time_point from, steady::time_point to)
{
    return std::chrono::duration<double, std::milli>(to - from).count();
}

// Nearest-rank percentile of sorted values; p in [0, 100].
double percentile(const std::vector<double>& sorted, double p)
{
    if (sorted.empty()) {
        return 0;
    }
    const auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
    return sorted[std::min(sorted.size() - 1, rank == 0 ? 0 : rank - 1)];
}

struct summary {
    std::size_t count = 0;
    double p50 = 0;
    double p99 = 0;
    double max = 0;
    double mean = 0;
};

summary summarize(std::vector<double> values)
{
    summary s;
    std::sort(values.begin(), values.end());
    s.count = values.size();
    if (values.empty()) {
        return s;
    }
    s.p50 = percentile(values, 50);
    s.p99 = percentile(values, 99);
    s.max = values.back();
    double total = 0;
    for (double v : values) {
        total += v;
    }
    s.mean = total / static_cast<double>(values.size());
    return s;
}

void print_summary(const char* what, const summary& s)
{
    std::printf("  %-34s n=%zu  p50 %.3f ms  p99 %.3f ms  max %.3f ms  mean %.3f ms\n", what, s.count, s.p50, s.p99,
                s.max, s.mean);
}

// ---- webhook receiver ----

// Records when the webhook request for each instance arrived. Thread safety: the handler runs on
// cpp-httplib's worker threads; `mutex_` guards the map and the counters.
class webhook_receiver {
public:
    webhook_receiver()
    {
        server_.new_task_queue = [] { return new httplib::ThreadPool(webhook_max_concurrency + 8); };
        server_.set_keep_alive_max_count(1'000'000);
        server_.set_keep_alive_timeout(60);
        server_.Post("/hook", [this](const httplib::Request& request, httplib::Response& response) {
            on_request(request);
            response.status = 200;
        });
        port_ = server_.bind_to_any_port("127.0.0.1");
        thread_ = std::thread([this] { server_.listen_after_bind(); });
        while (!server_.is_running()) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    }

    ~webhook_receiver()
    {
        server_.stop();
        thread_.join();
    }

    int port() const { return port_; }

    // Waits for the request of `instance`; returns its arrival time, or nullopt after `timeout`.
    std::optional<steady::time_point> wait_for(const std::string& instance, std::chrono::milliseconds timeout)
    {
        std::unique_lock lock(mutex_);
        const auto deadline = steady::now() + timeout;
        while (true) {
            auto it = arrivals_.find(instance);
            if (it != arrivals_.end()) {
                return it->second;
            }
            if (changed_.wait_until(lock, deadline) == std::cv_status::timeout) {
                auto late = arrivals_.find(instance);
                return late == arrivals_.end() ? std::nullopt : std::optional(late->second);
            }
        }
    }

    // Waits until `count` requests whose instance starts with `prefix` have arrived; returns the
    // arrival times in arrival order (fewer after `timeout`).
    std::vector<steady::time_point> wait_for_prefix(const std::string& prefix, std::size_t count,
                                                    std::chrono::milliseconds timeout)
    {
        std::unique_lock lock(mutex_);
        const auto deadline = steady::now() + timeout;
        changed_.wait_until(lock, deadline, [&] { return prefixed_count(prefix) >= count; });
        std::vector<steady::time_point> times;
        for (const auto& [instance, at] : arrivals_) {
            if (instance.rfind(prefix, 0) == 0) {
                times.push_back(at);
            }
        }
        std::sort(times.begin(), times.end());
        return times;
    }

    std::size_t unparsed() const
    {
        std::lock_guard lock(mutex_);
        return unparsed_;
    }

    std::size_t duplicates() const
    {
        std::lock_guard lock(mutex_);
        return duplicates_;
    }

private:
    void on_request(const httplib::Request& request)
    {
        const auto arrived = steady::now();
        std::string instance;
        try {
            const auto body = nlohmann::json::parse(request.body);
            instance = body.at("groupLabels").at("instance").get<std::string>();
        } catch (const nlohmann::json::exception&) {
            std::lock_guard lock(mutex_);
            ++unparsed_;
            return;
        }
        {
            std::lock_guard lock(mutex_);
            if (!arrivals_.emplace(instance, arrived).second) {
                ++duplicates_;
            }
            auto dash = instance.find('-');
            ++prefix_counts_[instance.substr(0, dash == std::string::npos ? instance.size() : dash + 1)];
        }
        changed_.notify_all();
    }

    std::size_t prefixed_count(const std::string& prefix) const
    {
        auto it = prefix_counts_.find(prefix);
        return it == prefix_counts_.end() ? 0 : it->second;
    }

    httplib::Server server_;
    std::thread thread_;
    int port_ = 0;
    mutable std::mutex mutex_; // guards arrivals_, prefix_counts_, unparsed_, duplicates_
    std::condition_variable changed_;
    std::unordered_map<std::string, steady::time_point> arrivals_; // first arrival per instance
    std::unordered_map<std::string, std::size_t> prefix_counts_;  // by instance prefix up to '-'
    std::size_t unparsed_ = 0;
    std::size_t duplicates_ = 0;
};

// ---- tocsind process ----

int free_port()
{
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    socklen_t length = sizeof(address);
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
        std::perror("cannot pick a free port");
        std::exit(1);
    }
    ::close(fd);
    return ntohs(address.sin_port);
}

std::string proc_status_field(int pid, const std::string& field)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(field + ":", 0) == 0) {
            auto value = line.substr(field.size() + 1);
            value.erase(0, value.find_first_not_of(" \t"));
            return value;
        }
    }
    return "unknown";
}

void write_file(const fs::path& path, const std::string& text)
{
    std::ofstream out(path);
    out << text;
    if (!out) {
        std::fprintf(stderr, "failed to write %s; check that --state-parent is writable\n", path.c_str());
        std::exit(1);
    }
}

// Writes tocsin.yaml and rules.yaml into `dir` for one run.
void write_config(const fs::path& dir, int tocsind_port, int webhook_port, const std::string& sync_mode,
                  std::size_t expected_alerts)
{
    write_file(dir / "rules.yaml", R"(groups:
  - name: bench
    rules:
      - alert: BenchDelivery
        expr: bench_delivery
        for: 0s
        tiers:
          warning: "> 0"
)");
    const std::size_t limit = expected_alerts + 1'000;
    write_file(dir / "tocsin.yaml",
               "listen: 127.0.0.1:" + std::to_string(tocsind_port) + "\n" +
                   "state_dir: " + (dir / "state").string() + "\n" +
                   "state_sync: " + sync_mode + "\n" +
                   "rule_files: [\"rules.yaml\"]\n"
                   "log_level: warn\n"
                   "limits:\n"
                   "  max_series: " + std::to_string(limit) + "\n" +
                   "  per_rule_max_alerts: " + std::to_string(limit) + "\n" +
                   "  max_active_alerts: " + std::to_string(limit) + "\n" +
                   "  max_samples_per_request: 100000\n"
                   "route:\n"
                   "  receiver: bench\n"
                   "  group_by: [alertname, instance]\n"
                   "  group_wait: 0s\n"
                   "  group_interval: 1h\n"
                   "  repeat_interval: 24h\n"
                   "receivers:\n"
                   "  - name: bench\n"
                   "    webhook_configs:\n"
                   "      - url: http://127.0.0.1:" + std::to_string(webhook_port) + "/hook\n" +
                   "        send_resolved: false\n"
                   "        max_concurrency: " + std::to_string(webhook_max_concurrency) + "\n");
}

class tocsind_process {
public:
    tocsind_process(const std::string& binary, const fs::path& dir, int port) : port_(port)
    {
        const std::string config = (dir / "tocsin.yaml").string();
        const std::string log = (dir / "tocsind.log").string();
        pid_ = ::fork();
        if (pid_ < 0) {
            std::perror("fork");
            std::exit(1);
        }
        if (pid_ == 0) {
            const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd >= 0) {
                ::dup2(fd, STDOUT_FILENO);
                ::dup2(fd, STDERR_FILENO);
                ::close(fd);
            }
            ::execl(binary.c_str(), binary.c_str(), "--config", config.c_str(), static_cast<char*>(nullptr));
            std::perror("exec tocsind");
            ::_exit(127);
        }
        httplib::Client client("127.0.0.1", port_);
        client.set_connection_timeout(std::chrono::milliseconds(200));
        const auto deadline = steady::now() + std::chrono::seconds(20);
        while (steady::now() < deadline) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                std::fprintf(stderr, "tocsind exited during startup; see %s\n", log.c_str());
                std::exit(1);
            }
            auto result = client.Get("/-/ready");
            if (result && result->status == 200) {
                return;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        std::fprintf(stderr, "tocsind did not become ready within 20 s; see %s\n", log.c_str());
        ::kill(pid_, SIGTERM);
        ::waitpid(pid_, nullptr, 0);
        std::exit(1);
    }

    ~tocsind_process()
    {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            int status = 0;
            ::waitpid(pid_, &status, 0);
        }
    }

    int pid() const { return pid_; }
    int port() const { return port_; }

private:
    pid_t pid_ = -1;
    int port_;
};

// ---- load ----

std::string push_body(const std::string& prefix, std::size_t first, std::size_t count)
{
    std::string body = R"({"samples":[)";
    for (std::size_t i = first; i < first + count; ++i) {
        if (i != first) {
            body += ',';
        }
        body += R"({"metric":"bench_delivery","labels":{"instance":")" + prefix + std::to_string(i) +
                R"("},"value":1})";
    }
    body += "]}";
    return body;
}

bool push(httplib::Client& client, const std::string& body)
{
    auto result = client.Post("/api/v1/push", body, "application/json");
    if (!result || result->status != 200) {
        std::fprintf(stderr, "push failed: %s\n",
                     result ? (std::to_string(result->status) + " " + result->body).c_str()
                            : httplib::to_string(result.error()).c_str());
        return false;
    }
    return true;
}

struct latency_result {
    std::vector<double> to_webhook_ms;
    std::vector<double> to_response_ms;
    std::size_t timeouts = 0;
};

// Pushes `count` new alerts one at a time and times each one's webhook request.
latency_result measure_latency(httplib::Client& client, webhook_receiver& receiver, const std::string& prefix,
                               std::size_t count)
{
    latency_result out;
    out.to_webhook_ms.reserve(count);
    out.to_response_ms.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
        const std::string body = push_body(prefix, i, 1);
        const std::string instance = prefix + std::to_string(i);
        const auto start = steady::now();
        if (!push(client, body)) {
            ++out.timeouts;
            continue;
        }
        out.to_response_ms.push_back(ms_between(start, steady::now()));
        auto arrived = receiver.wait_for(instance, alert_timeout);
        if (!arrived) {
            std::fprintf(stderr, "no webhook request for %s within %lld s\n", instance.c_str(),
                         static_cast<long long>(alert_timeout.count()));
            ++out.timeouts;
            continue;
        }
        out.to_webhook_ms.push_back(ms_between(start, *arrived));
    }
    return out;
}

struct preload_result {
    double push_seconds = 0;     // first push sent to last push response
    double delivery_seconds = 0; // first push sent to last notification received
    std::size_t received = 0;
    double rate_overall = 0;     // notifications per second over delivery_seconds
    double rate_middle = 0;      // between the 10 % and 90 % arrivals
};

preload_result preload(httplib::Client& client, webhook_receiver& receiver, std::size_t total, std::size_t batch)
{
    preload_result out;
    const auto start = steady::now();
    std::size_t pushed = 0;
    for (std::size_t first = 0; first < total; first += batch) {
        const std::size_t count = std::min(batch, total - first);
        if (!push(client, push_body("load-", first, count))) {
            break; // push() printed the error, and the caller counts the missing arrivals
        }
        pushed += count;
    }
    out.push_seconds = std::chrono::duration<double>(steady::now() - start).count();
    // Allow at least 60 s, and 10 ms per alert for a slow disk.
    const auto timeout = std::chrono::milliseconds(60'000 + 10 * pushed);
    auto times = receiver.wait_for_prefix("load-", pushed, timeout);
    out.received = times.size();
    if (times.empty()) {
        return out;
    }
    out.delivery_seconds = std::chrono::duration<double>(times.back() - start).count();
    out.rate_overall = static_cast<double>(times.size()) / out.delivery_seconds;
    const std::size_t low = times.size() / 10;
    const std::size_t high = times.size() * 9 / 10;
    if (high > low + 1) {
        const double span = std::chrono::duration<double>(times[high - 1] - times[low]).count();
        out.rate_middle = static_cast<double>(high - 1 - low) / span;
    }
    return out;
}

// ---- fsync probe ----

// Times write of 4 KiB + fsync on a file in `dir`. SQLite syncs the WAL (fdatasync) once per
// commit in state_sync: full, and at each WAL checkpoint in both modes.
summary measure_fsync(const fs::path& dir, int rounds)
{
    const fs::path path = dir / "fsync-probe";
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        std::perror("open fsync probe");
        std::exit(1);
    }
    std::vector<char> page(4096, 'x');
    std::vector<double> times;
    for (int i = 0; i < rounds; ++i) {
        const auto start = steady::now();
        if (::write(fd, page.data(), page.size()) != static_cast<ssize_t>(page.size()) || ::fsync(fd) != 0) {
            std::perror("write + fsync");
            std::exit(1);
        }
        times.push_back(ms_between(start, steady::now()));
    }
    ::close(fd);
    fs::remove(path);
    return summarize(std::move(times));
}

// ---- one run ----

int run_mode(const options& opt, const std::string& sync_mode, const fs::path& dir)
{
    webhook_receiver receiver;
    const int port = free_port();
    write_config(dir, port, receiver.port(), sync_mode, opt.preload + 2 * opt.alerts);
    tocsind_process daemon(opt.tocsind, dir, port);

    httplib::Client client("127.0.0.1", port);
    client.set_keep_alive(true);
    client.set_tcp_nodelay(true);
    client.set_read_timeout(std::chrono::seconds(60));

    std::printf("\n== state_sync: %s (tocsind pid %d, state in %s)\n", sync_mode.c_str(), daemon.pid(),
                (dir / "state").c_str());

    // The disk's fsync latency can move from minute to minute on a shared host, so it is sampled
    // again next to each measurement.
    std::printf("empty: %zu new alerts, one at a time, no other alerts active\n", opt.alerts);
    print_summary("write + fsync just before", measure_fsync(dir, fsync_rounds_per_phase));
    auto empty = measure_latency(client, receiver, "empty-", opt.alerts);
    print_summary("push -> webhook request arrives", summarize(empty.to_webhook_ms));
    print_summary("push -> push response", summarize(empty.to_response_ms));

    int failures = static_cast<int>(empty.timeouts);
    if (opt.preload > 0) {
        auto loaded = preload(client, receiver, opt.preload, opt.batch);
        std::printf("preload: %zu firing alerts in requests of %zu samples\n", opt.preload, opt.batch);
        std::printf("  pushes answered after %.2f s; %zu of %zu notifications received after %.2f s\n",
                    loaded.push_seconds, loaded.received, opt.preload, loaded.delivery_seconds);
        std::printf("  notifications/s through the outbox: %.0f overall, %.0f between the 10%% and 90%% arrivals\n",
                    loaded.rate_overall, loaded.rate_middle);
        if (loaded.received != opt.preload) {
            ++failures;
        }

        std::printf("loaded: %zu new alerts, one at a time, %zu alerts active\n", opt.alerts,
                    opt.alerts + opt.preload);
        print_summary("write + fsync just before", measure_fsync(dir, fsync_rounds_per_phase));
        auto busy = measure_latency(client, receiver, "loaded-", opt.alerts);
        print_summary("push -> webhook request arrives", summarize(busy.to_webhook_ms));
        print_summary("push -> push response", summarize(busy.to_response_ms));
        failures += static_cast<int>(busy.timeouts);
    }

    std::printf("tocsind peak RSS (VmHWM): %s  current RSS (VmRSS): %s\n",
                proc_status_field(daemon.pid(), "VmHWM").c_str(), proc_status_field(daemon.pid(), "VmRSS").c_str());
    if (receiver.unparsed() > 0 || receiver.duplicates() > 0) {
        std::printf("webhook requests without groupLabels.instance: %zu, repeated instances: %zu\n",
                    receiver.unparsed(), receiver.duplicates());
    }
    if (failures > 0) {
        std::printf("%d alerts were not delivered in time; see %s\n", failures, (dir / "tocsind.log").c_str());
    }
    return failures;
}

bool parse_count(const char* text, std::size_t& out, bool allow_zero)
{
    char* end = nullptr;
    const unsigned long long value = std::strtoull(text, &end, 10);
    if (end == text || *end != '\0' || (value == 0 && !allow_zero)) {
        return false;
    }
    out = static_cast<std::size_t>(value);
    return true;
}

void usage()
{
    std::fprintf(stderr,
                 "usage: delivery_bench [--tocsind PATH] [--alerts N] [--preload N] [--batch N]\n"
                 "                      [--sync both|full|normal] [--state-parent DIR]\n"
                 "  --tocsind       tocsind binary (default: ../daemon/tocsind beside this program)\n"
                 "  --alerts        alerts timed one at a time, before and after the preload (default 2000)\n"
                 "  --preload       firing alerts created before the second measurement; 0 skips it "
                 "(default 100000)\n"
                 "  --batch         samples per push request during the preload (default 1000)\n"
                 "  --sync          state_sync modes to run (default both)\n"
                 "  --state-parent  folder for the temporary state folders (default $TMPDIR or /tmp)\n");
}

bool parse_options(int argc, char** argv, options& opt)
{
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (i + 1 >= argc) {
            std::fprintf(stderr, "missing value for %s\n", arg.c_str());
            return false;
        }
        const char* value = argv[++i];
        bool ok = true;
        if (arg == "--tocsind") {
            opt.tocsind = value;
        } else if (arg == "--alerts") {
            ok = parse_count(value, opt.alerts, false);
        } else if (arg == "--preload") {
            ok = parse_count(value, opt.preload, true);
        } else if (arg == "--batch") {
            ok = parse_count(value, opt.batch, false);
        } else if (arg == "--sync") {
            const std::string mode = value;
            if (mode == "both") {
                opt.sync_modes = {"full", "normal"};
            } else if (mode == "full" || mode == "normal") {
                opt.sync_modes = {mode};
            } else {
                ok = false;
            }
        } else if (arg == "--state-parent") {
            opt.state_parent = value;
        } else {
            std::fprintf(stderr, "unknown option %s\n", arg.c_str());
            return false;
        }
        if (!ok) {
            std::fprintf(stderr, "invalid value %s for %s\n", value, arg.c_str());
            return false;
        }
    }
    return true;
}

} // namespace

int main(int argc, char** argv)
{
    options opt;
    if (!parse_options(argc, argv, opt)) {
        usage();
        return 2;
    }
    if (opt.tocsind.empty()) {
        std::error_code ec;
        const fs::path self = fs::read_symlink("/proc/self/exe", ec);
        opt.tocsind = (self.parent_path() / ".." / "daemon" / "tocsind").lexically_normal().string();
    }
    if (::access(opt.tocsind.c_str(), X_OK) != 0) {
        std::fprintf(stderr, "tocsind not found or not executable at %s; build the tocsind target or pass --tocsind\n",
                     opt.tocsind.c_str());
        return 2;
    }
    if (opt.state_parent.empty()) {
        const char* tmp = std::getenv("TMPDIR");
        opt.state_parent = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
    }
    // Line-buffered, so that progress shows when the output goes to a file.
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    // A receiver that closes a connection early must not kill the benchmark.
    ::signal(SIGPIPE, SIG_IGN);

    std::vector<fs::path> run_dirs;
    for (std::size_t i = 0; i < opt.sync_modes.size(); ++i) {
        std::string pattern = (fs::path(opt.state_parent) / "tocsin-delivery-bench.XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr) {
            std::fprintf(stderr, "cannot create a folder in %s: %s; pass --state-parent\n", opt.state_parent.c_str(),
                         std::strerror(errno));
            return 1;
        }
        run_dirs.emplace_back(pattern);
    }

    std::printf("tocsind: %s\n", opt.tocsind.c_str());
    const summary fsync_times = measure_fsync(run_dirs.front(), 500);
    std::printf("fsync probe (write 4 KiB + fsync, %zu rounds, in %s):\n", fsync_times.count,
                opt.state_parent.c_str());
    print_summary("write + fsync", fsync_times);

    int failures = 0;
    for (std::size_t i = 0; i < opt.sync_modes.size(); ++i) {
        failures += run_mode(opt, opt.sync_modes[i], run_dirs[i]);
    }
    if (failures == 0) {
        for (const auto& dir : run_dirs) {
            std::error_code ec;
            fs::remove_all(dir, ec);
        }
    }
    return failures == 0 ? 0 : 1;
}
