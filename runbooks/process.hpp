#pragma once
// Programs and processes for runbook steps: exec (and rollback by exec) and stop/restart by pid
// file. No shell anywhere: a program is started with execve(2) from an argv list.
//
// Every function here blocks the calling thread until the step ends or times out, and is safe
// to call from several threads at once. Timeouts here run on the steady clock, because they
// bound real processes; the run engine's injected clock is not involved.
//
// The caller must leave SIGCHLD at its default disposition (not SIG_IGN), or waitpid(2) cannot
// collect the exit status.

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace tocsin::runbooks {

using std::chrono::milliseconds;
using env_list = std::vector<std::pair<std::string, std::string>>;

// Absolute paths of the programs runbooks may start. Each entry and each program asked for is
// resolved with realpath(3) and compared resolved, so neither a symlink nor "/usr/bin/../bin/x"
// starts anything outside the list.
class program_allowlist {
public:
    program_allowlist() = default;
    explicit program_allowlist(const std::vector<std::string>& programs);

    // Returns the resolved path of `program`, or nullopt and an `error` that names the program
    // and the fix ("add it to runbooks.allowed_programs").
    std::optional<std::string> resolve(const std::string& program, std::string& error) const;
    bool check(const std::string& program, std::string& error) const { return resolve(program, error).has_value(); }

    const std::vector<std::string>& resolved() const { return resolved_; }

private:
    std::vector<std::string> resolved_;
};

// The environment every program gets: PATH=/usr/sbin:/usr/bin:/sbin:/bin, LANG=C.UTF-8, HOME=/
// and TZ=UTC. Nothing of the daemon's own environment is passed on; a step adds its declared
// variables on top.
env_list minimal_environment();

struct exec_request {
    std::vector<std::string> argv;  // argv[0]: the program as written in the runbook (absolute)
    env_list env;                   // the step's declared variables, added to minimal_environment()
    milliseconds timeout{60'000};   // then SIGTERM to the process group
    milliseconds kill_grace{2'000}; // then SIGKILL to the process group
    std::size_t output_limit = 64 * 1024; // bytes kept of stdout and of stderr each
};

struct exec_result {
    bool started = false;   // false: refused or execve failed; see error
    bool timed_out = false;
    int exit_code = -1;     // when it exited
    int signal = 0;         // when a signal ended it
    std::string out;        // stdout, cut to output_limit with a marker line
    std::string err;        // stderr, likewise
    std::string error;      // why it did not start, or what went wrong while it ran
    milliseconds elapsed{0};
    int pid = 0;

    bool ok() const { return started && !timed_out && signal == 0 && exit_code == 0 && error.empty(); }
    // "exited with status 0", "exited with status 3", "timed out after 5s; sent SIGTERM, then SIGKILL"...
    std::string summary() const;
};

// Starts argv[0] (after checking it against `allow`) in a new process group, with stdin on
// /dev/null, stdout and stderr captured, file descriptors above 2 closed, signal dispositions
// and mask reset and the environment replaced. On timeout sends SIGTERM to the whole group,
// then SIGKILL after kill_grace. When the program exits, whatever it left running in its
// group is killed with SIGKILL: a step's processes do not outlive the step. (A process that
// calls setsid(2) leaves the group and escapes this; start long-lived services through systemd.)
exec_result run_program(const program_allowlist& allow, const exec_request& request);

struct service_result {
    bool ok = false;
    std::string detail;
};

// Reads a pid file: one positive decimal process id, optional surrounding white space. Refuses
// pid 1, this process and values that are not numbers. Returns nullopt and an `error` otherwise.
std::optional<int> read_pid_file(const std::string& path, std::string& error);

// True while `pid` names a process that is not a zombie.
bool process_alive(int pid);

// Stops the process named by the pid file: SIGTERM, wait up to `timeout`, then SIGKILL and
// wait up to `kill_grace`. A pid file naming no live process counts as already stopped. A
// missing or malformed pid file is a failure, because a typo in the path must not pass as success.
// The process's start time is checked before each signal, so a pid reused by another program
// meanwhile is never signalled.
service_result stop_by_pid_file(const std::string& pid_file, milliseconds timeout, milliseconds kill_grace);

// Restarts a process that a supervisor restarts when it ends: stops it as above, then waits
// until the pid file names a different live process, up to the rest of `timeout`.
service_result restart_by_pid_file(const std::string& pid_file, milliseconds timeout, milliseconds kill_grace);

} // namespace tocsin::runbooks
