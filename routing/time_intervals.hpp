#pragma once
// Alertmanager's time intervals: when a route's notifications are muted (mute_time_intervals)
// or allowed (active_time_intervals).
//
// A spec holds when every field it sets holds for the instant's local time in its location
// (UTC when none is given, never the host's zone unless the location is "Local"). Times are
// [start, end) minutes of the day, with 24:00 as the end of the day. Days of the month count
// from the end of the actual month when negative (-1 is the last day). A named interval holds
// when any of its specs does.
//
// Thread safety: immutable after loading; may be shared between threads.

#include <optional>
#include <vector>

#include "rules/clock.hpp"
#include "rules/timezone.hpp"

namespace tocsin {

struct clock_range {
    int start = 0;  // minutes since local midnight, inclusive
    int end = 1440; // exclusive; 1440 is 24:00
};

struct value_range {
    int first = 0;
    int last = 0;
};

struct time_interval_spec {
    std::vector<clock_range> times;
    std::vector<value_range> weekdays;      // 0 = Sunday .. 6 = Saturday
    std::vector<value_range> days_of_month; // 1 to 31, or -31 to -1 from the month's end
    std::vector<value_range> months;        // 1 = January
    std::vector<value_range> years;
    std::optional<time_zone> location;      // UTC when empty

    bool contains(time_ms t) const;
};

// True when any spec contains t.
bool any_contains(const std::vector<time_interval_spec>& specs, time_ms t);

} // namespace tocsin
