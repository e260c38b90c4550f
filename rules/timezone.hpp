#pragma once
// IANA time zones for rules that depend on local time: seasonal detectors (hour of the day or
// of the week) and, later, time intervals. A thin wrapper over Howard Hinnant's date library
// (date/tz.h), which reads the operating system's tz database (/usr/share/zoneinfo, Debian
// package tzdata), so daylight saving time follows the installed rules.
//
// NOTE: date 3.0.1 (Debian 12) with the system database applies only the transitions listed
// in the zone files, which end in 2037: later instants keep the last listed offset (Berlin in
// June 2100 reads +01:00, not +02:00).
//
// The header does not include date/tz.h: that library's compile definitions are private to
// tocsin_rules, and callers need only the handle and the local calendar fields.
//
// Thread safety: a time_zone is an immutable handle and may be shared between threads.
// A local_time_cache belongs to one thread.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "rules/clock.hpp"

namespace date {
class time_zone;
} // namespace date

namespace tocsin {

// The UTC offset in force at an instant, and the UTC interval [begin_s, end_s) in seconds
// since the epoch over which the zone keeps that offset.
struct zone_offset {
    std::chrono::seconds utc_offset{0};
    std::chrono::minutes dst_save{0}; // nonzero while daylight saving time is in force
    std::int64_t begin_s = 0;
    std::int64_t end_s = 0;
};

// The local calendar fields of an instant.
struct local_fields {
    int year = 1970;
    unsigned month = 1;   // 1 = January
    unsigned day = 1;     // day of the month, 1-31
    unsigned weekday = 4; // 0 = Sunday .. 6 = Saturday, as struct tm's tm_wday
    unsigned hour = 0;    // 0-23
    unsigned minute = 0;
    unsigned second = 0;
    unsigned millisecond = 0;
    std::chrono::seconds utc_offset{0};
};

class time_zone {
public:
    // Finds the zone with this IANA name ("Europe/Berlin", "UTC"). Returns nullopt and sets
    // `error` when the name is not in the tz database.
    static std::optional<time_zone> locate(std::string_view name, std::string& error);

    // The host's zone (TZ, else /etc/localtime), for Alertmanager's location "Local".
    static std::optional<time_zone> host(std::string& error);

    const std::string& name() const { return name_; }

    // Returns the offset in force at t and the interval over which it holds.
    zone_offset offset_at(time_ms t) const;

    // Returns the local calendar fields of t.
    local_fields local_at(time_ms t) const;

private:
    time_zone(const date::time_zone* zone, std::string name) : zone_(zone), name_(std::move(name)) {}

    // Owned by the date library's process-wide tz database, which lives until exit.
    const date::time_zone* zone_;
    std::string name_;
};

// Local milliseconds (t + offset) to calendar fields, without a zone lookup.
local_fields fields_of_local_ms(std::int64_t local_ms, std::chrono::seconds utc_offset);

// Local fields with the zone's offset interval cached, so that consecutive instants with the
// same offset (all of them between two DST transitions) cost a few integer operations.
class local_time_cache {
public:
    explicit local_time_cache(time_zone zone) : zone_(std::move(zone)) {}

    const time_zone& zone() const { return zone_; }

    // Returns the local milliseconds since the epoch of t: t plus the UTC offset at t.
    std::int64_t local_ms(time_ms t);

    local_fields local_at(time_ms t);

    // 0-23.
    unsigned hour_of_day(time_ms t);

    // 0-167, counted from Monday 00:00 local time (ISO 8601 weeks start on Monday).
    unsigned hour_of_week(time_ms t);

private:
    time_zone zone_;
    zone_offset cached_{};
    bool valid_ = false;
};

} // namespace tocsin
