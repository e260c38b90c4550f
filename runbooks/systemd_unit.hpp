#pragma once
// stop / restart of a systemd unit through sd-bus: org.freedesktop.systemd1.Manager StopUnit or
// RestartUnit with mode "replace", then a wait for the job's JobRemoved signal. Blocks the
// calling thread; each call opens its own bus connection, so calls from several threads are safe.

#include <chrono>
#include <string>

#include "runbooks/process.hpp"

namespace tocsin::runbooks {

struct unit_request {
    std::string unit;     // canary.service
    bool restart = false; // RestartUnit instead of StopUnit
    bool user_bus = false; // the calling user's manager instead of the system manager
    milliseconds timeout{60'000};
};

// ok when the job ends with result "done". The detail names the unit, the job and its result,
// or why the bus could not be reached.
service_result control_unit(const unit_request& request);

// True when a systemd manager responds on the bus (it reads the manager's Version property).
// Otherwise false with `reason` (no bus socket, no manager, access denied). Tests use it to
// skip with a message.
bool systemd_manager_reachable(bool user_bus, std::string& reason);

} // namespace tocsin::runbooks
