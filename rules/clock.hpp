#pragma once
// Injected time sources. Detectors and the alert state machine run on sample time. A clock
// drives only what has no samples (no-data timers) and the timestamp limits, so tests pass a
// manual_clock and advance it instead of sleeping.

#include <atomic>
#include <chrono>
#include <cstdint>

namespace tocsin {

// Milliseconds since the Unix epoch, the unit of Prometheus sample timestamps.
using time_ms = std::int64_t;

// Samples must lie within this distance of the epoch (about 31,700 years either way). With
// durations capped at 100 years, `timestamp +- duration` then never overflows int64.
constexpr time_ms timestamp_bound_ms = 1'000'000'000'000'000;

// Thread safety: now_ms() may be called from any thread.
class clock {
public:
    virtual ~clock() = default;
    virtual time_ms now_ms() const = 0;
};

class system_clock final : public clock {
public:
    time_ms now_ms() const override
    {
        using namespace std::chrono;
        return duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    }
};

// A clock that moves only when a test advances it.
class manual_clock final : public clock {
public:
    explicit manual_clock(time_ms start = 0) : now_(start) {}
    time_ms now_ms() const override { return now_.load(); }
    void set_ms(time_ms t) { now_.store(t); }
    void advance_ms(time_ms delta) { now_.fetch_add(delta); }

private:
    std::atomic<time_ms> now_;
};

} // namespace tocsin
