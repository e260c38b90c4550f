#include "rules/timezone.hpp"

#include <date/date.h>
#include <date/tz.h>

#include <exception>

namespace tocsin {

namespace {

constexpr std::int64_t ms_per_day = 86'400'000;
constexpr std::int64_t ms_per_hour = 3'600'000;

std::int64_t floor_div(std::int64_t a, std::int64_t b)
{
    const std::int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

} // namespace

std::optional<time_zone> time_zone::locate(std::string_view name, std::string& error)
{
    try {
        const date::time_zone* zone = date::locate_zone(name);
        return time_zone(zone, std::string(name));
    } catch (const std::exception& e) {
        // date::locate_zone throws std::runtime_error for a name missing from the database.
        // Loading the database on first use can throw too, for example without tzdata.
        error = "unknown time zone \"" + std::string(name) +
                "\": expected an IANA name such as \"UTC\" or \"Europe/Berlin\" (" + e.what() + ")";
        return std::nullopt;
    }
}

std::optional<time_zone> time_zone::host(std::string& error)
{
    try {
        const date::time_zone* zone = date::current_zone();
        return time_zone(zone, std::string(zone->name()));
    } catch (const std::exception& e) {
        error = std::string("cannot determine the host's time zone (") + e.what() + "); set TZ or use an IANA name";
        return std::nullopt;
    }
}

zone_offset time_zone::offset_at(time_ms t) const
{
    const date::sys_seconds instant{std::chrono::seconds{floor_div(t, 1000)}};
    const date::sys_info info = zone_->get_info(instant);
    zone_offset out;
    out.utc_offset = info.offset;
    out.dst_save = info.save;
    out.begin_s = info.begin.time_since_epoch().count();
    out.end_s = info.end.time_since_epoch().count();
    return out;
}

local_fields time_zone::local_at(time_ms t) const
{
    const zone_offset offset = offset_at(t);
    return fields_of_local_ms(t + std::chrono::duration_cast<std::chrono::milliseconds>(offset.utc_offset).count(),
                              offset.utc_offset);
}

local_fields fields_of_local_ms(std::int64_t local_ms, std::chrono::seconds utc_offset)
{
    const std::int64_t days = floor_div(local_ms, ms_per_day);
    const std::int64_t ms_of_day = local_ms - days * ms_per_day;
    const date::sys_days day{date::days{days}};
    const date::year_month_day ymd{day};

    local_fields out;
    // date::year covers -32767..32767, so the year is meaningful only within that range.
    out.year = static_cast<int>(ymd.year());
    out.month = static_cast<unsigned>(ymd.month());
    out.day = static_cast<unsigned>(ymd.day());
    out.weekday = date::weekday{day}.c_encoding();
    out.hour = static_cast<unsigned>(ms_of_day / ms_per_hour);
    out.minute = static_cast<unsigned>(ms_of_day % ms_per_hour / 60'000);
    out.second = static_cast<unsigned>(ms_of_day % 60'000 / 1000);
    out.millisecond = static_cast<unsigned>(ms_of_day % 1000);
    out.utc_offset = utc_offset;
    return out;
}

std::int64_t local_time_cache::local_ms(time_ms t)
{
    const std::int64_t t_s = floor_div(t, 1000);
    if (!valid_ || t_s < cached_.begin_s || t_s >= cached_.end_s) {
        cached_ = zone_.offset_at(t);
        valid_ = true;
    }
    return t + std::chrono::duration_cast<std::chrono::milliseconds>(cached_.utc_offset).count();
}

local_fields local_time_cache::local_at(time_ms t)
{
    const std::int64_t local = local_ms(t);
    return fields_of_local_ms(local, cached_.utc_offset);
}

unsigned local_time_cache::hour_of_day(time_ms t)
{
    const std::int64_t local = local_ms(t);
    const std::int64_t ms_of_day = local - floor_div(local, ms_per_day) * ms_per_day;
    return static_cast<unsigned>(ms_of_day / ms_per_hour);
}

unsigned local_time_cache::hour_of_week(time_ms t)
{
    const std::int64_t local = local_ms(t);
    const std::int64_t days = floor_div(local, ms_per_day);
    const std::int64_t ms_of_day = local - days * ms_per_day;
    // 1970-01-01 was a Thursday, day 3 of an ISO week that starts on Monday = 0.
    const std::int64_t day_of_week = (days % 7 + 7 + 3) % 7;
    return static_cast<unsigned>(day_of_week * 24 + ms_of_day / ms_per_hour);
}

} // namespace tocsin
