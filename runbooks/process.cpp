#include "runbooks/process.hpp"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include <fcntl.h>
#include <poll.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include "rules/duration.hpp"
#include "runbooks/arg_template.hpp"

namespace tocsin::runbooks {

namespace {

using steady = std::chrono::steady_clock;

std::optional<std::string> real_path(const std::string& path)
{
    char buffer[PATH_MAX];
    if (::realpath(path.c_str(), buffer) == nullptr) {
        return std::nullopt;
    }
    return std::string(buffer);
}

class fd_guard {
public:
    explicit fd_guard(int fd = -1) : fd_(fd) {}
    ~fd_guard() { reset(); }
    fd_guard(const fd_guard&) = delete;
    fd_guard& operator=(const fd_guard&) = delete;
    int get() const { return fd_; }
    void reset(int fd = -1)
    {
        if (fd_ >= 0) {
            ::close(fd_);
        }
        fd_ = fd;
    }

private:
    int fd_;
};

// Collects one output stream up to a limit and counts what it drops.
struct capture {
    std::string data;
    std::size_t dropped = 0;
    bool open = true;

    void add(const char* p, std::size_t n, std::size_t limit)
    {
        const std::size_t room = data.size() < limit ? limit - data.size() : 0;
        const std::size_t keep = std::min(room, n);
        data.append(p, keep);
        dropped += n - keep;
    }
    std::string finish(std::size_t limit)
    {
        if (dropped > 0) {
            data += fmt::format("\n[tocsin: output cut at {} bytes; {} more bytes dropped]\n", limit, dropped);
        }
        return std::move(data);
    }
};

// Reads what is available on `fd`; marks the capture closed at end of file.
void drain(int fd, capture& c, std::size_t limit)
{
    char buffer[8192];
    for (;;) {
        const ssize_t n = ::read(fd, buffer, sizeof buffer);
        if (n > 0) {
            c.add(buffer, static_cast<std::size_t>(n), limit);
            continue;
        }
        if (n == 0) {
            c.open = false;
        } else if (errno == EINTR) {
            continue;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
            c.open = false;
        }
        return;
    }
}

// The start time of a process in clock ticks since boot (field 22 of /proc/PID/stat), and its
// state letter. nullopt when the process does not exist.
struct proc_stat {
    char state = '?';
    unsigned long long start_time = 0;
};

std::optional<proc_stat> read_proc_stat(int pid)
{
    // read(2), not a stream: reading the file of a process that exits meanwhile fails with
    // ESRCH, which libstdc++'s filebuf reports by throwing.
    const int fd = ::open(fmt::format("/proc/{}/stat", pid).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return std::nullopt;
    }
    std::string text;
    char buffer[1024];
    while (true) {
        const ssize_t n = ::read(fd, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            const bool failed = n < 0;
            ::close(fd);
            if (failed) {
                return std::nullopt; // the process ended while it was read
            }
            break;
        }
        text.append(buffer, static_cast<std::size_t>(n));
    }
    // The command name is in parentheses and may contain spaces. The fields after the last ')'
    // are separated by spaces, with the state as field 3 and starttime as field 22.
    const auto close = text.rfind(')');
    if (close == std::string::npos) {
        return std::nullopt;
    }
    std::istringstream rest(text.substr(close + 1));
    proc_stat st;
    rest >> st.state;
    std::string skip;
    for (int field = 4; field < 22 && rest; ++field) {
        rest >> skip;
    }
    rest >> st.start_time;
    if (!rest) {
        return std::nullopt;
    }
    return st;
}

// True when `pid` still names the process that started at `start_time` and is not a zombie.
bool same_process_alive(int pid, unsigned long long start_time)
{
    auto st = read_proc_stat(pid);
    return st && st->state != 'Z' && st->state != 'X' && st->start_time == start_time;
}

// Polls until `pid` (started at `start_time`) is gone or `deadline` passes.
bool wait_gone(int pid, unsigned long long start_time, steady::time_point deadline)
{
    for (;;) {
        if (!same_process_alive(pid, start_time)) {
            return true;
        }
        if (steady::now() >= deadline) {
            return false;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

std::string format_ms(milliseconds d)
{
    return format_duration(d);
}

} // namespace

program_allowlist::program_allowlist(const std::vector<std::string>& programs)
{
    for (const auto& p : programs) {
        if (p.empty() || p.front() != '/') {
            continue; // only absolute paths count
        }
        if (auto r = real_path(p)) {
            resolved_.push_back(*r);
        }
    }
}

std::optional<std::string> program_allowlist::resolve(const std::string& program, std::string& error) const
{
    if (program.empty() || program.front() != '/') {
        error = fmt::format("program {} is not an absolute path", quote_value(program));
        return std::nullopt;
    }
    auto resolved = real_path(program);
    if (!resolved) {
        error = fmt::format("program {} cannot be resolved: {}", quote_value(program), std::strerror(errno));
        return std::nullopt;
    }
    if (std::find(resolved_.begin(), resolved_.end(), *resolved) == resolved_.end()) {
        error = fmt::format("program {} (resolved to {}) is not in the allowlist of programs runbooks may start; add "
                            "its absolute path to runbooks.allowed_programs",
                            quote_value(program), quote_value(*resolved));
        return std::nullopt;
    }
    if (::access(resolved->c_str(), X_OK) != 0) {
        error = fmt::format("program {} is not executable: {}", quote_value(*resolved), std::strerror(errno));
        return std::nullopt;
    }
    return resolved;
}

env_list minimal_environment()
{
    return {{"PATH", "/usr/sbin:/usr/bin:/sbin:/bin"}, {"LANG", "C.UTF-8"}, {"HOME", "/"}, {"TZ", "UTC"}};
}

std::string exec_result::summary() const
{
    if (!started) {
        return error.empty() ? "did not start" : "did not start: " + error;
    }
    std::string text;
    if (timed_out) {
        text = fmt::format("timed out after {}; sent SIGTERM to its process group, then SIGKILL", format_ms(elapsed));
    } else if (signal != 0) {
        const char* name = ::sigabbrev_np(signal);
        text = fmt::format("killed by signal {} (SIG{})", signal, name ? name : "?");
    } else {
        text = fmt::format("exited with status {}", exit_code);
    }
    if (!error.empty()) {
        text += "; " + error;
    }
    return text;
}

exec_result run_program(const program_allowlist& allow, const exec_request& request)
{
    exec_result result;
    if (request.argv.empty()) {
        result.error = "empty argv";
        return result;
    }
    auto path = allow.resolve(request.argv[0], result.error);
    if (!path) {
        return result;
    }
    for (const auto& a : request.argv) {
        if (a.find('\0') != std::string::npos) {
            result.error = "an argument holds a NUL byte";
            return result;
        }
    }

    // Everything the child needs is built before fork: after fork only async-signal-safe calls.
    std::vector<std::string> env_strings;
    env_list env = minimal_environment();
    for (const auto& [name, value] : request.env) {
        if (value.find('\0') != std::string::npos) {
            result.error = fmt::format("environment variable {} holds a NUL byte", name);
            return result;
        }
        auto it = std::find_if(env.begin(), env.end(), [&](const auto& e) { return e.first == name; });
        if (it != env.end()) {
            it->second = value;
        } else {
            env.emplace_back(name, value);
        }
    }
    for (const auto& [name, value] : env) {
        env_strings.push_back(name + "=" + value);
    }
    std::vector<char*> argv;
    for (const auto& a : request.argv) {
        argv.push_back(const_cast<char*>(a.c_str()));
    }
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (auto& e : env_strings) {
        envp.push_back(e.data());
    }
    envp.push_back(nullptr);

    fd_guard dev_null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    int out_pipe[2];
    int err_pipe[2];
    int exec_pipe[2];
    if (dev_null.get() < 0 || ::pipe2(out_pipe, O_CLOEXEC) != 0) {
        result.error = fmt::format("cannot set up the child: {}", std::strerror(errno));
        return result;
    }
    fd_guard out_read(out_pipe[0]);
    fd_guard out_write(out_pipe[1]);
    if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
        result.error = fmt::format("cannot set up the child: {}", std::strerror(errno));
        return result;
    }
    fd_guard err_read(err_pipe[0]);
    fd_guard err_write(err_pipe[1]);
    if (::pipe2(exec_pipe, O_CLOEXEC) != 0) {
        result.error = fmt::format("cannot set up the child: {}", std::strerror(errno));
        return result;
    }
    fd_guard exec_read(exec_pipe[0]);
    fd_guard exec_write(exec_pipe[1]);

    const auto started_at = steady::now();
    const pid_t pid = ::fork();
    if (pid < 0) {
        result.error = fmt::format("fork failed: {}", std::strerror(errno));
        return result;
    }
    if (pid == 0) {
        // Child. Own process group, so the whole tree can be signalled at once.
        ::setpgid(0, 0);
        sigset_t all;
        ::sigemptyset(&all);
        ::sigprocmask(SIG_SETMASK, &all, nullptr);
        struct sigaction dfl {};
        dfl.sa_handler = SIG_DFL;
        for (int sig = 1; sig < NSIG; ++sig) {
            ::sigaction(sig, &dfl, nullptr); // fails harmlessly for SIGKILL, SIGSTOP and gaps
        }
        int report = exec_pipe[1];
        if (::dup2(dev_null.get(), 0) < 0 || ::dup2(out_pipe[1], 1) < 0 || ::dup2(err_pipe[1], 2) < 0) {
            int e = errno;
            (void)!::write(report, &e, sizeof e);
            ::_exit(127);
        }
        // Keep the error pipe at fd 3 (close-on-exec) and close everything else above 2.
        if (report != 3) {
            if (::dup3(report, 3, O_CLOEXEC) < 0) {
                ::_exit(127);
            }
            report = 3;
        }
        ::close_range(4, ~0U, 0);
        ::execve(path->c_str(), argv.data(), envp.data());
        int e = errno;
        (void)!::write(report, &e, sizeof e);
        ::_exit(127);
    }

    // Parent. Also set the group here, so a signal sent before the child ran setpgid reaches it.
    ::setpgid(pid, pid);
    result.pid = pid;
    out_write.reset();
    err_write.reset();
    exec_write.reset();
    int exec_errno = 0;
    ssize_t n;
    do {
        n = ::read(exec_read.get(), &exec_errno, sizeof exec_errno);
    } while (n < 0 && errno == EINTR);
    if (n == static_cast<ssize_t>(sizeof exec_errno)) {
        int status = 0;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        result.error = fmt::format("cannot start {}: {}", quote_value(*path), std::strerror(exec_errno));
        return result;
    }
    result.started = true;
    ::fcntl(out_read.get(), F_SETFL, O_NONBLOCK);
    ::fcntl(err_read.get(), F_SETFL, O_NONBLOCK);

    capture out;
    capture err;
    const auto deadline = started_at + request.timeout;
    std::optional<steady::time_point> kill_at;  // after SIGTERM: when to send SIGKILL
    std::optional<steady::time_point> give_up;  // after the child ended: how long to drain
    bool reaped = false;
    bool killed = false;
    int status = 0;

    while (!reaped || out.open || err.open) {
        const auto now = steady::now();
        if (!reaped) {
            const pid_t w = ::waitpid(pid, &status, WNOHANG);
            if (w == pid || (w < 0 && errno == ECHILD)) {
                reaped = true;
                if (w < 0) {
                    result.error = "its exit status was lost (is SIGCHLD ignored?)";
                }
                // Whatever the program left running in its group goes with it.
                ::kill(-pid, SIGKILL);
                give_up = now + std::chrono::seconds(2);
            } else if (!result.timed_out && now >= deadline) {
                result.timed_out = true;
                ::kill(-pid, SIGTERM);
                kill_at = now + request.kill_grace;
            } else if (kill_at && !killed && now >= *kill_at) {
                ::kill(-pid, SIGKILL);
                killed = true;
            }
        }
        if (give_up && now >= *give_up) {
            result.error = "its output did not close after it exited";
            break;
        }
        pollfd fds[2];
        nfds_t count = 0;
        if (out.open) {
            fds[count++] = {out_read.get(), POLLIN, 0};
        }
        if (err.open) {
            fds[count++] = {err_read.get(), POLLIN, 0};
        }
        if (count > 0) {
            ::poll(fds, count, 10);
        } else {
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        if (out.open) {
            drain(out_read.get(), out, request.output_limit);
        }
        if (err.open) {
            drain(err_read.get(), err, request.output_limit);
        }
    }
    result.elapsed = std::chrono::duration_cast<milliseconds>(steady::now() - started_at);
    if (WIFEXITED(status)) {
        result.exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        result.signal = WTERMSIG(status);
    }
    result.out = out.finish(request.output_limit);
    result.err = err.finish(request.output_limit);
    return result;
}

std::optional<int> read_pid_file(const std::string& path, std::string& error)
{
    fd_guard fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
    if (fd.get() < 0) {
        error = fmt::format("cannot open pid file {}: {}", quote_value(path), std::strerror(errno));
        return std::nullopt;
    }
    char buffer[64];
    const ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n < 0) {
        error = fmt::format("cannot read pid file {}: {}", quote_value(path), std::strerror(errno));
        return std::nullopt;
    }
    std::string_view text(buffer, static_cast<std::size_t>(n));
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ' || text.back() == '\t' || text.back() == '\r')) {
        text.remove_suffix(1);
    }
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) {
        text.remove_prefix(1);
    }
    long long value = 0;
    bool digits = !text.empty() && text.size() <= 10;
    for (char c : text) {
        digits = digits && c >= '0' && c <= '9';
        if (digits) {
            value = value * 10 + (c - '0');
        }
    }
    if (!digits || static_cast<std::size_t>(n) == sizeof buffer) {
        error = fmt::format("pid file {} holds {}, not a process id; expected one positive integer",
                            quote_value(path), quote_value(text));
        return std::nullopt;
    }
    if (value <= 1 || value > INT_MAX) {
        error = fmt::format("pid file {} names process {}, which tocsin never signals; expected the service's pid",
                            quote_value(path), value);
        return std::nullopt;
    }
    if (value == ::getpid()) {
        error = fmt::format("pid file {} names tocsin itself ({}); expected the service's pid", quote_value(path),
                            value);
        return std::nullopt;
    }
    return static_cast<int>(value);
}

bool process_alive(int pid)
{
    auto st = read_proc_stat(pid);
    return st && st->state != 'Z' && st->state != 'X';
}

service_result stop_by_pid_file(const std::string& pid_file, milliseconds timeout, milliseconds kill_grace)
{
    std::string error;
    auto pid = read_pid_file(pid_file, error);
    if (!pid) {
        return {false, error};
    }
    auto st = read_proc_stat(*pid);
    if (!st && ::kill(*pid, 0) != 0 && errno == EPERM) {
        // The process exists, but /proc hides it (hidepid, systemd's ProtectProc) and it
        // belongs to another user: calling it stopped would be a lie.
        return {false, fmt::format("process {} from {} belongs to another user and is hidden from tocsind; run the "
                                   "service as tocsind's user, or stop it through its systemd unit",
                                   *pid, quote_value(pid_file))};
    }
    if (!st || st->state == 'Z' || st->state == 'X') {
        return {true, fmt::format("already stopped: process {} from {} does not exist", *pid, quote_value(pid_file))};
    }
    const auto start_time = st->start_time;
    if (::kill(*pid, SIGTERM) != 0) {
        return {false, fmt::format("cannot send SIGTERM to process {}: {}", *pid, std::strerror(errno))};
    }
    if (wait_gone(*pid, start_time, steady::now() + timeout)) {
        return {true, fmt::format("process {} stopped after SIGTERM", *pid)};
    }
    if (same_process_alive(*pid, start_time) && ::kill(*pid, SIGKILL) != 0 && errno != ESRCH) {
        return {false, fmt::format("cannot send SIGKILL to process {}: {}", *pid, std::strerror(errno))};
    }
    if (wait_gone(*pid, start_time, steady::now() + kill_grace)) {
        return {true, fmt::format("process {} ignored SIGTERM for {}; stopped by SIGKILL", *pid,
                                  format_ms(timeout))};
    }
    return {false, fmt::format("process {} is still alive after SIGTERM and SIGKILL", *pid)};
}

service_result restart_by_pid_file(const std::string& pid_file, milliseconds timeout, milliseconds kill_grace)
{
    const auto started = steady::now();
    std::string error;
    auto old_pid = read_pid_file(pid_file, error);
    if (!old_pid) {
        return {false, error};
    }
    auto stopped = stop_by_pid_file(pid_file, timeout, kill_grace);
    if (!stopped.ok) {
        return stopped;
    }
    const auto deadline = started + timeout + kill_grace;
    for (;;) {
        std::string ignored;
        auto pid = read_pid_file(pid_file, ignored);
        if (pid && *pid != *old_pid && process_alive(*pid)) {
            return {true, fmt::format("{}; the supervisor started process {}", stopped.detail, *pid)};
        }
        if (steady::now() >= deadline) {
            return {false, fmt::format("{}; but no new process appeared in {} within the timeout; restart by pid "
                                       "file needs a supervisor that starts the service again",
                                       stopped.detail, quote_value(pid_file))};
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

} // namespace tocsin::runbooks
