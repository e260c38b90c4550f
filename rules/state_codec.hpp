#pragma once
// A little-endian binary writer and reader for detector state (detector::save and load).
//
// Integers are written in 1, 4 or 8 bytes, least significant byte first, and a double as the
// 8 bytes of its IEEE 754 bit pattern, so a blob reads back the same on any little- or
// big-endian host and a double round-trips bit for bit. Every blob starts with a header of
// three bytes: the state tag, the layout version of that state and a variant byte that the
// detector sets from its spec (for example the reference kind of psi).
//
// The reader checks bounds on every read. A failed read (past the end, a value out of its
// range) makes the reader fail for good and return zeros, so a loader can read a whole layout
// and check ok() once before it commits anything.
//
// Thread safety: a writer or reader belongs to one thread.

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include "rules/clock.hpp"

namespace tocsin::detail {

// The first byte of a saved state: which detector wrote it. Values are stored, so never
// renumber them.
enum class state_tag : std::uint8_t {
    mean_sigma = 1,
    ewma = 2,
    mad = 3,
    seasonal = 4,
    baseline_trailing = 5,
    baseline_fixed = 6,
    psi = 7,
    ks = 8,
};

// Bound on every time stored in a state. Sample times lie within timestamp_bound_ms of the
// epoch; the windowed detectors also store sample time minus the time paused in held-out
// runs, which can reach 3 * timestamp_bound_ms below it. With stored times within this
// bound, the detectors' sums and differences of two times stay far from int64 overflow.
inline constexpr std::int64_t state_time_bound_ms = 3 * timestamp_bound_ms;

class state_writer {
public:
    explicit state_writer(std::string& out) : out_(out) {}

    void header(state_tag tag, std::uint8_t version, std::uint8_t variant)
    {
        u8(static_cast<std::uint8_t>(tag));
        u8(version);
        u8(variant);
    }

    void u8(std::uint8_t v) { out_.push_back(static_cast<char>(v)); }
    void u32(std::uint32_t v) { put(v, 4); }
    void u64(std::uint64_t v) { put(v, 8); }
    void i64(std::int64_t v) { put(static_cast<std::uint64_t>(v), 8); }
    void f64(double v) { put(std::bit_cast<std::uint64_t>(v), 8); }
    void boolean(bool v) { u8(v ? 1 : 0); }

    // A presence byte, then the value when present.
    void optional_i64(const std::optional<std::int64_t>& v)
    {
        boolean(v.has_value());
        if (v) {
            i64(*v);
        }
    }

    // The element count of an array that follows.
    void count(std::size_t n) { u64(n); }

private:
    void put(std::uint64_t v, int bytes)
    {
        for (int i = 0; i < bytes; ++i) {
            out_.push_back(static_cast<char>(static_cast<std::uint8_t>(v >> (8 * i))));
        }
    }

    std::string& out_;
};

class state_reader {
public:
    explicit state_reader(std::string_view in) : in_(in) {}

    // True while every read so far succeeded.
    bool ok() const { return ok_; }

    // True when every read succeeded and the whole input was read.
    bool done() const { return ok_ && pos_ == in_.size(); }

    void fail() { ok_ = false; }

    // Reads a header and fails unless it matches.
    bool header(state_tag tag, std::uint8_t version, std::uint8_t variant)
    {
        const bool match = u8() == static_cast<std::uint8_t>(tag) && u8() == version && u8() == variant;
        if (!match) {
            fail();
        }
        return ok_;
    }

    std::uint8_t u8() { return static_cast<std::uint8_t>(get(1)); }
    std::uint32_t u32() { return static_cast<std::uint32_t>(get(4)); }
    std::uint64_t u64() { return get(8); }
    std::int64_t i64() { return static_cast<std::int64_t>(get(8)); }
    double f64() { return std::bit_cast<double>(get(8)); }

    // A byte that must be 0 or 1.
    bool boolean()
    {
        const std::uint8_t v = u8();
        if (v > 1) {
            fail();
        }
        return v == 1;
    }

    // An integer that must lie in [min, max].
    std::int64_t i64_in(std::int64_t min, std::int64_t max)
    {
        const std::int64_t v = i64();
        if (v < min || v > max) {
            fail();
            return 0;
        }
        return v;
    }

    // A time within state_time_bound_ms of the epoch.
    time_ms time() { return i64_in(-state_time_bound_ms, state_time_bound_ms); }

    std::optional<time_ms> optional_time()
    {
        if (!boolean()) {
            return std::nullopt;
        }
        const time_ms t = time();
        return ok_ ? std::optional<time_ms>(t) : std::nullopt;
    }

    // A double that must be finite.
    double finite_f64()
    {
        const double v = f64();
        if (!std::isfinite(v)) {
            fail();
            return 0;
        }
        return v;
    }

    // Reads the element count of an array whose elements take at least element_bytes each.
    // Fails when the count exceeds max_count or when the rest of the input is too short to
    // hold that many elements, so a corrupt count never makes the caller allocate.
    std::size_t count(std::size_t max_count, std::size_t element_bytes)
    {
        const std::uint64_t n = u64();
        const std::size_t remaining = in_.size() - pos_;
        if (!ok_ || n > max_count || (element_bytes > 0 && n > remaining / element_bytes)) {
            fail();
            return 0;
        }
        return static_cast<std::size_t>(n);
    }

private:
    std::uint64_t get(std::size_t bytes)
    {
        if (!ok_ || in_.size() - pos_ < bytes) {
            ok_ = false;
            return 0;
        }
        std::uint64_t v = 0;
        for (std::size_t i = 0; i < bytes; ++i) {
            v |= static_cast<std::uint64_t>(static_cast<std::uint8_t>(in_[pos_ + i])) << (8 * i);
        }
        pos_ += bytes;
        return v;
    }

    std::string_view in_;
    std::size_t pos_ = 0;
    bool ok_ = true;
};

} // namespace tocsin::detail
