#include "routing/silences.hpp"

#include <algorithm>
#include <random>
#include <utility>

#include <fmt/format.h>

#include "rules/sample_time.hpp"

namespace tocsin {

const char* to_string(silence_state s)
{
    switch (s) {
    case silence_state::pending: return "pending";
    case silence_state::active: return "active";
    case silence_state::expired: return "expired";
    }
    return "unknown";
}

silence_state silence::state_at(time_ms now) const
{
    if (ends_at <= now) {
        return silence_state::expired;
    }
    return starts_at <= now ? silence_state::active : silence_state::pending;
}

bool silence::matches(const label_set& labels) const
{
    for (const label_matcher& m : matchers) {
        if (!m.matches(labels)) {
            return false;
        }
    }
    return true;
}

namespace {

std::vector<std::string> matcher_texts(const silence& s)
{
    std::vector<std::string> out;
    out.reserve(s.matchers.size());
    for (const label_matcher& m : s.matchers) {
        out.push_back(m.to_string());
    }
    std::sort(out.begin(), out.end());
    return out;
}

// True when `next` can replace `previous` under the same id without rewriting history: a
// pending silence that stays pending, or an active one that keeps its start and matchers.
bool can_update_in_place(const silence& previous, const silence& next, time_ms now)
{
    if (matcher_texts(previous) != matcher_texts(next)) {
        return false;
    }
    switch (previous.state_at(now)) {
    case silence_state::expired: return false;
    case silence_state::active: return next.starts_at == previous.starts_at && next.ends_at >= now;
    case silence_state::pending: return next.starts_at >= now;
    }
    return false;
}

// The position of a state in listings: active, pending, expired.
int list_rank(silence_state s)
{
    switch (s) {
    case silence_state::active: return 0;
    case silence_state::pending: return 1;
    case silence_state::expired: return 2;
    }
    return 2;
}

} // namespace

silence_store::silence_store(silence_limits limits, std::function<std::string()> make_id)
    : limits_(limits), make_id_(std::move(make_id))
{
}

std::string silence_store::validate(const silence& s, time_ms now) const
{
    if (s.matchers.empty()) {
        return "the silence has no matchers; add at least one, such as alertname=\"DiskFull\"";
    }
    if (s.matchers.size() > limits_.max_matchers) {
        return fmt::format("the silence has {} matchers, more than the limit of {}; use fewer matchers or a regex",
                           s.matchers.size(), limits_.max_matchers);
    }
    const bool any_requires_value =
        std::any_of(s.matchers.begin(), s.matchers.end(), [](const label_matcher& m) { return !m.matches(""); });
    if (!any_requires_value) {
        return "every matcher of the silence matches the empty string, so it would mute every alert that lacks "
               "these labels; add a matcher that needs a value, such as alertname=\"DiskFull\"";
    }
    std::size_t text_bytes = s.created_by.size() + s.comment.size();
    for (const label_matcher& m : s.matchers) {
        text_bytes += m.name().size() + m.value().size();
    }
    if (text_bytes > limits_.max_text_bytes) {
        return fmt::format("the silence's comment, author and matchers take {} bytes, more than the limit of {}; "
                           "shorten the comment",
                           text_bytes, limits_.max_text_bytes);
    }
    if (s.created_by.empty()) {
        return "createdBy is empty; give the name of the person or tool that creates the silence";
    }
    if (s.comment.empty()) {
        return "comment is empty; say why the alerts are silenced, for example a ticket or a maintenance window";
    }
    if (s.ends_at <= s.starts_at) {
        return fmt::format("endsAt ({}) is not after startsAt ({}); set an end after the start",
                           format_rfc3339(s.ends_at), format_rfc3339(s.starts_at));
    }
    if (s.ends_at <= now) {
        return fmt::format("endsAt ({}) is in the past; set an end in the future", format_rfc3339(s.ends_at));
    }
    return {};
}

silence_result silence_store::set(silence s, time_ms now)
{
    if (std::string problem = validate(s, now); !problem.empty()) {
        return {"", 400, std::move(problem)};
    }

    const silence* previous = nullptr;
    if (!s.id.empty()) {
        previous = find(s.id);
        if (previous == nullptr) {
            return {"", 404,
                    fmt::format("silence {} not found; leave the id out to create a new silence", s.id)};
        }
        if (can_update_in_place(*previous, s, now)) {
            s.updated_at = now;
            std::string id = s.id;
            store(std::move(s));
            return {std::move(id), 200, ""};
        }
    }

    std::size_t unexpired = 0;
    for (const auto& [id, existing] : silences_) {
        if (existing.state_at(now) != silence_state::expired) {
            ++unexpired;
        }
    }
    const bool replaces_unexpired = previous != nullptr && previous->state_at(now) != silence_state::expired;
    if (!replaces_unexpired && unexpired >= limits_.max_silences) {
        return {"", 429,
                fmt::format("{} silences are pending or active, the limit; expire silences that are no longer "
                            "needed or raise limits.max_silences",
                            unexpired)};
    }
    if (replaces_unexpired) {
        // The change rewrites history (other matchers, an earlier start), so the old silence
        // ends now and a new one takes over.
        expire(previous->id, now);
    }
    s.id = make_id_();
    s.starts_at = std::max(s.starts_at, now);
    s.updated_at = now;
    std::string id = s.id;
    store(std::move(s));
    return {std::move(id), 200, ""};
}

silence_result silence_store::expire(const std::string& id, time_ms now)
{
    auto it = silences_.find(id);
    if (it == silences_.end()) {
        return {"", 404, fmt::format("silence {} not found", id)};
    }
    silence& s = it->second;
    switch (s.state_at(now)) {
    case silence_state::expired:
        return {"", 409, fmt::format("silence {} already expired at {}", id, format_rfc3339(s.ends_at))};
    case silence_state::pending: s.starts_at = now; break;
    case silence_state::active: break;
    }
    s.ends_at = now;
    s.updated_at = now;
    dirty_[id] = true;
    return {id, 200, ""};
}

const silence* silence_store::find(const std::string& id) const
{
    auto it = silences_.find(id);
    return it == silences_.end() ? nullptr : &it->second;
}

std::vector<const silence*> silence_store::list(std::span<const label_matcher> filter, time_ms now) const
{
    std::vector<const silence*> out;
    for (const auto& [id, s] : silences_) {
        bool pass = true;
        for (const label_matcher& f : filter) {
            std::string_view value;
            for (const label_matcher& m : s.matchers) {
                if (m.op() == match_op::equal && m.name() == f.name()) {
                    value = m.value();
                    break;
                }
            }
            if (!f.matches(value)) {
                pass = false;
                break;
            }
        }
        if (pass) {
            out.push_back(&s);
        }
    }
    std::sort(out.begin(), out.end(), [now](const silence* a, const silence* b) {
        const int ra = list_rank(a->state_at(now));
        const int rb = list_rank(b->state_at(now));
        if (ra != rb) {
            return ra < rb;
        }
        // Active by end, pending by start, expired by end with the latest first.
        const time_ms ka = ra == 1 ? a->starts_at : (ra == 0 ? a->ends_at : -a->ends_at);
        const time_ms kb = rb == 1 ? b->starts_at : (rb == 0 ? b->ends_at : -b->ends_at);
        if (ka != kb) {
            return ka < kb;
        }
        return a->id < b->id;
    });
    return out;
}

std::vector<std::string> silence_store::muted_by(const label_set& labels, time_ms now) const
{
    // NOTE: a linear scan of every silence per alert; fine for thousands of silences, an index
    // on equality matchers would be needed for far more.
    std::vector<std::string> out;
    for (const auto& [id, s] : silences_) {
        if (s.state_at(now) == silence_state::active && s.matches(labels)) {
            out.push_back(id);
        }
    }
    std::sort(out.begin(), out.end());
    return out;
}

bool silence_store::mutes(const label_set& labels, time_ms now) const
{
    for (const auto& [id, s] : silences_) {
        if (s.state_at(now) == silence_state::active && s.matches(labels)) {
            return true;
        }
    }
    return false;
}

void silence_store::collect_garbage(time_ms now)
{
    const time_ms retention = limits_.retention.count();
    for (auto it = silences_.begin(); it != silences_.end();) {
        if (it->second.ends_at <= now - retention) {
            dirty_[it->first] = false;
            it = silences_.erase(it);
            ++generation_;
        } else {
            ++it;
        }
    }
}

std::size_t silence_store::restore(std::vector<silence> saved, time_ms now)
{
    std::size_t skipped = 0;
    for (silence& s : saved) {
        if (s.id.empty() || s.matchers.empty() || s.ends_at < s.starts_at) {
            ++skipped;
            continue;
        }
        const std::string id = s.id;
        silences_[id] = std::move(s);
    ++generation_;
        ++generation_;
    }
    collect_garbage(now);
    return skipped;
}

silence_changes silence_store::take_changes()
{
    silence_changes out;
    for (const auto& [id, upserted] : dirty_) {
        if (upserted) {
            if (const silence* s = find(id)) {
                out.upserted.push_back(*s);
            }
        } else {
            out.deleted.push_back(id);
        }
    }
    dirty_.clear();
    return out;
}

void silence_store::revert(const std::string& id, const std::optional<silence>& before)
{
    dirty_.erase(id);
    if (before) {
        silences_[id] = *before;
        ++generation_;
    } else {
        silences_.erase(id);
        ++generation_;
    }
}

std::array<std::size_t, 3> silence_store::counts(time_ms now) const
{
    std::array<std::size_t, 3> out{};
    for (const auto& [id, s] : silences_) {
        ++out[static_cast<std::size_t>(s.state_at(now))];
    }
    return out;
}

void silence_store::store(silence s)
{
    const std::string id = s.id;
    dirty_[id] = true;
    silences_[id] = std::move(s);
}

std::string random_uuid()
{
    static thread_local std::mt19937_64 generator{std::random_device{}()};
    const std::uint64_t high = generator();
    const std::uint64_t low = generator();
    // Version 4 in the high nibble of byte 6, variant 10 in the top bits of byte 8.
    const std::uint64_t h = (high & 0xffffffffffff0fffull) | 0x0000000000004000ull;
    const std::uint64_t l = (low & 0x3fffffffffffffffull) | 0x8000000000000000ull;
    return fmt::format("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", h >> 32, (h >> 16) & 0xffff, h & 0xffff, l >> 48,
                       l & 0xffffffffffffull);
}

} // namespace tocsin

namespace tocsin {

bool silence_store::starts_or_ends_between(time_ms after, time_ms until) const
{
    for (const auto& [id, s] : silences_) {
        if ((s.starts_at > after && s.starts_at <= until) || (s.ends_at > after && s.ends_at <= until)) {
            return true;
        }
    }
    return false;
}

} // namespace tocsin
