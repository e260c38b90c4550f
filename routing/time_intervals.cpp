#include "routing/time_intervals.hpp"

#include <algorithm>

namespace tocsin {

namespace {

bool in_ranges(const std::vector<value_range>& ranges, int value)
{
    return ranges.empty() || std::any_of(ranges.begin(), ranges.end(), [value](const value_range& r) {
               return value >= r.first && value <= r.last;
           });
}

bool leap_year(int year)
{
    return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

int days_in_month(int year, unsigned month)
{
    constexpr int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return month == 2 && leap_year(year) ? 29 : days[month - 1];
}

// A day of the month as written (negative from the end) turned into a day of this month.
int resolve_day(int day, int month_days)
{
    return day < 0 ? month_days + day + 1 : day;
}

} // namespace

bool time_interval_spec::contains(time_ms t) const
{
    const local_fields f = location ? location->local_at(t) : fields_of_local_ms(t, std::chrono::seconds(0));
    if (!times.empty()) {
        const int minute = static_cast<int>(f.hour * 60 + f.minute);
        const bool in_time = std::any_of(times.begin(), times.end(), [minute](const clock_range& r) {
            return minute >= r.start && minute < r.end;
        });
        if (!in_time) {
            return false;
        }
    }
    if (!in_ranges(weekdays, static_cast<int>(f.weekday)) || !in_ranges(months, static_cast<int>(f.month)) ||
        !in_ranges(years, f.year)) {
        return false;
    }
    if (!days_of_month.empty()) {
        const int month_days = days_in_month(f.year, f.month);
        const int day = static_cast<int>(f.day);
        const bool in_days = std::any_of(days_of_month.begin(), days_of_month.end(), [&](const value_range& r) {
            // A range past the month's end is clamped to it, as Alertmanager does.
            const int first = std::clamp(resolve_day(r.first, month_days), 1, month_days);
            const int last = std::clamp(resolve_day(r.last, month_days), 1, month_days);
            return day >= first && day <= last;
        });
        if (!in_days) {
            return false;
        }
    }
    return true;
}

bool any_contains(const std::vector<time_interval_spec>& specs, time_ms t)
{
    return std::any_of(specs.begin(), specs.end(), [t](const time_interval_spec& s) { return s.contains(t); });
}

} // namespace tocsin
