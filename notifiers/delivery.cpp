// The outbox scheduler and the classification of receivers' responses. There is no I/O here: the
// sender reports each attempt through complete(), and every time comes from the injected clock.

#include "notifiers/delivery.hpp"

#include <algorithm>
#include <array>
#include <cassert>
#include <chrono>
#include <cmath>
#include <limits>
#include <set>
#include <stdexcept>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace tocsin {

namespace {

constexpr std::size_t max_detail_bytes = 512;
constexpr time_ms max_retry_after_ms = 24 * 3'600'000;
// The longest Retry-After that complete() waits for.
constexpr milliseconds max_honoured_retry_after{3'600'000};

// PagerDuty documents no Retry-After for the Events API, and its rate-limit advice is to retry a
// 429 no sooner than 30 s later.
constexpr milliseconds pagerduty_rate_limited_wait{30'000};
// A Slack 429 without Retry-After waits at least 1 s. The backoff may make the wait longer.
constexpr milliseconds slack_rate_limited_wait{1'000};

bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

std::string_view trim(std::string_view text)
{
    while (!text.empty() && is_space(text.front())) {
        text.remove_prefix(1);
    }
    while (!text.empty() && is_space(text.back())) {
        text.remove_suffix(1);
    }
    return text;
}

// The receiver's text as one log-safe line of at most 512 bytes: control characters become
// spaces, and the cut never splits a UTF-8 sequence.
std::string make_detail(std::string_view text)
{
    text = trim(text);
    std::size_t length = text.size();
    if (length > max_detail_bytes) {
        length = max_detail_bytes;
        // Step back over continuation bytes (10xxxxxx) so the cut lands before a lead byte.
        while (length > 0 && (static_cast<unsigned char>(text[length]) & 0xc0) == 0x80) {
            --length;
        }
    }
    std::string out(text.substr(0, length));
    for (char& c : out) {
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
            c = ' ';
        }
    }
    return out;
}

// PagerDuty's error object: {"status": ..., "message": ..., "errors": [...]}. Returns the message
// and the errors joined, or the raw body when it is not that shape.
std::string pagerduty_error_text(std::string_view body)
{
    auto json = nlohmann::json::parse(body, nullptr, false);
    if (json.is_discarded() || !json.is_object()) {
        return std::string(body);
    }
    std::string text;
    if (auto it = json.find("message"); it != json.end() && it->is_string()) {
        text = it->get<std::string>();
    } else if (auto status = json.find("status"); status != json.end() && status->is_string()) {
        text = status->get<std::string>();
    }
    if (auto errors = json.find("errors"); errors != json.end() && errors->is_array()) {
        std::string joined;
        for (const auto& error : *errors) {
            if (!joined.empty()) {
                joined += "; ";
            }
            joined += error.is_string() ? error.get<std::string>() : error.dump();
        }
        if (!joined.empty()) {
            text = text.empty() ? joined : text + ": " + joined;
        }
    }
    return text.empty() ? std::string(body) : text;
}

// A Slack Web API error body {"ok": false, "error": "<code>"} gives its code; anything else is
// kept as sent.
std::string slack_error_text(std::string_view body)
{
    auto json = nlohmann::json::parse(body, nullptr, false);
    if (!json.is_discarded() && json.is_object()) {
        if (auto it = json.find("error"); it != json.end() && it->is_string()) {
            return it->get<std::string>();
        }
    }
    return std::string(body);
}

attempt_result make_result(attempt_outcome outcome, int status, std::string reason, std::string_view detail)
{
    attempt_result result;
    result.outcome = outcome;
    result.http_status = status;
    result.reason = std::move(reason);
    result.detail = make_detail(detail);
    return result;
}

// Builds the result of a 429 or 5xx response. Retry-After is honoured for both, because RFC 9110
// allows it on 503. A 429 without one waits at least `rate_limited_wait`.
attempt_result retry_result(int status, std::string_view retry_after_header, std::string detail, time_ms now,
                            std::optional<milliseconds> rate_limited_wait)
{
    const bool rate_limited = status == 429;
    auto result = make_result(attempt_outcome::retry, status, rate_limited ? "rate_limited" : "server_error", detail);
    if (!retry_after_header.empty()) {
        result.retry_after = parse_retry_after(retry_after_header, now);
    }
    if (!result.retry_after && rate_limited) {
        result.retry_after = rate_limited_wait;
    }
    return result;
}

attempt_result classify_slack_web_api(int status, std::string_view retry_after_header, std::string_view body,
                                      time_ms now)
{
    auto json = nlohmann::json::parse(body, nullptr, false);
    auto ok = json.is_object() ? json.find("ok") : json.end();
    if (json.is_discarded() || !json.is_object() || ok == json.end() || !ok->is_boolean()) {
        // Slack's Web API always returns a JSON object with "ok". Anything else came from something
        // in between (a proxy, a truncated read), so a later attempt may succeed.
        return make_result(attempt_outcome::retry, status, "bad_response", body);
    }
    if (ok->get<bool>()) {
        auto result = make_result(attempt_outcome::delivered, status, "delivered", {});
        if (auto channel = json.find("channel"); channel != json.end() && channel->is_string()) {
            result.slack_channel = channel->get<std::string>();
        }
        // ts identifies the message and must stay the exact string Slack sent.
        if (auto ts = json.find("ts"); ts != json.end() && ts->is_string()) {
            result.slack_ts = ts->get<std::string>();
        }
        return result;
    }
    std::string error = slack_error_text(body);
    if (error == "ratelimited" || error == "rate_limited") {
        auto result = make_result(attempt_outcome::retry, status, "rate_limited", error);
        if (!retry_after_header.empty()) {
            result.retry_after = parse_retry_after(retry_after_header, now);
        }
        if (!result.retry_after) {
            result.retry_after = slack_rate_limited_wait;
        }
        return result;
    }
    return make_result(attempt_outcome::failed, status, "client_error", error);
}

} // namespace

attempt_result classify_response(integration_kind kind, bool slack_web_api, int status,
                                 std::string_view retry_after_header, std::string_view body, time_ms now)
{
    const bool success = status >= 200 && status <= 299;
    const bool slack = kind == integration_kind::slack;
    const bool pagerduty = kind == integration_kind::pagerduty;

    if (success) {
        if (slack && slack_web_api) {
            return classify_slack_web_api(status, retry_after_header, body, now);
        }
        if (slack) {
            // An incoming webhook returns exactly "ok". Any other 2xx body, JSON included, means the
            // URL is not a Slack webhook, so resending would not help.
            std::string_view text = body;
            while (!text.empty() && is_space(text.back())) {
                text.remove_suffix(1);
            }
            if (text == "ok") {
                return make_result(attempt_outcome::delivered, status, "delivered", {});
            }
            return make_result(attempt_outcome::failed, status, "bad_response", body);
        }
        return make_result(attempt_outcome::delivered, status, "delivered", {});
    }

    std::string detail;
    if (pagerduty) {
        detail = pagerduty_error_text(body);
    } else if (slack && slack_web_api) {
        detail = slack_error_text(body);
    } else {
        detail = std::string(body);
    }

    if (status == 429 || (status >= 500 && status <= 599)) {
        std::optional<milliseconds> rate_limited_wait;
        if (pagerduty) {
            rate_limited_wait = pagerduty_rate_limited_wait;
        } else if (slack) {
            rate_limited_wait = slack_rate_limited_wait;
        }
        return retry_result(status, retry_after_header, std::move(detail), now, rate_limited_wait);
    }
    if (status >= 300 && status <= 399) {
        // Following a redirect could carry a routing key or token to another host.
        return make_result(attempt_outcome::failed, status, "redirect",
                           "the receiver answered with a redirect, which tocsin does not follow; configure the URL "
                           "it redirects to");
    }
    // 1xx and the other 4xx are permanent, as in Alertmanager, because resending the same
    // request gets the same response.
    return make_result(attempt_outcome::failed, status, "client_error", detail);
}

// ---- Retry-After ----

namespace {

// A cursor over an HTTP date; each step consumes its part or reports failure.
class date_reader {
public:
    explicit date_reader(std::string_view text) : text_(text) {}

    bool literal(std::string_view expected)
    {
        if (text_.substr(pos_, expected.size()) != expected) {
            return false;
        }
        pos_ += expected.size();
        return true;
    }

    // Exactly `count` digits.
    std::optional<int> digits(std::size_t count)
    {
        if (pos_ + count > text_.size()) {
            return std::nullopt;
        }
        int value = 0;
        for (std::size_t i = 0; i < count; ++i) {
            char c = text_[pos_ + i];
            if (c < '0' || c > '9') {
                return std::nullopt;
            }
            value = value * 10 + (c - '0');
        }
        pos_ += count;
        return value;
    }

    // asctime's day of month: two digits, or a space and one digit.
    std::optional<int> padded_day()
    {
        if (literal(" ")) {
            return digits(1);
        }
        return digits(2);
    }

    // The index of the first of `names` found at the cursor.
    template <std::size_t N>
    std::optional<int> name(const std::array<std::string_view, N>& names)
    {
        for (std::size_t i = 0; i < N; ++i) {
            if (literal(names[i])) {
                return static_cast<int>(i);
            }
        }
        return std::nullopt;
    }

    bool at_end() const { return pos_ == text_.size(); }

private:
    std::string_view text_;
    std::size_t pos_ = 0;
};

constexpr std::array<std::string_view, 7> short_day_names = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
constexpr std::array<std::string_view, 7> long_day_names = {"Monday", "Tuesday", "Wednesday", "Thursday",
                                                            "Friday", "Saturday", "Sunday"};
constexpr std::array<std::string_view, 12> month_names = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

struct date_parts {
    int year = 0;
    int month = 0; // 1..12
    int day = 0;
    int hour = 0;
    int minute = 0;
    int second = 0;
};

bool read_time(date_reader& r, date_parts& d)
{
    auto h = r.digits(2);
    if (!h || !r.literal(":")) {
        return false;
    }
    auto m = r.digits(2);
    if (!m || !r.literal(":")) {
        return false;
    }
    auto s = r.digits(2);
    if (!s) {
        return false;
    }
    d.hour = *h;
    d.minute = *m;
    d.second = *s;
    return true;
}

// IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT".
std::optional<date_parts> parse_imf_fixdate(std::string_view text)
{
    date_reader r(text);
    date_parts d;
    if (!r.name(short_day_names) || !r.literal(", ")) {
        return std::nullopt;
    }
    auto day = r.digits(2);
    if (!day || !r.literal(" ")) {
        return std::nullopt;
    }
    auto month = r.name(month_names);
    if (!month || !r.literal(" ")) {
        return std::nullopt;
    }
    auto year = r.digits(4);
    if (!year || !r.literal(" ") || !read_time(r, d) || !r.literal(" GMT") || !r.at_end()) {
        return std::nullopt;
    }
    d.year = *year;
    d.month = *month + 1;
    d.day = *day;
    return d;
}

// Obsolete RFC 850 form: "Sunday, 06-Nov-94 08:49:37 GMT". The two-digit year is read as in
// RFC 9110: a year more than 50 years after `now_year` means the century before.
std::optional<date_parts> parse_rfc850(std::string_view text, int now_year)
{
    date_reader r(text);
    date_parts d;
    if (!r.name(long_day_names) || !r.literal(", ")) {
        return std::nullopt;
    }
    auto day = r.digits(2);
    if (!day || !r.literal("-")) {
        return std::nullopt;
    }
    auto month = r.name(month_names);
    if (!month || !r.literal("-")) {
        return std::nullopt;
    }
    auto year = r.digits(2);
    if (!year || !r.literal(" ") || !read_time(r, d) || !r.literal(" GMT") || !r.at_end()) {
        return std::nullopt;
    }
    int full_year = now_year / 100 * 100 + *year;
    if (full_year > now_year + 50) {
        full_year -= 100;
    }
    d.year = full_year;
    d.month = *month + 1;
    d.day = *day;
    return d;
}

// Obsolete asctime form: "Sun Nov  6 08:49:37 1994".
std::optional<date_parts> parse_asctime(std::string_view text)
{
    date_reader r(text);
    date_parts d;
    if (!r.name(short_day_names) || !r.literal(" ")) {
        return std::nullopt;
    }
    auto month = r.name(month_names);
    if (!month || !r.literal(" ")) {
        return std::nullopt;
    }
    auto day = r.padded_day();
    if (!day || !r.literal(" ") || !read_time(r, d) || !r.literal(" ")) {
        return std::nullopt;
    }
    auto year = r.digits(4);
    if (!year || !r.at_end()) {
        return std::nullopt;
    }
    d.year = *year;
    d.month = *month + 1;
    d.day = *day;
    return d;
}

// Milliseconds since the epoch, or nullopt for an impossible date or time. A leap second (:60)
// counts as the next second.
std::optional<time_ms> to_epoch_ms(const date_parts& d)
{
    using namespace std::chrono;
    year_month_day date{year{d.year}, month{static_cast<unsigned>(d.month)}, day{static_cast<unsigned>(d.day)}};
    if (!date.ok() || d.hour > 23 || d.minute > 59 || d.second > 60) {
        return std::nullopt;
    }
    auto days = sys_days{date}.time_since_epoch().count();
    return ((static_cast<time_ms>(days) * 24 + d.hour) * 60 + d.minute) * 60'000 + static_cast<time_ms>(d.second) * 1000;
}

int year_of(time_ms t)
{
    using namespace std::chrono;
    auto days = floor<std::chrono::days>(sys_time<milliseconds>{milliseconds{t}});
    return static_cast<int>(year_month_day{days}.year());
}

} // namespace

std::optional<milliseconds> parse_retry_after(std::string_view value, time_ms now)
{
    value = trim(value);
    if (value.empty()) {
        return std::nullopt;
    }
    if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        // delta-seconds; any number past the cap (even one too long for an integer) is the cap.
        time_ms seconds = 0;
        for (char c : value) {
            seconds = seconds * 10 + (c - '0');
            if (seconds * 1000 >= max_retry_after_ms) {
                return milliseconds{max_retry_after_ms};
            }
        }
        return milliseconds{seconds * 1000};
    }

    std::optional<date_parts> parts = parse_imf_fixdate(value);
    if (!parts) {
        parts = parse_rfc850(value, year_of(now));
    }
    if (!parts) {
        parts = parse_asctime(value);
    }
    if (!parts) {
        return std::nullopt;
    }
    auto at = to_epoch_ms(*parts);
    if (!at) {
        return std::nullopt;
    }
    return milliseconds{std::clamp<time_ms>(*at - now, 0, max_retry_after_ms)};
}

// ---- delivery_queue ----

namespace {

constexpr double slack_default_rate_per_second = 1.0;
constexpr std::uint32_t slack_default_burst = 1;
constexpr std::uint32_t default_burst = 10;
constexpr std::uint32_t default_max_concurrency = 4;

// Limits with every default filled in. A rate of 0 means unlimited.
struct effective_limits {
    double rate_per_second = 0;
    double burst = 1;
    std::uint32_t max_concurrency = default_max_concurrency;
};

effective_limits resolve_limits(integration_kind kind, const delivery_limits& limits)
{
    const bool slack = kind == integration_kind::slack;
    effective_limits out;
    if (limits.rate_limit_per_second > 0) {
        out.rate_per_second = limits.rate_limit_per_second;
    } else if (slack) {
        out.rate_per_second = slack_default_rate_per_second;
    }
    std::uint32_t burst = slack ? slack_default_burst : default_burst;
    if (limits.burst > 0) {
        burst = limits.burst;
    }
    out.burst = static_cast<double>(burst);
    out.max_concurrency = limits.max_concurrency > 0 ? limits.max_concurrency : default_max_concurrency;
    return out;
}

// Tolerance for comparing token counts, so that float rounding never holds back a token whose
// refill time has come.
constexpr double token_epsilon = 1e-9;

struct integration_state {
    effective_limits limits;
    double tokens = 0;           // valid at `refilled_at`
    time_ms refilled_at = 0;
    bool bucket_started = false; // the bucket starts full at its first use
    std::size_t in_flight = 0;

    double tokens_at(time_ms now) const
    {
        if (!bucket_started) {
            return limits.burst;
        }
        double elapsed_s = static_cast<double>(std::max<time_ms>(0, now - refilled_at)) / 1000.0;
        return std::min(limits.burst, tokens + elapsed_s * limits.rate_per_second);
    }

    bool rate_limited() const { return limits.rate_per_second > 0; }

    bool has_token(time_ms now) const { return !rate_limited() || tokens_at(now) >= 1.0 - token_epsilon; }

    void take_token(time_ms now)
    {
        if (!rate_limited()) {
            return;
        }
        tokens = tokens_at(now) - 1.0;
        refilled_at = now;
        bucket_started = true;
    }

    // When the next whole token is there (now when one is).
    time_ms token_time(time_ms now) const
    {
        double missing = 1.0 - tokens_at(now);
        if (!rate_limited() || missing <= token_epsilon) {
            return now;
        }
        return now + static_cast<time_ms>(std::ceil(missing * 1000.0 / limits.rate_per_second - token_epsilon));
    }
};

struct queued_entry {
    outbox_entry entry;
    std::string integration_id;
    bool in_flight = false;
};

using group_id = std::pair<std::string, std::string>; // integration id, group key

} // namespace

struct delivery_queue::impl {
    retry_policy policy;
    const clock& time;
    std::mt19937_64 rng;

    std::map<std::uint64_t, queued_entry> entries;
    // Entry ids of each group in id order; only the first may be sent.
    std::map<group_id, std::set<std::uint64_t>> groups;
    // The first entry of each group while it is not in flight, per integration, by
    // (next_attempt_at, id). take_due() and next_wakeup() read only the front of each set, so
    // a long backlog behind a dead receiver costs nothing per call.
    std::map<std::string, std::set<std::pair<time_ms, std::uint64_t>>> heads;
    std::map<std::string, integration_state> integrations;
    std::map<std::string, integration_counters> counters;

    impl(retry_policy p, const clock& c, std::uint64_t seed) : policy(p), time(c), rng(seed) {}

    integration_state& integration_for(const std::string& id, integration_kind kind)
    {
        auto [it, inserted] = integrations.try_emplace(id);
        if (inserted) {
            it->second.limits = resolve_limits(kind, delivery_limits{});
        }
        return it->second;
    }

    void index_head(std::uint64_t id)
    {
        const queued_entry& e = entries.at(id);
        if (!e.in_flight) {
            heads[e.integration_id].insert({e.entry.next_attempt_at, id});
        }
    }

    void unindex_head(std::uint64_t id)
    {
        const queued_entry& e = entries.at(id);
        auto it = heads.find(e.integration_id);
        if (it != heads.end()) {
            it->second.erase({e.entry.next_attempt_at, id});
        }
    }

    // Removes a waiting entry from every index; the next entry of its group becomes the head.
    // The caller updates the counters.
    outbox_entry remove(std::map<std::uint64_t, queued_entry>::iterator it)
    {
        unindex_head(it->first);
        auto group = groups.find(group_id{it->second.integration_id, it->second.entry.message.group_key});
        std::optional<std::uint64_t> next_head;
        if (group != groups.end()) {
            const bool was_head = !group->second.empty() && *group->second.begin() == it->first;
            group->second.erase(it->first);
            if (group->second.empty()) {
                groups.erase(group);
            } else if (was_head) {
                next_head = *group->second.begin();
            }
        }
        outbox_entry entry = std::move(it->second.entry);
        entries.erase(it);
        if (next_head) {
            index_head(*next_head);
        }
        return entry;
    }

    bool too_old(const outbox_entry& entry, time_ms now) const
    {
        return now - entry.created_at > policy.max_age.count();
    }

    // The wait before attempt number `attempts + 1`, after `attempts` failed ones:
    // initial * multiplier^(attempts - 1), jittered by ±jitter, never above max_backoff.
    milliseconds backoff(std::uint32_t attempts)
    {
        double base = static_cast<double>(policy.initial.count()) *
                      std::pow(policy.multiplier, static_cast<double>(attempts > 0 ? attempts - 1 : 0));
        const double cap = static_cast<double>(policy.max_backoff.count());
        base = std::min(base, cap); // also catches an overflow to infinity
        double factor = 1.0;
        if (policy.jitter > 0) {
            std::uniform_real_distribution<double> share(-policy.jitter, policy.jitter);
            factor += share(rng);
        }
        double wait = std::clamp(base * factor, 0.0, cap);
        return milliseconds{static_cast<std::int64_t>(std::llround(wait))};
    }
};

delivery_queue::delivery_queue(retry_policy policy, const clock& clock, std::uint64_t seed)
    : impl_(std::make_shared<impl>(policy, clock, seed))
{
}

void delivery_queue::set_limits(const std::string& integration_id, integration_kind kind, const delivery_limits& limits)
{
    auto& state = impl_->integration_for(integration_id, kind);
    // A configured integration shows in counters() before its first message, so its metrics start at 0.
    impl_->counters.try_emplace(integration_id);
    const time_ms now = impl_->time.now_ms();
    if (state.bucket_started) {
        // Keep the tokens earned so far, within the new bucket size.
        state.tokens = state.tokens_at(now);
        state.refilled_at = now;
    }
    state.limits = resolve_limits(kind, limits);
    state.tokens = std::min(state.tokens, state.limits.burst);
}

void delivery_queue::add(outbox_entry entry)
{
    std::string integration_id = entry.message.integration.id();
    const std::uint64_t id = entry.id;
    if (impl_->entries.count(id) > 0) {
        // The queued copy may be in flight or carry newer attempt data, so a second add() keeps it.
        return;
    }
    auto& d = *impl_;
    d.integration_for(integration_id, entry.message.integration.kind);
    auto& group = d.groups[group_id{integration_id, entry.message.group_key}];
    const bool had_head = !group.empty();
    const std::uint64_t old_head = had_head ? *group.begin() : 0;
    group.insert(id);
    ++d.counters[integration_id].queued;
    d.entries.emplace(id, queued_entry{std::move(entry), std::move(integration_id), false});
    if (*group.begin() == id) {
        // Entries load from the store in id order, so a new head is the group's only entry,
        // unless an older entry arrives late.
        if (had_head) {
            d.unindex_head(old_head);
        }
        d.index_head(id);
    }
}

std::vector<outbox_entry> delivery_queue::take_due()
{
    auto& d = *impl_;
    const time_ms now = d.time.now_ms();

    // Within an integration, heads go by due time and then age, so scarce tokens and slots go
    // to the longest wait.
    std::vector<outbox_entry> due;
    for (auto& [integration_id, ready] : d.heads) {
        integration_state& state = d.integrations.at(integration_id);
        auto& counters = d.counters[integration_id];
        while (!ready.empty() && ready.begin()->first <= now && state.in_flight < state.limits.max_concurrency &&
               state.has_token(now)) {
            const std::uint64_t id = ready.begin()->second;
            ready.erase(ready.begin());
            queued_entry& head = d.entries.at(id);
            state.take_token(now);
            ++state.in_flight;
            head.in_flight = true;
            --counters.queued;
            ++counters.in_flight;
            due.push_back(head.entry);
        }
    }
    std::sort(due.begin(), due.end(), [](const outbox_entry& a, const outbox_entry& b) { return a.id < b.id; });
    return due;
}

delivery_queue::completion delivery_queue::complete(std::uint64_t id, const attempt_result& result)
{
    auto& d = *impl_;
    auto it = d.entries.find(id);
    if (it == d.entries.end() || !it->second.in_flight) {
        throw std::logic_error(fmt::format("outbox entry {} is not in flight: complete() takes an id returned "
                                           "by take_due(), once",
                                           id));
    }
    const time_ms now = d.time.now_ms();
    queued_entry& queued = it->second;
    auto& counters = d.counters[queued.integration_id];
    auto& state = d.integrations.at(queued.integration_id);
    --state.in_flight;
    --counters.in_flight;
    queued.in_flight = false;

    outbox_entry& entry = queued.entry;
    ++entry.attempts;
    if (result.outcome != attempt_outcome::delivered) {
        std::string status = result.http_status > 0 ? fmt::format("HTTP {} ", result.http_status) : std::string();
        entry.last_error = result.detail.empty() ? status + result.reason
                                                 : fmt::format("{}{}: {}", status, result.reason, result.detail);
    }

    switch (result.outcome) {
    case attempt_outcome::delivered:
        ++counters.sent;
        return completion{attempt_outcome::delivered, d.remove(it)};
    case attempt_outcome::failed:
        ++counters.failed;
        return completion{attempt_outcome::failed, d.remove(it)};
    case attempt_outcome::retry:
        break;
    }

    if (d.too_old(entry, now)) {
        // Dropped rather than retried: reported as failed, because the entry leaves the queue
        // and the store, but counted apart from receivers' rejections.
        entry.last_error += fmt::format(" (dropped: older than max_age {} ms)", d.policy.max_age.count());
        ++counters.dropped;
        return completion{attempt_outcome::failed, d.remove(it)};
    }

    milliseconds wait = d.backoff(entry.attempts);
    if (result.retry_after) {
        // A Retry-After of days (or a garbled one) would hold the group's later notifications,
        // its resolve included, for that long, so the wait is capped.
        wait = std::max(wait, std::min(*result.retry_after, max_honoured_retry_after));
    }
    entry.next_attempt_at = now + wait.count();
    ++counters.retried;
    ++counters.queued;
    d.index_head(id);
    return completion{attempt_outcome::retry, entry};
}

std::vector<outbox_entry> delivery_queue::expire(const std::function<bool(const std::string& integration_id)>& exists)
{
    auto& d = *impl_;
    const time_ms now = d.time.now_ms();
    std::vector<outbox_entry> dropped;
    // Entries in flight stay until complete(), because their attempt is under way. A later
    // expire() drops them if they are still queued by then.
    for (auto it = d.entries.begin(); it != d.entries.end();) {
        auto next = std::next(it);
        const queued_entry& queued = it->second;
        if (!queued.in_flight && (d.too_old(queued.entry, now) || !exists(queued.integration_id))) {
            auto& counters = d.counters[queued.integration_id];
            ++counters.dropped;
            --counters.queued;
            dropped.push_back(d.remove(it));
        }
        it = next;
    }
    return dropped;
}

std::optional<time_ms> delivery_queue::next_wakeup() const
{
    const auto& d = *impl_;
    const time_ms now = d.time.now_ms();
    std::optional<time_ms> earliest;
    for (const auto& [integration_id, ready] : d.heads) {
        if (ready.empty()) {
            continue;
        }
        const integration_state& state = d.integrations.at(integration_id);
        if (state.in_flight >= state.limits.max_concurrency) {
            continue; // a completion wakes the caller
        }
        const time_ms at = std::max(ready.begin()->first, state.token_time(now));
        if (!earliest || at < *earliest) {
            earliest = at;
        }
    }
    if (earliest) {
        // A past due time means "now": take_due() has work, and the caller must not wait.
        earliest = std::max(*earliest, now);
    }
    return earliest;
}

std::size_t delivery_queue::size() const
{
    return impl_->entries.size();
}

const std::map<std::string, integration_counters>& delivery_queue::counters() const
{
    return impl_->counters;
}

} // namespace tocsin
