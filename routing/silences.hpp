#pragma once
// Silences: sets of label matchers that mute matching alerts between a start and an end time,
// with Alertmanager's semantics.
//
// - A silence is pending before starts_at, active in [starts_at, ends_at) and expired from
//   ends_at on. An active silence mutes every alert whose labels match all its matchers, with
//   regexes fully anchored and an absent label read as the empty string.
// - Creating a silence whose start lies in the past starts it now.
// - Setting a silence by id updates it in place when the matchers stay the same and the change
//   keeps its history true. A pending silence may change its times (to a start not in the
//   past), comment and author. An active one may change its end, comment and author.
// - Any other change expires the old silence and creates a new one with a new id, as
//   Alertmanager does.
// - Expiring sets the end to now (and, for a pending silence, the start too). Expired silences
//   are kept for a retention period, then dropped.
// - Every change is recorded for the store (take_changes()), so silences survive a restart.
//
// Thread safety: none. One owner calls every member function.

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "rules/clock.hpp"
#include "rules/labels.hpp"
#include "rules/matcher.hpp"

namespace tocsin {

enum class silence_state : std::uint8_t { pending, active, expired };
const char* to_string(silence_state s);

struct silence {
    std::string id;
    std::vector<label_matcher> matchers;
    time_ms starts_at = 0;
    time_ms ends_at = 0;
    time_ms updated_at = 0;
    std::string created_by;
    std::string comment;

    silence_state state_at(time_ms now) const;
    // True when every matcher matches `labels`.
    bool matches(const label_set& labels) const;
};

// Bounds on what one client can store.
struct silence_limits {
    std::size_t max_silences = 10'000;         // pending and active ones; expired ones do not count
    std::size_t max_matchers = 64;             // per silence
    std::size_t max_text_bytes = 64 * 1024;    // comment plus author plus matcher names and values
    std::chrono::milliseconds retention{std::chrono::hours(120)}; // how long expired silences stay
};

// The outcome of set() and expire(): the silence's id, or an error with the HTTP status that
// fits it (400 invalid, 404 unknown id, 409 already expired, 429 over a limit).
struct silence_result {
    std::string id;
    int status = 200;
    std::string error;
    bool ok() const { return error.empty(); }
};

struct silence_changes {
    std::vector<silence> upserted;
    std::vector<std::string> deleted; // ids
    bool empty() const { return upserted.empty() && deleted.empty(); }
};

class silence_store {
public:
    // `make_id` returns a fresh id for each new silence (a random UUID in the daemon).
    silence_store(silence_limits limits, std::function<std::string()> make_id);

    // Checks a silence as the API received it. Returns an empty string when it is valid, or the
    // problem: no matchers, matchers that all match the empty string (which would mute every
    // alert lacking the label), an end not after the start, an end in the past, over a limit.
    std::string validate(const silence& s, time_ms now) const;

    // Creates a silence (empty id) or updates the silence with that id, following the rules in
    // the header comment. Returns the id it is stored under, which is new when the update had
    // to replace the silence.
    silence_result set(silence s, time_ms now);

    // Ends a pending or active silence now.
    silence_result expire(const std::string& id, time_ms now);

    const silence* find(const std::string& id) const;

    // Silences that pass every filter matcher, in Alertmanager's order: active ones by end,
    // then pending ones by start, then expired ones, latest end first. As in Alertmanager, a
    // filter matcher is applied to the value of the silence's equality matcher of that name,
    // or to the empty string when it has none.
    std::vector<const silence*> list(std::span<const label_matcher> filter, time_ms now) const;

    // Ids of the active silences that mute `labels`, sorted.
    std::vector<std::string> muted_by(const label_set& labels, time_ms now) const;
    bool mutes(const label_set& labels, time_ms now) const;

    // Drops silences that expired more than the retention ago.
    void collect_garbage(time_ms now);

    // Loads silences saved by a previous process, before the first set(). Silences beyond the
    // retention are dropped; invalid ones are skipped and counted in the return value.
    std::size_t restore(std::vector<silence> saved, time_ms now);

    silence_changes take_changes();

    // Puts back the version of silence `id` from before a set() or expire() whose change could
    // not be saved, or removes it when `before` is empty (it was created by that call). The
    // pending change of that id is dropped.
    void revert(const std::string& id, const std::optional<silence>& before);

    std::size_t size() const { return silences_.size(); }
    // Counts every change to the set of silences, so a reader can tell that muting may differ.
    std::uint64_t generation() const { return generation_; }
    // True when a silence starts or ends in (after, until]: muting may differ without a change.
    bool starts_or_ends_between(time_ms after, time_ms until) const;
    // Counts by state, indexed by silence_state.
    std::array<std::size_t, 3> counts(time_ms now) const;

    void set_limits(const silence_limits& limits) { limits_ = limits; }

private:
    void store(silence s);

    silence_limits limits_;
    std::function<std::string()> make_id_;
    std::unordered_map<std::string, silence> silences_;
    std::unordered_map<std::string, bool> dirty_; // id -> true when upserted, false when deleted
    std::uint64_t generation_ = 0;
};

// A random version 4 UUID in its canonical text form, as Alertmanager uses for silence ids.
std::string random_uuid();

} // namespace tocsin
