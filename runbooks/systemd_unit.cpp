#include "runbooks/systemd_unit.hpp"

#include <cerrno>
#include <cstring>
#include <memory>
#include <set>

#include <fmt/format.h>
#include <systemd/sd-bus.h>

#include "runbooks/arg_template.hpp"

namespace tocsin::runbooks {

namespace {

constexpr const char* destination = "org.freedesktop.systemd1";
constexpr const char* manager_path = "/org/freedesktop/systemd1";
constexpr const char* manager_interface = "org.freedesktop.systemd1.Manager";

struct bus_deleter {
    void operator()(sd_bus* bus) const { sd_bus_flush_close_unref(bus); }
};
using bus_ptr = std::unique_ptr<sd_bus, bus_deleter>;

struct error_guard {
    sd_bus_error error = SD_BUS_ERROR_NULL;
    ~error_guard() { sd_bus_error_free(&error); }
    std::string text(int r) const
    {
        if (error.message != nullptr) {
            return error.message;
        }
        return std::strerror(-r);
    }
};

struct message_deleter {
    void operator()(sd_bus_message* m) const { sd_bus_message_unref(m); }
};
using message_ptr = std::unique_ptr<sd_bus_message, message_deleter>;

struct slot_deleter {
    void operator()(sd_bus_slot* s) const { sd_bus_slot_unref(s); }
};
using slot_ptr = std::unique_ptr<sd_bus_slot, slot_deleter>;

bus_ptr open_bus(bool user_bus, std::string& error)
{
    sd_bus* raw = nullptr;
    const int r = user_bus ? sd_bus_open_user(&raw) : sd_bus_open_system(&raw);
    if (r < 0) {
        error = fmt::format("cannot connect to the {} bus: {}", user_bus ? "user" : "system", std::strerror(-r));
        return nullptr;
    }
    return bus_ptr(raw);
}

struct job_watch {
    std::string job; // set once the method call returned
    std::set<std::pair<std::string, std::string>> removed; // (job path, result)
};

int on_job_removed(sd_bus_message* m, void* userdata, sd_bus_error*)
{
    auto* watch = static_cast<job_watch*>(userdata);
    uint32_t id = 0;
    const char* path = nullptr;
    const char* unit = nullptr;
    const char* result = nullptr;
    if (sd_bus_message_read(m, "uoss", &id, &path, &unit, &result) >= 0 && path && result) {
        watch->removed.emplace(path, result);
    }
    return 0;
}

} // namespace

bool systemd_manager_reachable(bool user_bus, std::string& reason)
{
    auto bus = open_bus(user_bus, reason);
    if (!bus) {
        return false;
    }
    error_guard err;
    char* version = nullptr;
    const int r = sd_bus_get_property_string(bus.get(), destination, manager_path, manager_interface, "Version",
                                             &err.error, &version);
    if (r < 0) {
        reason = fmt::format("no systemd manager answers on the {} bus: {}", user_bus ? "user" : "system",
                             err.text(r));
        return false;
    }
    std::free(version);
    return true;
}

service_result control_unit(const unit_request& request)
{
    using namespace std::chrono;
    const auto deadline = steady_clock::now() + request.timeout;
    std::string error;
    auto bus = open_bus(request.user_bus, error);
    if (!bus) {
        return {false, error};
    }
    job_watch watch;
    sd_bus_slot* raw_slot = nullptr;
    int r = sd_bus_match_signal(bus.get(), &raw_slot, destination, manager_path, manager_interface, "JobRemoved",
                                on_job_removed, &watch);
    if (r < 0) {
        return {false, fmt::format("cannot watch systemd jobs: {}", std::strerror(-r))};
    }
    slot_ptr slot(raw_slot);

    const char* method = request.restart ? "RestartUnit" : "StopUnit";
    error_guard err;
    sd_bus_message* raw_reply = nullptr;
    r = sd_bus_call_method(bus.get(), destination, manager_path, manager_interface, method, &err.error, &raw_reply,
                           "ss", request.unit.c_str(), "replace");
    message_ptr reply(raw_reply);
    if (r < 0) {
        return {false, fmt::format("{} {} failed: {}", method, quote_value(request.unit), err.text(r))};
    }
    const char* job = nullptr;
    r = sd_bus_message_read(reply.get(), "o", &job);
    if (r < 0 || job == nullptr) {
        return {false, fmt::format("{} {}: unexpected reply: {}", method, quote_value(request.unit), std::strerror(-r))};
    }
    watch.job = job;

    for (;;) {
        for (const auto& [path, result] : watch.removed) {
            if (path == watch.job) {
                if (result == "done") {
                    return {true, fmt::format("{} {}: job {} done", method, request.unit, watch.job)};
                }
                return {false, fmt::format("{} {}: job {} ended with result {}", method, request.unit, watch.job,
                                           result)};
            }
        }
        r = sd_bus_process(bus.get(), nullptr);
        if (r < 0) {
            return {false, fmt::format("{} {}: bus error while waiting for job {}: {}", method, request.unit,
                                       watch.job, std::strerror(-r))};
        }
        if (r > 0) {
            continue;
        }
        const auto now = steady_clock::now();
        if (now >= deadline) {
            return {false, fmt::format("{} {}: job {} did not finish within the step timeout", method, request.unit,
                                       watch.job)};
        }
        const auto left = duration_cast<microseconds>(deadline - now).count();
        r = sd_bus_wait(bus.get(), static_cast<uint64_t>(left));
        if (r < 0 && r != -EINTR) {
            return {false, fmt::format("{} {}: bus error while waiting for job {}: {}", method, request.unit,
                                       watch.job, std::strerror(-r))};
        }
    }
}

} // namespace tocsin::runbooks
