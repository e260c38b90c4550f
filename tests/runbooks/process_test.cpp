#include <catch2/catch.hpp>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <thread>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runbooks/process.hpp"
#include "runbooks/systemd_unit.hpp"
#include "support/test_support.hpp"

using namespace tocsin;
using namespace tocsin::runbooks;
using namespace std::chrono_literals;

namespace {

std::string script(const test::temp_dir& dir, const std::string& name, const std::string& body)
{
    const std::string path = dir.write(name, "#!/bin/sh\n" + body);
    std::filesystem::permissions(path, std::filesystem::perms::owner_all);
    return path;
}

// Polls `done` every 10 ms for at most `limit` of real time.
template <typename F>
bool eventually(F done, std::chrono::milliseconds limit = 5s)
{
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
        if (done()) {
            return true;
        }
        std::this_thread::sleep_for(10ms);
    }
    return done();
}

int read_pid(const std::string& path)
{
    std::ifstream in(path);
    int pid = 0;
    in >> pid;
    return pid;
}

// Starts `program` as a child of the test in its own process group.
pid_t spawn(const std::string& program)
{
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::setpgid(0, 0);
        ::execl(program.c_str(), program.c_str(), static_cast<char*>(nullptr));
        ::_exit(127);
    }
    return pid;
}

// Reaps `pid` once it exits, within a bounded time; kills its group first when asked.
void reap(pid_t pid, bool kill_group = false)
{
    if (kill_group) {
        ::kill(-pid, SIGKILL);
    }
    int status = 0;
    eventually([&] { return ::waitpid(pid, &status, WNOHANG) != 0; });
}

exec_request request_for(std::vector<std::string> argv, std::chrono::milliseconds timeout = 10s)
{
    exec_request r;
    r.argv = std::move(argv);
    r.timeout = timeout;
    r.kill_grace = 300ms;
    return r;
}

} // namespace

TEST_CASE("program output and exit status")
{
    test::temp_dir dir;
    const auto ok = script(dir, "ok.sh", "echo out; echo err >&2; exit 0\n");
    const auto fail = script(dir, "fail.sh", "echo 'disk not found' >&2; exit 3\n");
    program_allowlist allow({ok, fail});

    auto r = run_program(allow, request_for({ok}));
    CHECK(r.ok());
    CHECK(r.out == "out\n");
    CHECK(r.err == "err\n");
    CHECK(r.summary() == "exited with status 0");

    r = run_program(allow, request_for({fail}));
    CHECK_FALSE(r.ok());
    CHECK(r.exit_code == 3);
    CHECK(r.err == "disk not found\n");
    CHECK(r.summary() == "exited with status 3");
}

TEST_CASE("allowlist compares resolved paths")
{
    test::temp_dir dir;
    const auto ok = script(dir, "ok.sh", "exit 0\n");
    const auto other = script(dir, "other.sh", "exit 0\n");
    const auto link = (dir.path() / "link-to-other.sh").string();
    std::filesystem::create_symlink(other, link);
    program_allowlist allow({ok});

    auto r = run_program(allow, request_for({other}));
    CHECK_FALSE(r.started);
    CHECK_THAT(r.error, Catch::Contains("not in the allowlist"));
    r = run_program(allow, request_for({link}));
    CHECK_FALSE(r.started);
    CHECK_THAT(r.error, Catch::Contains("other.sh"));
    r = run_program(allow, request_for({(dir.path() / "sub" / ".." / "other.sh").string()}));
    CHECK_FALSE(r.started);
    r = run_program(allow, request_for({"ok.sh"}));
    CHECK_THAT(r.error, Catch::Contains("not an absolute path"));

    const auto link_to_ok = (dir.path() / "link-to-ok.sh").string();
    std::filesystem::create_symlink(ok, link_to_ok);
    CHECK(run_program(allow, request_for({link_to_ok})).ok());
}

TEST_CASE("environment is scrubbed")
{
    ::setenv("TOCSIN_TEST_SECRET", "hunter2", 1);
    program_allowlist allow({"/usr/bin/env"});
    auto request = request_for({"/usr/bin/env"});
    request.env = {{"MODEL", "fraud-v2"}};
    auto r = run_program(allow, request);
    ::unsetenv("TOCSIN_TEST_SECRET");
    REQUIRE(r.ok());
    CHECK(r.out == "PATH=/usr/sbin:/usr/bin:/sbin:/bin\nLANG=C.UTF-8\nHOME=/\nTZ=UTC\nMODEL=fraud-v2\n");
}

TEST_CASE("stdin and inherited descriptors")
{
    test::temp_dir dir;
    const std::string open_file = dir.write("held.txt", "x");
    const int held = ::open(open_file.c_str(), O_RDONLY); // deliberately without O_CLOEXEC
    REQUIRE(held >= 0);
    const auto probe = script(dir, "probe.sh",
                              "cat; if [ -e /proc/$$/fd/" + std::to_string(held) + " ]; then echo leaked; fi\n");
    program_allowlist allow({probe});
    auto r = run_program(allow, request_for({probe}));
    ::close(held);
    CHECK(r.ok());
    CHECK(r.out.empty());
}

TEST_CASE("output cut at the limit")
{
    test::temp_dir dir;
    const auto loud = script(dir, "loud.sh", "head -c 200000 /dev/zero | tr '\\000' a\n");
    program_allowlist allow({loud});
    auto request = request_for({loud});
    request.output_limit = 1000;
    auto r = run_program(allow, request);
    CHECK(r.ok());
    CHECK(r.out.substr(0, 1000) == std::string(1000, 'a'));
    CHECK_THAT(r.out, Catch::Contains("[tocsin: output cut at 1000 bytes; 199000 more bytes dropped]"));
}

TEST_CASE("timeout sends SIGTERM")
{
    test::temp_dir dir;
    const auto slow = script(dir, "slow.sh", "sleep 30\n");
    program_allowlist allow({slow});
    const auto started = std::chrono::steady_clock::now();
    auto r = run_program(allow, request_for({slow}, 300ms));
    CHECK(r.timed_out);
    CHECK_FALSE(r.ok());
    CHECK(r.signal == SIGTERM);
    CHECK_THAT(r.summary(), Catch::Contains("timed out"));
    CHECK(std::chrono::steady_clock::now() - started < 5s);
}

TEST_CASE("grandchild ignoring SIGTERM is killed")
{
    test::temp_dir dir;
    const std::string grandchild_pid = (dir.path() / "grandchild.pid").string();
    // The child forks a grandchild that ignores SIGTERM, then waits.
    const auto hang = script(dir, "hang.sh",
                             "sh -c 'trap \"\" TERM; echo $$ > " + grandchild_pid +
                                 "; while :; do sleep 1; done' &\nwait\n");
    program_allowlist allow({hang});
    auto r = run_program(allow, request_for({hang}, 500ms));
    CHECK(r.timed_out);
    REQUIRE(eventually([&] { return read_pid(grandchild_pid) > 0; }));
    const int pid = read_pid(grandchild_pid);
    CHECK(eventually([&] { return !process_alive(pid); }));
}

TEST_CASE("SIGKILL after the grace period")
{
    test::temp_dir dir;
    const auto stubborn = script(dir, "stubborn.sh", "trap '' TERM\nwhile :; do sleep 0.05; done\n");
    program_allowlist allow({stubborn});
    auto r = run_program(allow, request_for({stubborn}, 300ms));
    CHECK(r.timed_out);
    CHECK(r.signal == SIGKILL);
}

TEST_CASE("leftover processes are killed")
{
    test::temp_dir dir;
    const std::string left_pid = (dir.path() / "left.pid").string();
    const auto leaver = script(dir, "leaver.sh",
                               "sh -c 'echo $$ > " + left_pid + "; exec sleep 30' >/dev/null 2>&1 &\n"
                               "while [ ! -s " + left_pid + " ]; do sleep 0.01; done\nexit 0\n");
    program_allowlist allow({leaver});
    auto r = run_program(allow, request_for({leaver}));
    CHECK(r.ok());
    const int pid = read_pid(left_pid);
    REQUIRE(pid > 0);
    CHECK(eventually([&] { return !process_alive(pid); }));
}

TEST_CASE("stop service by pid file")
{
    test::temp_dir dir;
    const std::string pid_file = (dir.path() / "canary.pid").string();
    const auto service = script(dir, "canary.sh",
                                "echo $$ > " + pid_file + ".tmp; mv " + pid_file + ".tmp " + pid_file +
                                    "\ntrap 'exit 0' TERM\nwhile :; do sleep 0.05; done\n");
    const pid_t pid = spawn(service);
    REQUIRE(eventually([&] { return read_pid(pid_file) == pid; }));

    auto r = stop_by_pid_file(pid_file, 5s, 1s);
    CHECK(r.ok);
    CHECK_THAT(r.detail, Catch::Contains("stopped after SIGTERM"));
    CHECK_FALSE(process_alive(pid));
    reap(pid);

    // Stopping again: the pid names no live process any more.
    r = stop_by_pid_file(pid_file, 1s, 1s);
    CHECK(r.ok);
    CHECK_THAT(r.detail, Catch::Contains("already stopped"));
}

TEST_CASE("stop kills a service ignoring SIGTERM")
{
    test::temp_dir dir;
    const std::string pid_file = (dir.path() / "stubborn.pid").string();
    const auto service = script(dir, "stubborn.sh",
                                "trap '' TERM\necho $$ > " + pid_file + ".tmp; mv " + pid_file + ".tmp " + pid_file +
                                    "\nwhile :; do sleep 0.05; done\n");
    const pid_t pid = spawn(service);
    REQUIRE(eventually([&] { return read_pid(pid_file) == pid; }));
    auto r = stop_by_pid_file(pid_file, 300ms, 2s);
    CHECK(r.ok);
    CHECK_THAT(r.detail, Catch::Contains("SIGKILL"));
    reap(pid, true);
}

TEST_CASE("restart by pid file with supervisor")
{
    test::temp_dir dir;
    const std::string pid_file = (dir.path() / "svc.pid").string();
    const std::string stop_file = (dir.path() / "stop").string();
    const auto service = script(dir, "svc.sh",
                                "echo $$ > " + pid_file + ".tmp; mv " + pid_file + ".tmp " + pid_file +
                                    "\nexec sleep 30\n");
    // The loop also ends when the folder is gone, so a failed check leaves no spinning process.
    const auto supervisor = script(dir, "supervisor.sh",
                                   "while [ -d " + dir.path().string() + " ] && [ ! -e " + stop_file + " ]; do " +
                                       service + "; done 2>/dev/null\n");
    const pid_t sup = spawn(supervisor);
    REQUIRE(eventually([&] { return read_pid(pid_file) > 0; }));
    const int first = read_pid(pid_file);

    auto r = restart_by_pid_file(pid_file, 5s, 1s);
    CHECK(r.ok);
    CHECK_THAT(r.detail, Catch::Contains("the supervisor started process"));
    CHECK(read_pid(pid_file) != first);
    dir.write("stop", "");
    reap(sup, true);
}

TEST_CASE("invalid pid files are rejected")
{
    test::temp_dir dir;
    std::string error;
    CHECK_FALSE(read_pid_file((dir.path() / "missing.pid").string(), error));
    CHECK_THAT(error, Catch::Contains("cannot open pid file"));
    for (const std::string content : {"abc", "", "-5", "12 13", "99999999999", "0", "1"}) {
        INFO(content);
        CHECK_FALSE(read_pid_file(dir.write("bad.pid", content), error));
    }
    CHECK_FALSE(read_pid_file(dir.write("self.pid", std::to_string(::getpid())), error));
    CHECK_THAT(error, Catch::Contains("tocsin itself"));
    CHECK(read_pid_file(dir.write("ok.pid", " 4242\n"), error) == 4242);

    auto r = stop_by_pid_file((dir.path() / "missing.pid").string(), 1s, 1s);
    CHECK_FALSE(r.ok);
}

TEST_CASE("systemd unit control over sd-bus")
{
    std::string reason;
    if (!systemd_manager_reachable(false, reason)) {
        WARN("skipped: no systemd manager on the system bus: " << reason);
        auto r = control_unit({"tocsin-test-none.service", false, false, 2s});
        CHECK_FALSE(r.ok);
        CHECK_THAT(r.detail, Catch::Contains("system bus"));
        return;
    }
    // Only the refusal path runs here: a test must not stop a real unit.
    auto r = control_unit({"tocsin-test-does-not-exist.service", false, false, 10s});
    CHECK_FALSE(r.ok);
    CHECK_THAT(r.detail, Catch::Contains("tocsin-test-does-not-exist.service"));
}
