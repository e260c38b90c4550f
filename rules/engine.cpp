#include "rules/engine.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <string_view>
#include <unordered_map>

#include <fmt/format.h>

#include "rules/dynamic_loader.hpp"
#include "rules/window.hpp"

namespace tocsin {

const char* to_string(alert_state s)
{
    switch (s) {
    case alert_state::inactive: return "inactive";
    case alert_state::pending: return "pending";
    case alert_state::firing: return "firing";
    }
    return "unknown";
}

const char* to_string(alert_event::kind k)
{
    switch (k) {
    case alert_event::kind::pending: return "pending";
    case alert_event::kind::firing: return "firing";
    case alert_event::kind::severity_changed: return "severity_changed";
    case alert_event::kind::updated: return "updated";
    case alert_event::kind::resolved: return "resolved";
    }
    return "unknown";
}

bool is_stale_marker(double value)
{
    return std::bit_cast<std::uint64_t>(value) == 0x7ff0000000000002ULL;
}

namespace {

// "No time" inside the engine. Sample time 0 is a valid timestamp, so 0 cannot mean "unset"
// here. Persisted records still use 0 for "unset", as engine.hpp documents.
constexpr time_ms no_time = std::numeric_limits<time_ms>::min();
constexpr std::uint32_t npos = std::numeric_limits<std::uint32_t>::max();
// Severities give at most four tiers per rule.
constexpr std::size_t max_tiers = 4;
// A series that no rule selects is remembered, so matchers are not rerun on every sample,
// and forgotten after this much silence.
constexpr time_ms unbound_series_idle_ms = 5 * 60 * 1000;
// A detector outlives a silence of its series up to this long; its baseline is history, not a
// timer. After a longer silence (by the clock live, in sample time in a replay) it is dropped.
constexpr time_ms detector_retention_ms = 24 * 60 * 60 * 1000;
// Bookkeeping bytes of one glibc malloc chunk, counted in the state estimate.
constexpr std::size_t malloc_overhead = 16;
constexpr const char* limit_alert_name = "TocsinRuleAlertLimitExceeded";

enum class resolve_reason : std::uint8_t { none, recovered, missing_series, rule_changed, rule_removed };

const char* reason_text(resolve_reason r)
{
    switch (r) {
    case resolve_reason::none: return "";
    case resolve_reason::recovered: return "recovered";
    case resolve_reason::missing_series: return "missing_series";
    case resolve_reason::rule_changed: return "rule_changed";
    case resolve_reason::rule_removed: return "rule_removed";
    }
    return "";
}

// ---------------------------------------------------------------------------------------
// Packed label sets: one heap buffer per series.
// Layout: u32 total bytes, u32 label count, then per label u32 name length, u32 value length,
// the name bytes and the value bytes. Lengths are read with memcpy, so there is no alignment.

std::uint32_t read_u32(const char* p)
{
    std::uint32_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

void write_u32(char* p, std::uint32_t v) { std::memcpy(p, &v, sizeof v); }

std::unique_ptr<char[]> pack_labels(std::span<const label_view> labels)
{
    std::size_t size = 8;
    for (const auto& l : labels) {
        size += 8 + l.name.size() + l.value.size();
    }
    auto buffer = std::make_unique_for_overwrite<char[]>(size);
    write_u32(buffer.get(), static_cast<std::uint32_t>(size));
    write_u32(buffer.get() + 4, static_cast<std::uint32_t>(labels.size()));
    char* out = buffer.get() + 8;
    for (const auto& l : labels) {
        write_u32(out, static_cast<std::uint32_t>(l.name.size()));
        write_u32(out + 4, static_cast<std::uint32_t>(l.value.size()));
        out += 8;
        std::memcpy(out, l.name.data(), l.name.size());
        out += l.name.size();
        std::memcpy(out, l.value.data(), l.value.size());
        out += l.value.size();
    }
    return buffer;
}

std::uint32_t packed_size(const char* packed) { return read_u32(packed); }

template <class F>
void for_each_label(const char* packed, F&& f)
{
    const std::uint32_t count = read_u32(packed + 4);
    const char* p = packed + 8;
    for (std::uint32_t i = 0; i < count; ++i) {
        const std::uint32_t name_size = read_u32(p);
        const std::uint32_t value_size = read_u32(p + 4);
        p += 8;
        f(std::string_view(p, name_size), std::string_view(p + name_size, value_size));
        p += name_size + value_size;
    }
}

// Label names and values are short, so a byte loop beats a memcmp call for them.
bool bytes_equal(const char* a, const char* b, std::size_t n)
{
    if (n > 32) {
        return std::memcmp(a, b, n) == 0;
    }
    for (std::size_t i = 0; i < n; ++i) {
        if (a[i] != b[i]) {
            return false;
        }
    }
    return true;
}

bool packed_equals(const char* packed, std::span<const label_view> labels)
{
    if (read_u32(packed + 4) != labels.size()) {
        return false;
    }
    const char* p = packed + 8;
    for (const auto& l : labels) {
        const std::uint32_t name_size = read_u32(p);
        const std::uint32_t value_size = read_u32(p + 4);
        if (name_size != l.name.size() || value_size != l.value.size()) {
            return false;
        }
        p += 8;
        if (!bytes_equal(p, l.name.data(), name_size) || !bytes_equal(p + name_size, l.value.data(), value_size)) {
            return false;
        }
        p += name_size + value_size;
    }
    return true;
}

std::string_view packed_get(const char* packed, std::string_view name)
{
    std::string_view found;
    for_each_label(packed, [&](std::string_view n, std::string_view v) {
        if (n == name) {
            found = v;
        }
    });
    return found;
}

label_set unpack_labels(const char* packed)
{
    std::vector<label> items;
    items.reserve(read_u32(packed + 4));
    for_each_label(packed, [&](std::string_view n, std::string_view v) {
        items.push_back(label{std::string(n), std::string(v)});
    });
    return label_set(std::move(items));
}

std::string_view metric_name_of(std::span<const label_view> labels)
{
    for (const auto& l : labels) {
        if (l.name == "__name__") {
            return l.value;
        }
    }
    return {};
}

// ---------------------------------------------------------------------------------------
// Open-addressing map from a series fingerprint to the series index: linear probing over a
// power-of-two table of 8-byte slots, at most 70% full, with backward-shift deletion (no
// tombstones). A slot contains the series index and 32 bits of the fingerprint, so a probe
// touches one cache line. The full fingerprint is stored in the series entry and reaches the
// index through `fingerprint_of_value` callbacks. Equal fingerprints of different label sets
// (collisions) sit in the same probe run; find() tells them apart with the caller's check.
class fingerprint_index {
public:
    // Returns the first value whose slot tag matches `fp` and for which `match(value)` is
    // true, or npos.
    template <class Match>
    std::uint32_t find(std::uint64_t fp, Match&& match) const
    {
        if (slots_.empty()) {
            return npos;
        }
        const auto tag = static_cast<std::uint32_t>(fp);
        for (std::size_t i = home(fp);; i = (i + 1) & mask_) {
            const slot& candidate = slots_[i];
            if (candidate.value == npos) {
                return npos;
            }
            if (candidate.tag == tag && match(candidate.value)) {
                return candidate.value;
            }
        }
    }

    template <class FingerprintOf>
    void insert(std::uint64_t fp, std::uint32_t value, FingerprintOf&& fingerprint_of_value)
    {
        if ((size_ + 1) * 10 > slots_.size() * 7) {
            rehash(slots_.empty() ? 64 : slots_.size() * 2, fingerprint_of_value);
        }
        place(fp, value);
        ++size_;
    }

    template <class FingerprintOf>
    void erase(std::uint64_t fp, std::uint32_t value, FingerprintOf&& fingerprint_of_value)
    {
        std::size_t i = home(fp);
        while (slots_[i].value != value) {
            i = (i + 1) & mask_;
        }
        // Backward shift: move later entries of the run into the hole when their home slot
        // allows it, so that no probe run is cut short.
        for (std::size_t j = (i + 1) & mask_; slots_[j].value != npos; j = (j + 1) & mask_) {
            const std::size_t h = home(fingerprint_of_value(slots_[j].value));
            if (((j - h) & mask_) >= ((j - i) & mask_)) {
                slots_[i] = slots_[j];
                i = j;
            }
        }
        slots_[i].value = npos;
        --size_;
    }

    std::size_t bytes() const { return slots_.capacity() * sizeof(slot); }

private:
    struct slot {
        std::uint32_t value = npos; // npos marks an empty slot
        std::uint32_t tag = 0;      // low 32 bits of the fingerprint
    };

    std::size_t home(std::uint64_t fp) const
    {
        // Fibonacci hashing spreads the FNV bits over the table index.
        return static_cast<std::size_t>((fp * 0x9E3779B97F4A7C15ULL) >> shift_);
    }

    void place(std::uint64_t fp, std::uint32_t value)
    {
        std::size_t i = home(fp);
        while (slots_[i].value != npos) {
            i = (i + 1) & mask_;
        }
        slots_[i] = slot{value, static_cast<std::uint32_t>(fp)};
    }

    template <class FingerprintOf>
    void rehash(std::size_t capacity, FingerprintOf& fingerprint_of_value)
    {
        std::vector<slot> old(capacity);
        old.swap(slots_);
        mask_ = capacity - 1;
        shift_ = 64 - std::countr_zero(capacity);
        for (const slot& entry : old) {
            if (entry.value != npos) {
                place(fingerprint_of_value(entry.value), entry.value);
            }
        }
    }

    std::vector<slot> slots_;
    std::size_t mask_ = 0;
    int shift_ = 64;
    std::size_t size_ = 0;
};

struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// Grows a vector by a quarter instead of doubling, so that the slack counted in the state
// estimate stays small for large series counts.
template <class T>
void reserve_one_more(std::vector<T>& v)
{
    if (v.size() == v.capacity()) {
        v.reserve(v.capacity() + v.capacity() / 4 + 64);
    }
}

void adjust(std::size_t& counter, int sign)
{
    counter = sign > 0 ? counter + 1 : counter - 1;
}

// `later - earlier` for `later >= earlier`, exact over the whole time_ms range, where the
// signed subtraction could overflow.
std::uint64_t distance(time_ms earlier, time_ms later)
{
    return static_cast<std::uint64_t>(later) - static_cast<std::uint64_t>(earlier);
}

bool is_numeric(double value, const rule& r)
{
    return !std::isnan(value) && (std::isfinite(value) || r.fire_on_infinity);
}

bool selects(const rule& r, const char* packed)
{
    if (packed_get(packed, "__name__") != r.metric) {
        return false;
    }
    for (const auto& m : r.matchers) {
        if (!m.matches(packed_get(packed, m.name()))) {
            return false;
        }
    }
    return true;
}

std::uint64_t alert_id(const std::string& rule_name, const label_set& series, bool no_data)
{
    // The rule name enters as a label with an empty name: no real label has one, and it sorts
    // first, so the hash input stays in fingerprint_of's sorted form.
    std::vector<label_view> views;
    views.reserve(series.size() + 2);
    views.push_back(label_view{"", rule_name});
    if (no_data) {
        views.push_back(label_view{"", "nodata"});
    }
    for (const auto& l : series.items()) {
        views.push_back(label_view{l.name, l.value});
    }
    return fingerprint_of(views);
}

label_set alert_labels(const rule& r, const label_set& series, severity level, double value, bool no_data)
{
    const label_set base = series.without("__name__");
    std::vector<label> items = base.items();
    for (const auto& [name, text] : r.labels) {
        items.push_back(label{name, text.render(base, value)});
    }
    // label_set keeps the last of equal names, so these override series and rule labels.
    items.push_back(label{"alertname", r.name});
    items.push_back(label{"severity", to_string(level)});
    if (no_data) {
        items.push_back(label{"nodata", "true"});
    }
    return label_set(std::move(items));
}

struct tier_timer {
    time_ms held_since = no_time;  // kept after release, so a re-hold within keep_firing_for continues
    time_ms released_at = no_time; // set when a satisfied tier was released; keep_firing_for counts from here
};

// The detector of a dynamic rule on one series. `owner` keeps the rule, and so the spec the
// detector reads, alive across reloads that install a new rule object.
struct dynamic_state {
    std::shared_ptr<const rule> owner;
    std::unique_ptr<detector> scorer;
    detector_output last;   // the output for the last value scored
    bool warming_up = true; // counted in rule_slot::warming_up
    time_ms last_held_out = no_time; // sample time of the last value held out for its own sake
    std::size_t bytes = 0;  // scorer->memory_bytes() when last counted
};

// The state of one rule on one series: its alert, its tier timers and its window.
struct binding {
    std::uint32_t rule = 0;    // index into impl::slots_
    std::uint32_t next = npos; // next binding of the same series
    alert_state state = alert_state::inactive;
    // The state and level last sent in an event. They lag behind while the rule is over its
    // alert limit, and catch up when the limit clears.
    alert_state announced = alert_state::inactive;
    severity level = severity::warning;
    severity announced_level = severity::warning;
    std::uint8_t held = 0; // bit i: tier i is held
    resolve_reason reason = resolve_reason::none;
    double value = 0;
    time_ms active_at = 0;
    time_ms fired_at = 0;
    time_ms last_sample_at = 0;
    // Set by a stale marker or a non-numeric value under on_non_numeric=no_data: the sample
    // time from which the series is missing, and the clock time at which that sample arrived.
    time_ms forced_missing_at = no_time;
    time_ms forced_missing_arrival = no_time;
    // The no-data alert is active since this time: clock time when tick() raised it, sample
    // time when a stale marker or non-numeric value did.
    time_ms no_data_since = no_time;
    // no_data_since of the no-data alert last announced; no_time when none is announced. It
    // lags behind while the rule is over its alert limit, like `announced`.
    time_ms no_data_announced = no_time;
    tier_timer tiers[max_tiers];
    std::unique_ptr<sample_window> window; // only for rules with a range transform
    std::unique_ptr<dynamic_state> dynamic; // only for dynamic rules, created by the first value
};

struct series_entry {
    std::uint64_t fp = 0;
    std::unique_ptr<char[]> labels; // packed, see pack_labels
    std::uint32_t first_binding = npos;
    bool live = false;
    bool stale = false;
    time_ms last_ts = no_time;  // sample time of the last sample
    time_ms last_arrival = 0;   // clock time of the last sample
};

struct rule_slot {
    std::shared_ptr<const rule> def;
    std::size_t series = 0;
    std::size_t pending = 0;
    std::size_t firing = 0;
    std::size_t no_data = 0;
    std::size_t warming_up = 0; // bindings whose detector is not ready
    bool limit_exceeded = false;
    time_ms limit_since = 0;
};

} // namespace

struct engine::impl {
    impl(std::shared_ptr<const rule_set> rules, engine_limits limits, const clock& clock)
        : limits_(limits), clock_(clock)
    {
        install_rules(rules ? std::move(rules) : std::make_shared<const rule_set>());
    }

    // -- rules --------------------------------------------------------------------------

    void install_rules(std::shared_ptr<const rule_set> rules)
    {
        rules_ = std::move(rules);
        slots_.clear();
        by_metric_.clear();
        slots_.reserve(rules_->rules.size());
        for (const auto& r : rules_->rules) {
            const auto index = static_cast<std::uint32_t>(slots_.size());
            slots_.push_back(rule_slot{r});
            by_metric_[r->metric].push_back(index);
        }
    }

    const std::vector<std::uint32_t>* rules_for_metric(std::string_view metric) const
    {
        auto it = by_metric_.find(metric);
        return it == by_metric_.end() ? nullptr : &it->second;
    }

    // -- series and bindings ------------------------------------------------------------

    std::uint32_t find_series(std::uint64_t fp, std::span<const label_view> labels) const
    {
        return index_.find(fp, [&](std::uint32_t s) {
            return series_[s].fp == fp && packed_equals(series_[s].labels.get(), labels);
        });
    }

    std::uint32_t create_series(std::uint64_t fp, std::span<const label_view> labels, time_ms now)
    {
        std::uint32_t s;
        if (!free_series_.empty()) {
            s = free_series_.back();
            free_series_.pop_back();
        } else {
            reserve_one_more(series_);
            s = static_cast<std::uint32_t>(series_.size());
            series_.emplace_back();
        }
        series_entry& entry = series_[s];
        entry.fp = fp;
        entry.labels = pack_labels(labels);
        entry.first_binding = npos;
        entry.live = true;
        entry.stale = false;
        entry.last_ts = no_time;
        entry.last_arrival = now;
        label_bytes_ += packed_size(entry.labels.get());
        index_.insert(fp, s, [this](std::uint32_t i) { return series_[i].fp; });
        ++live_series_;
        return s;
    }

    std::uint32_t new_binding(std::uint32_t rule_index)
    {
        std::uint32_t b;
        if (!free_bindings_.empty()) {
            b = free_bindings_.back();
            free_bindings_.pop_back();
            bindings_[b] = binding{};
        } else {
            reserve_one_more(bindings_);
            b = static_cast<std::uint32_t>(bindings_.size());
            bindings_.emplace_back();
        }
        bindings_[b].rule = rule_index;
        return b;
    }

    void drop_window(binding& entry)
    {
        if (entry.window) {
            window_bytes_ -= entry.window->capacity_bytes() + sizeof(sample_window) + malloc_overhead;
            entry.window.reset();
        }
    }

    void drop_detector(binding& entry)
    {
        if (entry.dynamic) {
            detector_bytes_ -= entry.dynamic->bytes;
            // During replace_rules() the binding's rule index may point into the old slots;
            // recount() recomputes the warm-up counts there.
            if (entry.dynamic->warming_up && !replacing_) {
                --warming_up_;
                --slots_[entry.rule].warming_up;
            }
            entry.dynamic.reset();
        }
    }

    void free_binding(std::uint32_t b)
    {
        binding& entry = bindings_[b];
        drop_window(entry);
        drop_detector(entry);
        entry.next = npos;
        free_bindings_.push_back(b);
    }

    // Binds series `s` to every rule of `candidates` that selects it, in rule order.
    void bind_series(std::uint32_t s, const std::vector<std::uint32_t>& candidates)
    {
        std::uint32_t tail = npos;
        for (std::uint32_t r : candidates) {
            if (!selects(*slots_[r].def, series_[s].labels.get())) {
                continue;
            }
            const std::uint32_t b = new_binding(r);
            if (tail == npos) {
                series_[s].first_binding = b;
            } else {
                bindings_[tail].next = b;
            }
            tail = b;
            ++slots_[r].series;
        }
    }

    // Forgets a series. Its bindings must hold no alert any more.
    void remove_series(std::uint32_t s)
    {
        series_entry& entry = series_[s];
        for (std::uint32_t b = entry.first_binding; b != npos;) {
            const std::uint32_t next = bindings_[b].next;
            adjust(slots_[bindings_[b].rule].series, -1);
            free_binding(b);
            b = next;
        }
        index_.erase(entry.fp, s, [this](std::uint32_t i) { return series_[i].fp; });
        label_bytes_ -= packed_size(entry.labels.get());
        entry.labels.reset();
        entry.first_binding = npos;
        entry.live = false;
        free_series_.push_back(s);
        --live_series_;
    }

    // -- counters -----------------------------------------------------------------------

    void account(const binding& b, int sign)
    {
        rule_slot& slot = slots_[b.rule];
        if (b.state == alert_state::pending) {
            adjust(slot.pending, sign);
            adjust(pending_total_, sign);
        } else if (b.state == alert_state::firing) {
            adjust(slot.firing, sign);
            adjust(firing_total_, sign);
            adjust(firing_by_severity_[static_cast<int>(b.level)], sign);
        }
    }

    void account_no_data(const binding& b, int sign)
    {
        rule_slot& slot = slots_[b.rule];
        adjust(slot.no_data, sign);
        adjust(no_data_total_, sign);
        adjust(firing_by_severity_[static_cast<int>(slot.def->no_data.alert_severity)], sign);
    }

    std::size_t active_total() const { return pending_total_ + firing_total_ + no_data_total_; }

    void recount()
    {
        pending_total_ = firing_total_ = no_data_total_ = 0;
        std::fill(std::begin(firing_by_severity_), std::end(firing_by_severity_), 0);
        warming_up_ = 0;
        for (auto& slot : slots_) {
            slot.series = slot.pending = slot.firing = slot.no_data = slot.warming_up = 0;
        }
        for (const auto& entry : series_) {
            if (!entry.live) {
                continue;
            }
            for (std::uint32_t b = entry.first_binding; b != npos; b = bindings_[b].next) {
                ++slots_[bindings_[b].rule].series;
                if (bindings_[b].dynamic && bindings_[b].dynamic->warming_up) {
                    ++slots_[bindings_[b].rule].warming_up;
                    ++warming_up_;
                }
                account(bindings_[b], +1);
                if (bindings_[b].no_data_since != no_time) {
                    account_no_data(bindings_[b], +1);
                }
            }
        }
    }

    // -- events -------------------------------------------------------------------------

    alert_event make_event(alert_event::kind what, const binding& b, const rule& r, const label_set& series,
                           resolve_reason reason, time_ms at) const
    {
        alert_event event;
        event.what = what;
        alert_snapshot& snap = event.alert;
        snap.id = alert_id(r.name, series, false);
        snap.rule_name = r.name;
        snap.labels = alert_labels(r, series, b.level, b.value, false);
        const detector_output* out = b.dynamic && b.dynamic->last.ready ? &b.dynamic->last : nullptr;
        constexpr double nan = std::numeric_limits<double>::quiet_NaN();
        for (const auto& [name, text] : r.annotations) {
            snap.annotations.emplace_back(
                name, text.render(snap.labels, b.value, out ? out->score : nan, out ? out->baseline : nan));
        }
        if (out != nullptr) {
            snap.explanation = *out;
            add_explanation(snap.annotations, r, *out);
        }
        snap.state = b.state;
        snap.level = b.level;
        snap.value = b.value;
        snap.active_at = b.active_at;
        snap.fired_at = b.state == alert_state::pending ? 0 : b.fired_at;
        snap.last_sample_at = b.last_sample_at;
        if (what == alert_event::kind::resolved) {
            snap.state = alert_state::inactive;
            snap.resolved_at = at;
            snap.reason = reason_text(reason);
        }
        event.record = make_record(b, r, series);
        event.record.state = snap.state;
        return event;
    }

    // Adds the annotations that say what a dynamic rule measured: detector, score, baseline
    // and band (the values at which the lowest tier is met). A rule's own annotation of the
    // same name wins.
    static void add_explanation(std::vector<std::pair<std::string, std::string>>& annotations, const rule& r,
                                const detector_output& out)
    {
        const auto add = [&](const char* name, std::string text) {
            for (const auto& [existing, value] : annotations) {
                if (existing == name) {
                    return;
                }
            }
            annotations.emplace_back(name, std::move(text));
        };
        const detector_spec& spec = *r.dynamic;
        add("detector", to_string(spec.kind));
        add("score", fmt::format("{:.6g}", out.score));
        if (std::isfinite(out.baseline)) {
            add("baseline", fmt::format("{:.6g}", out.baseline));
        }
        const double k = r.tiers.front().when.threshold;
        const double upper = value_at_score(spec, out, k, false);
        const double lower = value_at_score(spec, out, k, true);
        if (std::isfinite(upper)) {
            const bool two_sided = spec.side == direction::both && std::isfinite(lower) &&
                                   spec.kind != detector_kind::baseline;
            add("band", two_sided ? fmt::format("{:.6g} to {:.6g}", lower, upper) : fmt::format("{:.6g}", upper));
        }
        if (std::isfinite(out.secondary)) {
            add(spec.ks_figure == ks_score::p_value ? "ks_statistic" : "p_value", fmt::format("{:.6g}", out.secondary));
        }
    }

    persisted_alert make_record(const binding& b, const rule& r, const label_set& series) const
    {
        persisted_alert rec;
        rec.id = alert_id(r.name, series, false);
        rec.rule_name = r.name;
        rec.rule_hash = r.definition_hash;
        rec.series = series;
        rec.state = b.state;
        rec.level = b.level;
        rec.value = b.value;
        rec.active_at = b.active_at;
        rec.fired_at = b.state == alert_state::firing ? b.fired_at : 0;
        rec.last_sample_at = b.last_sample_at;
        const std::size_t n = std::min(r.tiers.size(), max_tiers);
        rec.tier_held_since.assign(r.tiers.size(), 0);
        rec.tier_released_at.assign(r.tiers.size(), 0);
        rec.tier_levels = levels_of(r);
        for (std::size_t i = 0; i < n; ++i) {
            if ((b.held & (1u << i)) != 0) {
                rec.tier_held_since[i] = b.tiers[i].held_since;
            }
            if (b.tiers[i].released_at != no_time) {
                rec.tier_released_at[i] = b.tiers[i].released_at;
            }
        }
        return rec;
    }

    // The no-data alert of a binding, active since `since` (its no_data_since, or the one last
    // announced when it has ended since).
    alert_snapshot no_data_snapshot(const binding& b, const rule& r, const label_set& series, time_ms since) const
    {
        alert_snapshot snap;
        snap.id = alert_id(r.name, series, true);
        snap.rule_name = r.name;
        snap.labels = alert_labels(r, series, r.no_data.alert_severity, b.value, true);
        snap.annotations.emplace_back(
            "summary", fmt::format("no samples for {} on {}", r.name, series.without("__name__").to_string()));
        snap.state = alert_state::firing;
        snap.level = r.no_data.alert_severity;
        snap.value = b.value;
        snap.active_at = since;
        snap.fired_at = since;
        snap.last_sample_at = b.last_sample_at;
        snap.no_data = true;
        return snap;
    }

    persisted_alert no_data_record(const binding& b, const rule& r, const label_set& series, time_ms since) const
    {
        persisted_alert rec;
        rec.id = alert_id(r.name, series, true);
        rec.rule_name = r.name;
        rec.rule_hash = r.definition_hash;
        rec.series = series;
        rec.state = alert_state::firing;
        rec.level = r.no_data.alert_severity;
        rec.value = b.value;
        rec.active_at = since;
        rec.fired_at = since;
        rec.last_sample_at = b.last_sample_at;
        rec.no_data = true;
        rec.tier_held_since.assign(r.tiers.size(), 0);
        rec.tier_released_at.assign(r.tiers.size(), 0);
        rec.tier_levels = levels_of(r);
        return rec;
    }

    // Records an event of the binding's no-data alert, active since `since`. It is held back
    // while the rule is over its alert limit, and so is the resolution of a no-data alert that
    // was never announced.
    void push_no_data_event(alert_event::kind what, std::uint32_t b, std::uint32_t s, time_ms since, time_ms at,
                            resolve_reason reason = resolve_reason::recovered)
    {
        binding& entry = bindings_[b];
        const rule_slot& slot = slots_[entry.rule];
        const label_set series = unpack_labels(series_[s].labels.get());
        alert_event event;
        event.what = what;
        event.alert = no_data_snapshot(entry, *slot.def, series, since);
        event.record = no_data_record(entry, *slot.def, series, since);
        const bool resolved = what == alert_event::kind::resolved;
        if (resolved) {
            event.alert.state = alert_state::inactive;
            event.alert.resolved_at = at;
            event.alert.reason = reason_text(reason);
            event.record.state = alert_state::inactive;
        }
        event.held_back = slot.limit_exceeded || (resolved && entry.no_data_announced == no_time);
        if (!event.held_back) {
            entry.no_data_announced = resolved ? no_time : since;
        }
        events_.push_back(std::move(event));
    }

    // Records the binding's current state as an event. Every change reaches the store this way.
    // While the rule is over its alert limit, the event is marked held back (not to be
    // announced), and so is the resolution of an alert that was never announced. Once the rule
    // is back under its limit, reconcile() announces what is still relevant.
    void publish(std::uint32_t b, std::uint32_t s, alert_event::kind what, resolve_reason reason, time_ms at)
    {
        binding& entry = bindings_[b];
        const rule_slot& slot = slots_[entry.rule];
        const bool held_back = slot.limit_exceeded ||
                               (what == alert_event::kind::resolved && entry.announced == alert_state::inactive);
        const label_set series = unpack_labels(series_[s].labels.get());
        events_.push_back(make_event(what, entry, *slot.def, series, reason, at));
        events_.back().held_back = held_back;
        if (!held_back) {
            entry.announced = entry.state;
            entry.announced_level = entry.level;
        }
    }

    alert_snapshot limit_snapshot(const rule_slot& slot) const
    {
        alert_snapshot snap;
        snap.labels = label_set{{"alertname", limit_alert_name}, {"rule", slot.def->name}, {"severity", "critical"}};
        snap.id = snap.labels.fingerprint();
        snap.rule_name = limit_alert_name;
        const std::size_t count = slot.pending + slot.firing + slot.no_data;
        snap.annotations.emplace_back(
            "summary", fmt::format("alert limit exceeded ({} > {})", count, limits_.per_rule_max_alerts));
        snap.annotations.emplace_back(
            "description",
            fmt::format("rule {} has {} pending, firing and no-data alerts, more than per_rule_max_alerts; its "
                        "alerts are held back until the count falls to the limit",
                        slot.def->name, count));
        snap.state = alert_state::firing;
        snap.level = severity::critical;
        snap.value = static_cast<double>(count);
        snap.active_at = slot.limit_since;
        snap.fired_at = slot.limit_since;
        snap.last_sample_at = slot.limit_since;
        return snap;
    }

    void push_limit_event(const rule_slot& slot, bool firing, time_ms now)
    {
        alert_event event;
        event.what = firing ? alert_event::kind::firing : alert_event::kind::resolved;
        event.alert = limit_snapshot(slot);
        if (!firing) {
            event.alert.state = alert_state::inactive;
            event.alert.resolved_at = now;
            event.alert.reason = reason_text(resolve_reason::recovered);
        }
        persisted_alert& rec = event.record;
        rec.id = event.alert.id;
        rec.rule_name = limit_alert_name;
        rec.series = event.alert.labels;
        rec.state = event.alert.state;
        rec.level = severity::critical;
        rec.value = event.alert.value;
        rec.active_at = slot.limit_since;
        rec.fired_at = slot.limit_since;
        events_.push_back(std::move(event));
    }

    // Marks or clears the rule's alert limit after its count of pending, firing and no-data
    // alerts changed. While the limit is exceeded, the rule's events are held back; tick()
    // announces what they missed afterwards.
    void check_rule_limit(std::uint32_t r)
    {
        rule_slot& slot = slots_[r];
        const std::size_t count = slot.pending + slot.firing + slot.no_data;
        if (!slot.limit_exceeded && count > limits_.per_rule_max_alerts) {
            slot.limit_exceeded = true;
            slot.limit_since = clock_.now_ms();
            push_limit_event(slot, true, slot.limit_since);
        } else if (slot.limit_exceeded && count <= limits_.per_rule_max_alerts) {
            push_limit_event(slot, false, clock_.now_ms());
            slot.limit_exceeded = false;
        }
    }

    // Announces the state a binding's alerts reached while its rule was over the alert limit.
    // An alert that started and ended while held back announces nothing, so a rule that falls
    // back under its limit does not page for every alert it held back.
    void reconcile(std::uint32_t b, std::uint32_t s, time_ms now)
    {
        const binding& entry = bindings_[b];
        if (slots_[entry.rule].limit_exceeded) {
            return;
        }
        if (entry.no_data_since != entry.no_data_announced) {
            if (entry.no_data_since != no_time) {
                push_no_data_event(alert_event::kind::firing, b, s, entry.no_data_since, now);
            } else {
                push_no_data_event(alert_event::kind::resolved, b, s, entry.no_data_announced, now);
            }
        }
        if (entry.announced != entry.state) {
            publish(b, s, transition_kind(entry.state), entry.reason, now);
        } else if (entry.state != alert_state::inactive && entry.level != entry.announced_level) {
            publish(b, s,
                    entry.state == alert_state::firing ? alert_event::kind::severity_changed
                                                        : alert_event::kind::updated,
                    entry.reason, now);
        }
    }

    static alert_event::kind transition_kind(alert_state to)
    {
        switch (to) {
        case alert_state::inactive: return alert_event::kind::resolved;
        case alert_state::pending: return alert_event::kind::pending;
        case alert_state::firing: return alert_event::kind::firing;
        }
        return alert_event::kind::updated;
    }

    void after_change(std::uint32_t b, std::uint32_t s, alert_event::kind what, resolve_reason reason, time_ms at)
    {
        check_rule_limit(bindings_[b].rule);
        publish(b, s, what, reason, at);
    }

    // -- evaluation ---------------------------------------------------------------------

    // Checks a timestamp against max_future_skew and max_sample_age, and always against
    // timestamp_bound_ms (about +-31,700 years around the epoch). parse_duration() rejects
    // durations over 100 years, so with that range `ts +- duration` cannot overflow int64,
    // even when both limits are turned off.
    ingest_status check_timestamp(time_ms ts, time_ms now)
    {
        constexpr time_ms timestamp_bound_ms = 1'000'000'000'000'000;
        if (ts > timestamp_bound_ms) {
            ++too_far_in_future_samples_;
            return ingest_status::too_far_in_future;
        }
        if (ts < -timestamp_bound_ms) {
            ++too_old_samples_;
            return ingest_status::too_old;
        }
        const auto skew = static_cast<std::uint64_t>(limits_.max_future_skew.count());
        if (skew > 0 && ts > now && distance(now, ts) > skew) {
            ++too_far_in_future_samples_;
            return ingest_status::too_far_in_future;
        }
        const auto age = static_cast<std::uint64_t>(limits_.max_sample_age.count());
        if (age > 0 && ts < now && distance(ts, now) > age) {
            ++too_old_samples_;
            return ingest_status::too_old;
        }
        return ingest_status::accepted;
    }

    ingest_status ingest(std::span<const label_view> labels, time_ms ts, double value)
    {
        const time_ms now = clock_.now_ms();
        if (const ingest_status status = check_timestamp(ts, now); status != ingest_status::accepted) {
            return status;
        }
        const std::uint64_t fp = fingerprint_of(labels);
        std::uint32_t s = find_series(fp, labels);
        const bool stale = is_stale_marker(value);

        if (s == npos) {
            if (stale) {
                return ingest_status::stale_marker;
            }
            const auto* candidates = rules_for_metric(metric_name_of(labels));
            if (candidates == nullptr) {
                // No rule reads this metric, so there is nothing to evaluate or remember.
                return ingest_status::accepted;
            }
            if (live_series_ >= limits_.max_series) {
                ++series_limit_rejections_;
                return ingest_status::series_limit;
            }
            s = create_series(fp, labels, now);
            bind_series(s, *candidates);
        } else if (ts == series_[s].last_ts) {
            ++duplicate_samples_;
            return ingest_status::duplicate;
        } else if (ts < series_[s].last_ts) {
            ++out_of_order_samples_;
            return ingest_status::out_of_order;
        }

        if (series_[s].last_ts != no_time) {
            apply_sample_gap(s, series_[s].last_ts, ts);
        }
        series_entry& entry = series_[s];
        entry.last_ts = ts;
        if (stale) {
            entry.stale = true;
            for (std::uint32_t b = entry.first_binding; b != npos; b = bindings_[b].next) {
                mark_missing(b, s, ts, now);
            }
            forget_if_silent(s);
            return ingest_status::stale_marker;
        }
        entry.stale = false;
        entry.last_arrival = now;
        ++samples_evaluated_;

        bool non_numeric = false;
        for (std::uint32_t b = entry.first_binding; b != npos; b = bindings_[b].next) {
            evaluate_sample(b, s, ts, value, now, non_numeric);
        }
        if (non_numeric) {
            ++non_numeric_samples_;
            forget_if_silent(s);
        }
        return ingest_status::accepted;
    }

    void evaluate_sample(std::uint32_t b, std::uint32_t s, time_ms t, double raw, time_ms now, bool& non_numeric)
    {
        binding& entry = bindings_[b];
        const rule& r = *slots_[entry.rule].def;
        if (!is_numeric(raw, r)) {
            non_numeric = true;
            mark_non_numeric(b, s, t, now);
            return;
        }
        // A numeric sample: the series is back.
        entry.forced_missing_at = no_time;
        entry.forced_missing_arrival = no_time;
        if (entry.no_data_since != no_time) {
            resolve_no_data(b, s, t);
        }

        double value = raw;
        if (r.xform.kind != transform_kind::none) {
            if (!entry.window) {
                entry.window = std::make_unique<sample_window>();
                window_bytes_ += sizeof(sample_window) + malloc_overhead;
            }
            const std::size_t before = entry.window->capacity_bytes();
            entry.window->push(t, raw, r.xform.window);
            window_bytes_ += entry.window->capacity_bytes() - before;
            const auto result = evaluate_window(*entry.window, r.xform, t, scratch_);
            if (!result) {
                return; // too few samples: no data point, timers untouched
            }
            if (!is_numeric(*result, r)) {
                non_numeric = true;
                mark_non_numeric(b, s, t, now);
                return;
            }
            value = *result;
        }
        if (r.dynamic) {
            apply_dynamic(b, s, t, value);
        } else {
            apply_value(b, s, t, value);
            observe(b, s, t, value, nullptr);
        }
    }

    // Scores `v` with the binding's detector and runs the tiers on the score. While the
    // detector warms up, the value only feeds the baseline: timers stay as they are. After the
    // tiers ran, the value enters the baseline unless the rule is pending or firing or the
    // score meets the lowest tier, so an anomaly does not become its own baseline.
    void apply_dynamic(std::uint32_t b, std::uint32_t s, time_ms t, double v)
    {
        binding& entry = bindings_[b];
        rule_slot& slot = slots_[entry.rule];
        if (!entry.dynamic) {
            auto state = std::make_unique<dynamic_state>();
            std::string problem;
            state->scorer = make_detector(*slot.def->dynamic, problem);
            if (!state->scorer) {
                // The loader builds a detector from the same spec, so this means a bug.
                ++detector_failures_;
                return;
            }
            state->owner = slot.def;
            entry.dynamic = std::move(state);
            ++warming_up_;
            ++slot.warming_up;
        }
        dynamic_state& dyn = *entry.dynamic;
        const std::uint64_t adaptations_before = dyn.scorer->adaptations();
        dyn.last = dyn.scorer->score(t, v);
        entry.value = v;
        entry.last_sample_at = t;
        if (dyn.last.ready == dyn.warming_up) {
            dyn.warming_up = !dyn.last.ready;
            const int sign = dyn.warming_up ? 1 : -1;
            warming_up_ += static_cast<std::size_t>(sign);
            slot.warming_up += static_cast<std::size_t>(sign);
        }
        bool held_out = false;
        if (dyn.last.ready) {
            settle(b, s, t, dyn.last.score, resolve_reason::recovered, t);
            const rule& r = *slot.def;
            held_out = bindings_[b].state != alert_state::inactive || r.tiers.front().when.holds(dyn.last.score);
        }
        dynamic_state& after = *bindings_[b].dynamic;
        // A noisy shift dips below the threshold now and then. Values within the grace time
        // after the last anomalous one are held out too, so such a shift stays one run of
        // held-out values (and adapt_after can end it) instead of feeding the baseline in bits.
        if (held_out) {
            after.last_held_out = t;
        } else if (after.last_held_out != no_time && after.last.ready &&
                   t - after.last_held_out <= hold_out_grace(*slot.def)) {
            held_out = true;
        }
        after.scorer->learn(t, v, held_out);
        baseline_adaptations_ += after.scorer->adaptations() - adaptations_before;
        const std::size_t bytes = after.scorer->memory_bytes();
        detector_bytes_ += bytes - after.bytes;
        after.bytes = bytes;
        observe(b, s, t, v, &after.last);
    }

    // The grace time after an anomalous value: the lowest tier's `for` or the baseline lag,
    // whichever is longer.
    static time_ms hold_out_grace(const rule& r)
    {
        return std::max(r.tiers.front().for_duration.count(), r.dynamic->lag.count());
    }

    void observe(std::uint32_t b, std::uint32_t s, time_ms t, double v, const detector_output* out)
    {
        if (!observer_) {
            return;
        }
        const binding& entry = bindings_[b];
        evaluation e;
        e.def = slots_[entry.rule].def.get();
        e.series_fingerprint = series_[s].fp;
        e.at = t;
        e.value = v;
        if (out != nullptr) {
            e.detector = *out;
        }
        e.state = entry.state;
        e.level = entry.level;
        observer_(e);
    }

    // A non-numeric value never fires and never resets timers; under on_non_numeric=no_data
    // the series counts as missing from the value's sample time `t`.
    void mark_non_numeric(std::uint32_t b, std::uint32_t s, time_ms t, time_ms now)
    {
        if (slots_[bindings_[b].rule].def->on_non_numeric == non_numeric_action::no_data) {
            mark_missing(b, s, t, now);
        }
    }

    // Makes the binding missing from sample time `t` (a stale marker, or a non-numeric value
    // under on_non_numeric=no_data, arriving at clock time `now`) and applies the rule's no-data
    // action at once, at `t`, so that the outcome does not depend on when tick() runs: resolve
    // resolves the alert, alert also raises the no-data alert, keep_state keeps the alert and
    // its resolve_after counts from `t`. A binding that is missing already stays missing from
    // the earlier time.
    void mark_missing(std::uint32_t b, std::uint32_t s, time_ms t, time_ms now)
    {
        binding& entry = bindings_[b];
        if (entry.forced_missing_at != no_time) {
            return;
        }
        entry.forced_missing_at = t;
        entry.forced_missing_arrival = now;
        const no_data_policy& policy = slots_[entry.rule].def->no_data;
        switch (policy.action) {
        case no_data_action::resolve: resolve_binding(b, s, resolve_reason::missing_series, t); break;
        case no_data_action::keep_state: break;
        case no_data_action::alert:
            resolve_binding(b, s, resolve_reason::missing_series, t);
            if (entry.no_data_since == no_time) {
                raise_no_data(b, s, t);
            }
            break;
        }
    }

    // tick() drops the state of a series once every binding is missing and has no alert, so
    // that a returning sample starts with empty windows and timers. This does the same at once when
    // every binding was made missing by a stale marker or a non-numeric value, so that the
    // next sample finds the same state whether tick() ran in between or not. The series itself
    // stays, so later samples are still checked for order against the marker.
    void forget_if_silent(std::uint32_t s)
    {
        for (std::uint32_t b = series_[s].first_binding; b != npos; b = bindings_[b].next) {
            const binding& entry = bindings_[b];
            if (entry.forced_missing_at == no_time || entry.state != alert_state::inactive ||
                entry.no_data_since != no_time) {
                return;
            }
        }
        clear_timers_and_windows(s, false);
    }

    // Clears the tier timers and windows of a series that counts as missing. Detectors keep
    // their baselines unless `drop_detectors` (a silence of detector_retention_ms or more).
    void clear_timers_and_windows(std::uint32_t s, bool drop_detectors)
    {
        for (std::uint32_t b = series_[s].first_binding; b != npos; b = bindings_[b].next) {
            bindings_[b].held = 0;
            for (auto& timer : bindings_[b].tiers) {
                timer = tier_timer{};
            }
            drop_window(bindings_[b]);
            if (drop_detectors) {
                drop_detector(bindings_[b]);
            }
        }
    }

    bool has_detector(std::uint32_t s) const
    {
        for (std::uint32_t b = series_[s].first_binding; b != npos; b = bindings_[b].next) {
            if (bindings_[b].dynamic) {
                return true;
            }
        }
        return false;
    }

    void apply_value(std::uint32_t b, std::uint32_t s, time_ms t, double v)
    {
        binding& entry = bindings_[b];
        entry.value = v;
        entry.last_sample_at = t;
        settle(b, s, t, v, resolve_reason::recovered, t);
    }

    // Updates the tiers with `v` (when set) at sample time `t`, moves the alert to the state
    // its tier timers give, and publishes the change. A resolution carries `reason`, and
    // `event_at` becomes its resolved_at.
    void settle(std::uint32_t b, std::uint32_t s, time_ms t, std::optional<double> v, resolve_reason reason,
                time_ms event_at)
    {
        binding& entry = bindings_[b];
        const rule& r = *slots_[entry.rule].def;
        const std::size_t tier_count = std::min(r.tiers.size(), max_tiers);

        const alert_state old_state = entry.state;
        const severity old_level = entry.level;
        const std::uint8_t old_held = entry.held;
        const std::uint8_t old_released = released_mask(entry, tier_count);
        tier_timer saved[max_tiers];
        if (old_state == alert_state::inactive) {
            std::copy(std::begin(entry.tiers), std::end(entry.tiers), std::begin(saved));
        }

        if (v) {
            update_tiers(entry, r, tier_count, t, *v);
        }

        int top_satisfied = -1;
        int top_held = -1;
        for (std::size_t i = 0; i < tier_count; ++i) {
            const tier& tr = r.tiers[i];
            const tier_timer& timer = entry.tiers[i];
            const bool held = (entry.held & (1u << i)) != 0;
            if (held) {
                top_held = static_cast<int>(i);
            }
            const bool satisfied = held ? t - timer.held_since >= tr.for_duration.count()
                                        : timer.released_at != no_time &&
                                              t < timer.released_at + tr.keep_firing_for.count();
            if (satisfied) {
                top_satisfied = static_cast<int>(i);
            }
        }
        alert_state new_state = alert_state::inactive;
        severity new_level = old_level;
        if (top_satisfied >= 0) {
            new_state = alert_state::firing;
            new_level = r.tiers[static_cast<std::size_t>(top_satisfied)].level;
        } else if (top_held >= 0) {
            new_state = alert_state::pending;
            new_level = r.tiers[static_cast<std::size_t>(top_held)].level;
        }

        if (old_state == alert_state::inactive && new_state != alert_state::inactive &&
            active_total() >= limits_.max_active_alerts) {
            // No room for a new alert: undo the tier changes so no timer starts.
            entry.held = old_held;
            std::copy(std::begin(saved), std::end(saved), std::begin(entry.tiers));
            ++alert_limit_rejections_;
            return;
        }

        const bool timers_changed = entry.held != old_held || released_mask(entry, tier_count) != old_released;
        if (new_state == old_state && new_level == old_level) {
            if (timers_changed && new_state != alert_state::inactive) {
                after_change(b, s, alert_event::kind::updated, resolve_reason::none, event_at);
            }
            return;
        }

        account(entry, -1);
        entry.state = new_state;
        entry.level = new_level;
        account(entry, +1);

        if (new_state == old_state) {
            after_change(b, s,
                         new_state == alert_state::firing ? alert_event::kind::severity_changed
                                                          : alert_event::kind::updated,
                         resolve_reason::none, event_at);
            return;
        }
        if (old_state == alert_state::inactive) {
            entry.active_at = t;
            entry.reason = resolve_reason::none;
        }
        if (new_state == alert_state::firing) {
            entry.fired_at = t;
        } else if (new_state == alert_state::pending) {
            entry.fired_at = 0;
        } else {
            entry.reason = reason;
        }
        after_change(b, s, transition_kind(new_state), entry.reason, event_at);
    }

    static std::uint8_t released_mask(const binding& entry, std::size_t tier_count)
    {
        std::uint8_t mask = 0;
        for (std::size_t i = 0; i < tier_count; ++i) {
            if (entry.tiers[i].released_at != no_time) {
                mask |= static_cast<std::uint8_t>(1u << i);
            }
        }
        return mask;
    }

    static void update_tiers(binding& entry, const rule& r, std::size_t tier_count, time_ms t, double v)
    {
        for (std::size_t i = 0; i < tier_count; ++i) {
            const tier& tr = r.tiers[i];
            tier_timer& timer = entry.tiers[i];
            const auto bit = static_cast<std::uint8_t>(1u << i);
            if ((entry.held & bit) != 0) {
                const bool release = tr.recover ? tr.recover->holds(v) : !tr.when.holds(v);
                if (release) {
                    entry.held &= static_cast<std::uint8_t>(~bit);
                    const bool was_satisfied = t - timer.held_since >= tr.for_duration.count();
                    if (was_satisfied && tr.keep_firing_for.count() > 0) {
                        timer.released_at = t;
                    }
                }
                continue;
            }
            if (timer.released_at != no_time && t >= timer.released_at + tr.keep_firing_for.count()) {
                timer.released_at = no_time;
            }
            if (!tr.when.holds(v)) {
                continue;
            }
            entry.held |= bit;
            if (timer.released_at != no_time) {
                // Held again within keep_firing_for: the tier never stopped firing, so the
                // earlier hold continues. A restored record has no earlier start; then the
                // hold counts as satisfied from now.
                if (timer.held_since == no_time) {
                    timer.held_since = t - tr.for_duration.count();
                }
                timer.released_at = no_time;
            } else {
                timer.held_since = t;
            }
        }
    }

    // Resolves the binding's alert (not its no-data alert) and clears its timers.
    void resolve_binding(std::uint32_t b, std::uint32_t s, resolve_reason reason, time_ms at)
    {
        binding& entry = bindings_[b];
        if (entry.state == alert_state::inactive) {
            return;
        }
        account(entry, -1);
        entry.state = alert_state::inactive;
        entry.held = 0;
        for (auto& timer : entry.tiers) {
            timer = tier_timer{};
        }
        entry.reason = reason;
        after_change(b, s, alert_event::kind::resolved, reason, at);
    }

    // Raises the binding's no-data alert, active since `at`. It counts toward the rule's alert
    // limit like its other alerts.
    void raise_no_data(std::uint32_t b, std::uint32_t s, time_ms at)
    {
        if (active_total() >= limits_.max_active_alerts) {
            ++alert_limit_rejections_;
            return;
        }
        binding& entry = bindings_[b];
        entry.no_data_since = at;
        account_no_data(entry, +1);
        check_rule_limit(entry.rule);
        push_no_data_event(alert_event::kind::firing, b, s, at, at);
    }

    void resolve_no_data(std::uint32_t b, std::uint32_t s, time_ms at,
                         resolve_reason reason = resolve_reason::recovered)
    {
        binding& entry = bindings_[b];
        account_no_data(entry, -1);
        check_rule_limit(entry.rule);
        push_no_data_event(alert_event::kind::resolved, b, s, entry.no_data_since, at, reason);
        entry.no_data_since = no_time;
    }

    // -- no data ------------------------------------------------------------------------

    void tick()
    {
        const time_ms now = clock_.now_ms();
        for (std::uint32_t s = 0; s < series_.size(); ++s) {
            if (!series_[s].live) {
                continue;
            }
            bool removable = true;
            if (series_[s].first_binding == npos) {
                removable = series_[s].stale || now - series_[s].last_arrival >= unbound_series_idle_ms;
            }
            for (std::uint32_t b = series_[s].first_binding; b != npos; b = bindings_[b].next) {
                reconcile(b, s, now);
                if (!apply_no_data(b, s, now)) {
                    removable = false;
                }
            }
            if (removable && now - series_[s].last_arrival < detector_retention_ms && has_detector(s)) {
                // Keep the baselines; the timers and windows reset as a replay's gap would.
                removable = false;
                clear_timers_and_windows(s, false);
            }
            if (removable) {
                remove_series(s);
            }
        }
    }

    // Applies the no-data policies to a gap in sample time between a series' sample at
    // `previous` and the next one at `t`. For each rule whose timeout the gap reaches, the
    // binding ends up as tick() would have left it had the clock run through the gap. So a
    // replayed stream gives the alerts of live traffic, and a gap counts toward `for` only
    // under keep_state. No no-data alert is raised after the fact, because the series is back
    // already. Resolutions carry the sample time at which the series counted as missing.
    void apply_sample_gap(std::uint32_t s, time_ms previous, time_ms t)
    {
        const std::uint64_t gap = distance(previous, t);
        // tick() drops the state of a series once every binding is missing and has no alert,
        // so that a returning sample starts with empty windows.
        bool forgotten = true;
        for (std::uint32_t b = series_[s].first_binding; b != npos; b = bindings_[b].next) {
            const no_data_policy& policy = slots_[bindings_[b].rule].def->no_data;
            const auto timeout = static_cast<std::uint64_t>(policy.timeout.count());
            // A binding made missing by a stale marker or a non-numeric value is missing from
            // that sample's time, because mark_missing() applied the action then. Any other
            // binding is missing once the gap reaches the timeout. missing_at <= t, so the
            // subtraction below cannot overflow.
            time_ms missing_at = bindings_[b].forced_missing_at;
            if (missing_at == no_time) {
                if (gap < timeout) {
                    forgotten = false;
                    continue;
                }
                missing_at = previous + policy.timeout.count();
            }
            switch (policy.action) {
            case no_data_action::resolve:
                resolve_binding(b, s, resolve_reason::missing_series, missing_at);
                break;
            case no_data_action::keep_state: {
                const auto resolve_after = static_cast<std::uint64_t>(policy.resolve_after.count());
                if (resolve_after > 0 && distance(missing_at, t) >= resolve_after) {
                    resolve_binding(b, s, resolve_reason::missing_series, missing_at + policy.resolve_after.count());
                }
                break;
            }
            case no_data_action::alert:
                // tick() resolves the alert and raises a no-data alert, which keeps the series
                // (and its windows) until the no-data alert resolves.
                resolve_binding(b, s, resolve_reason::missing_series, missing_at);
                forgotten = false;
                break;
            }
            if (bindings_[b].state != alert_state::inactive || bindings_[b].no_data_since != no_time) {
                forgotten = false;
            }
        }
        if (forgotten) {
            clear_timers_and_windows(s, gap >= static_cast<std::uint64_t>(detector_retention_ms));
        }
    }

    // Applies the no-data policy to one binding. Returns true when the binding is missing and
    // has no alert, so the series' state can be dropped.
    bool apply_no_data(std::uint32_t b, std::uint32_t s, time_ms now)
    {
        binding& entry = bindings_[b];
        const no_data_policy& policy = slots_[entry.rule].def->no_data;
        if (entry.forced_missing_at != no_time) {
            // mark_missing() applied the action at the marker's sample time already. This call
            // handles what remains: keep_state's resolve_after, counted on the clock from the
            // marker's arrival and resolved at the sample time apply_sample_gap() would give, and
            // a no-data alert that max_active_alerts held off at the marker.
            if (policy.action == no_data_action::keep_state && policy.resolve_after.count() > 0 &&
                now - entry.forced_missing_arrival >= policy.resolve_after.count()) {
                resolve_binding(b, s, resolve_reason::missing_series,
                                entry.forced_missing_at + policy.resolve_after.count());
            } else if (policy.action == no_data_action::alert && entry.no_data_since == no_time) {
                raise_no_data(b, s, now);
            }
            return entry.state == alert_state::inactive && entry.no_data_since == no_time;
        }
        const time_ms missing_since = series_[s].last_arrival + policy.timeout.count();
        if (now < missing_since) {
            return false;
        }
        switch (policy.action) {
        case no_data_action::resolve:
            resolve_binding(b, s, resolve_reason::missing_series, now);
            break;
        case no_data_action::keep_state:
            if (policy.resolve_after.count() > 0 && now - missing_since >= policy.resolve_after.count()) {
                resolve_binding(b, s, resolve_reason::missing_series, now);
            }
            break;
        case no_data_action::alert:
            resolve_binding(b, s, resolve_reason::missing_series, now);
            if (entry.no_data_since == no_time) {
                raise_no_data(b, s, now);
            }
            break;
        }
        return entry.state == alert_state::inactive && entry.no_data_since == no_time;
    }

    // -- reload and restore -------------------------------------------------------------

    // Returns the slot of the rule with this name. Names are unique within a rule set.
    std::uint32_t find_slot(const std::string& name) const
    {
        for (std::uint32_t r = 0; r < slots_.size(); ++r) {
            if (slots_[r].def->name == name) {
                return r;
            }
        }
        return npos;
    }

    static bool same_transform(const transform& a, const transform& b)
    {
        return a.kind == b.kind && a.window == b.window && a.quantile == b.quantile && a.extrapolate == b.extrapolate;
    }

    static std::vector<severity> levels_of(const rule& r)
    {
        std::vector<severity> levels;
        levels.reserve(r.tiers.size());
        for (const auto& tr : r.tiers) {
            levels.push_back(tr.level);
        }
        return levels;
    }

    // Bit i set when tier i of `r` is held and has held for its `for` at sample time `t`.
    static std::uint8_t satisfied_mask(const binding& entry, const rule& r, time_ms t)
    {
        std::uint8_t mask = 0;
        for (std::size_t i = 0; i < std::min(r.tiers.size(), max_tiers); ++i) {
            if ((entry.held & (1u << i)) != 0 && t - entry.tiers[i].held_since >= r.tiers[i].for_duration.count()) {
                mask |= static_cast<std::uint8_t>(1u << i);
            }
        }
        return mask;
    }

    // Moves a binding's tier timers from tiers of the severities `old_levels` (in the binding's
    // tier order) to the tiers of `new_rule` with the same severity. A tier that only the old
    // tiers have is dropped, and one that only the new rule has starts unheld. A held tier
    // that was satisfied (bit set in `old_satisfied`) stays satisfied at sample time `t` even
    // if the new `for` is longer, so that an edit never sends a firing alert back to pending.
    static void map_tiers(binding& entry, std::span<const severity> old_levels, std::uint8_t old_satisfied,
                          const rule& new_rule, time_ms t)
    {
        tier_timer old_timers[max_tiers];
        std::copy(std::begin(entry.tiers), std::end(entry.tiers), std::begin(old_timers));
        const std::uint8_t old_held = entry.held;
        entry.held = 0;
        for (std::size_t i = 0; i < max_tiers; ++i) {
            entry.tiers[i] = tier_timer{};
            if (i >= new_rule.tiers.size()) {
                continue;
            }
            const tier& tr = new_rule.tiers[i];
            for (std::size_t j = 0; j < std::min(old_levels.size(), max_tiers); ++j) {
                if (old_levels[j] != tr.level) {
                    continue;
                }
                entry.tiers[i] = old_timers[j];
                if ((old_held & (1u << j)) == 0) {
                    continue;
                }
                entry.held |= static_cast<std::uint8_t>(1u << i);
                if ((old_satisfied & (1u << j)) != 0) {
                    entry.tiers[i].held_since = std::min(entry.tiers[i].held_since, t - tr.for_duration.count());
                }
            }
        }
    }

    // A binding kept across an edit of its rule, to evaluate again once the counters are
    // right.
    struct edited_binding {
        std::uint32_t binding = 0;
        std::uint32_t series = 0;
        bool same_transform = false;
    };

    void replace_rules(std::shared_ptr<const rule_set> rules)
    {
        replacing_ = true;
        std::vector<rule_slot> old_slots = std::move(slots_);
        install_rules(rules ? std::move(rules) : std::make_shared<const rule_set>());
        // Old rule index -> index of the new rule with the same name, edited or not.
        std::vector<std::uint32_t> successor(old_slots.size(), npos);
        for (std::uint32_t r = 0; r < old_slots.size(); ++r) {
            successor[r] = find_slot(old_slots[r].def->name);
            if (successor[r] != npos && old_slots[r].limit_exceeded) {
                slots_[successor[r]].limit_exceeded = true;
                slots_[successor[r]].limit_since = old_slots[r].limit_since;
            }
        }
        const time_ms now = clock_.now_ms();

        std::vector<edited_binding> edited;
        std::vector<std::uint32_t> old_chain;
        for (std::uint32_t s = 0; s < series_.size(); ++s) {
            if (!series_[s].live) {
                continue;
            }
            old_chain.clear();
            for (std::uint32_t b = series_[s].first_binding; b != npos; b = bindings_[b].next) {
                old_chain.push_back(b);
            }
            series_[s].first_binding = npos;
            const char* packed = series_[s].labels.get();
            const auto* candidates = rules_for_metric(packed_get(packed, "__name__"));
            std::uint32_t tail = npos;
            if (candidates != nullptr) {
                for (std::uint32_t r : *candidates) {
                    if (!selects(*slots_[r].def, packed)) {
                        continue;
                    }
                    std::uint32_t b = npos;
                    for (auto& old : old_chain) {
                        if (old != npos && successor[bindings_[old].rule] == r) {
                            b = old;
                            old = npos;
                            break;
                        }
                    }
                    if (b == npos) {
                        b = new_binding(r);
                    } else if (const rule& old_rule = *old_slots[bindings_[b].rule].def;
                               old_rule.definition_hash != slots_[r].def->definition_hash) {
                        carry_over(bindings_[b], old_rule, *slots_[r].def);
                        edited.push_back(
                            edited_binding{b, s, same_transform(old_rule.xform, slots_[r].def->xform)});
                    }
                    bindings_[b].rule = r;
                    bindings_[b].next = npos;
                    if (tail == npos) {
                        series_[s].first_binding = b;
                    } else {
                        bindings_[tail].next = b;
                    }
                    tail = b;
                }
            }
            for (std::uint32_t old : old_chain) {
                if (old == npos) {
                    continue;
                }
                const std::uint32_t old_rule = bindings_[old].rule;
                const resolve_reason reason =
                    successor[old_rule] != npos ? resolve_reason::rule_changed : resolve_reason::rule_removed;
                retire_binding(old, s, *old_slots[old_rule].def, reason, now);
                free_binding(old);
            }
            if (series_[s].first_binding == npos && candidates == nullptr) {
                remove_series(s);
            }
        }
        replacing_ = false;
        recount();

        for (const edited_binding& e : edited) {
            reevaluate(e.binding, e.series, e.same_transform, now);
        }
        for (std::uint32_t r = 0; r < old_slots.size(); ++r) {
            if (old_slots[r].limit_exceeded && successor[r] == npos) {
                push_limit_event(old_slots[r], false, now);
            }
        }
        for (std::uint32_t r = 0; r < slots_.size(); ++r) {
            check_rule_limit(r);
        }
    }

    // Moves the timers of a binding of `old_rule` onto the tiers of its edited version. The
    // window restarts when the transform changed, because its samples fed another function.
    void carry_over(binding& entry, const rule& old_rule, const rule& new_rule)
    {
        const std::vector<severity> old_levels = levels_of(old_rule);
        map_tiers(entry, old_levels, satisfied_mask(entry, old_rule, entry.last_sample_at), new_rule,
                  entry.last_sample_at);
        if (!same_transform(old_rule.xform, new_rule.xform)) {
            drop_window(entry);
        }
        if (!same_dynamic(old_rule, new_rule)) {
            drop_detector(entry);
        }
    }

    static bool same_dynamic(const rule& a, const rule& b)
    {
        if (a.dynamic.has_value() != b.dynamic.has_value()) {
            return false;
        }
        return !a.dynamic || canonical_text(*a.dynamic) == canonical_text(*b.dynamic);
    }

    // Evaluates an alert kept across an edit of its rule against the new rule: with its last
    // value at its last sample time when `with_value`, else from the carried-over timers alone
    // (when the last value came from another transform). The alert stays, changes severity or
    // resolves with reason rule_changed. A no-data alert resolves with rule_changed when the
    // rule no longer raises them.
    void reevaluate(std::uint32_t b, std::uint32_t s, bool with_value, time_ms now)
    {
        const rule& r = *slots_[bindings_[b].rule].def;
        if (bindings_[b].no_data_since != no_time && r.no_data.action != no_data_action::alert) {
            resolve_no_data(b, s, now, resolve_reason::rule_changed);
        }
        const binding& entry = bindings_[b];
        if (entry.state == alert_state::inactive) {
            return;
        }
        std::optional<double> value;
        if (r.dynamic) {
            // The tiers of a dynamic rule compare the score, which only exists while the
            // detector is ready.
            if (with_value && entry.dynamic && entry.dynamic->last.ready) {
                value = entry.dynamic->last.score;
            }
        } else if (with_value && is_numeric(entry.value, r)) {
            value = entry.value;
        }
        settle(b, s, entry.last_sample_at, value, resolve_reason::rule_changed, now);
    }

    // Sends the resolved events of a binding whose rule changed or went away: announced for
    // the alerts that were announced (with the state they were announced with), held back for
    // those the store has but that were never announced.
    void retire_binding(std::uint32_t b, std::uint32_t s, const rule& old_rule, resolve_reason reason, time_ms now)
    {
        binding& entry = bindings_[b];
        const label_set series = unpack_labels(series_[s].labels.get());
        if (entry.announced != alert_state::inactive || entry.state != alert_state::inactive) {
            const bool held_back = entry.announced == alert_state::inactive;
            if (!held_back) {
                entry.state = entry.announced;
                entry.level = entry.announced_level;
            }
            events_.push_back(make_event(alert_event::kind::resolved, entry, old_rule, series, reason, now));
            events_.back().held_back = held_back;
        }
        if (entry.no_data_since != no_time || entry.no_data_announced != no_time) {
            const bool held_back = entry.no_data_announced == no_time;
            const time_ms since = held_back ? entry.no_data_since : entry.no_data_announced;
            alert_event event;
            event.what = alert_event::kind::resolved;
            event.alert = no_data_snapshot(entry, old_rule, series, since);
            event.alert.state = alert_state::inactive;
            event.alert.resolved_at = now;
            event.alert.reason = reason_text(reason);
            event.record = no_data_record(entry, old_rule, series, since);
            event.record.state = alert_state::inactive;
            event.held_back = held_back;
            events_.push_back(std::move(event));
        }
    }

    // NOTE: sample windows (rate, *_over_time) are not persisted, so after a restart a windowed
    // rule produces values again only once new samples fill its window (two for rate,
    // increase and delta, one for the *_over_time functions).
    std::size_t restore(const std::vector<persisted_alert>& records)
    {
        std::size_t dropped = 0;
        const time_ms now = clock_.now_ms();
        std::vector<label_view> views;
        for (const auto& rec : records) {
            if (rec.state == alert_state::inactive) {
                continue;
            }
            const std::uint32_t r = find_slot(rec.rule_name);
            if (r == npos) {
                ++dropped;
                continue;
            }
            std::uint32_t s = npos;
            const std::uint32_t b = restored_binding(r, rec.series, now, views, s);
            const bool edited = rec.rule_hash != slots_[r].def->definition_hash;
            if (b == npos || !restore_binding(b, rec, edited)) {
                ++dropped;
                continue;
            }
            series_[s].last_ts = std::max(series_[s].last_ts, rec.last_sample_at);
            if (rec.last_sample_at > 0) {
                // The arrival time of the last sample is not saved. In live use it is the sample
                // time plus the sender's delay, so the sample time is used instead, and the
                // no-data timer continues from the last sample instead of restarting.
                series_[s].last_arrival = std::min(now, series_[s].last_ts);
            }
            if (edited) {
                // The window is empty after a restart, so the saved value is evaluated again
                // only where it is the raw sample value.
                reevaluate(b, s, slots_[r].def->xform.kind == transform_kind::none, now);
            }
        }
        for (std::uint32_t r = 0; r < slots_.size(); ++r) {
            check_rule_limit(r);
        }
        return dropped;
    }

    // Finds or creates the series with `labels` (its index goes to `s`) and returns its binding
    // to rule slot `r`, for a record saved by a previous process. Returns npos when the rule
    // does not select the series or the series limit is reached.
    std::uint32_t restored_binding(std::uint32_t r, const label_set& labels, time_ms now,
                                   std::vector<label_view>& views, std::uint32_t& s)
    {
        views.clear();
        for (const auto& l : labels.items()) {
            views.push_back(label_view{l.name, l.value});
        }
        const std::uint64_t fp = fingerprint_of(views);
        s = find_series(fp, views);
        if (s == npos) {
            const auto* candidates = rules_for_metric(labels.metric_name());
            if (candidates == nullptr || live_series_ >= limits_.max_series) {
                return npos;
            }
            s = create_series(fp, views, now);
            bind_series(s, *candidates);
        }
        std::uint32_t b = series_[s].first_binding;
        while (b != npos && bindings_[b].rule != r) {
            b = bindings_[b].next;
        }
        return b;
    }

    std::vector<baseline_record> baselines() const
    {
        std::vector<baseline_record> out;
        for (std::uint32_t s = 0; s < series_.size(); ++s) {
            if (!series_[s].live) {
                continue;
            }
            for (std::uint32_t b = series_[s].first_binding; b != npos; b = bindings_[b].next) {
                const binding& entry = bindings_[b];
                if (!entry.dynamic) {
                    continue;
                }
                baseline_record rec;
                rec.rule_name = entry.dynamic->owner->name;
                rec.spec_hash = detector_spec_hash(*entry.dynamic->owner->dynamic);
                rec.series = unpack_labels(series_[s].labels.get());
                rec.last_sample_at = series_[s].last_ts;
                entry.dynamic->scorer->save(rec.state);
                rec.last = entry.dynamic->last;
                out.push_back(std::move(rec));
            }
        }
        return out;
    }

    std::size_t restore_baselines(const std::vector<baseline_record>& records)
    {
        std::size_t dropped = 0;
        const time_ms now = clock_.now_ms();
        std::vector<label_view> views;
        // A sample time past what ingest would accept is damage; restoring it would make every
        // new sample of the series look out of order.
        const time_ms latest_sample = now + limits_.max_future_skew.count();
        for (const auto& rec : records) {
            const std::uint32_t r = find_slot(rec.rule_name);
            if (r == npos || !slots_[r].def->dynamic ||
                detector_spec_hash(*slots_[r].def->dynamic) != rec.spec_hash || rec.last_sample_at > latest_sample) {
                ++dropped;
                continue;
            }
            std::uint32_t s = npos;
            const std::uint32_t b = restored_binding(r, rec.series, now, views, s);
            if (b == npos) {
                ++dropped;
                continue;
            }
            auto state = std::make_unique<dynamic_state>();
            std::string problem;
            state->scorer = make_detector(*slots_[r].def->dynamic, problem);
            if (!state->scorer || !state->scorer->load(rec.state)) {
                ++dropped;
                continue;
            }
            state->owner = slots_[r].def;
            state->bytes = state->scorer->memory_bytes();
            // Until the next value is scored, the last output explains restored alerts and
            // shows whether the baseline is ready.
            state->last = rec.last;
            state->warming_up = !rec.last.ready;
            detector_bytes_ += state->bytes;
            drop_detector(bindings_[b]);
            if (state->warming_up) {
                ++warming_up_;
                ++slots_[r].warming_up;
            }
            bindings_[b].dynamic = std::move(state);
            if (rec.last_sample_at > series_[s].last_ts) {
                series_[s].last_ts = rec.last_sample_at;
                // As in restore(): the no-data timer continues from the last sample.
                series_[s].last_arrival = std::min(now, rec.last_sample_at);
            }
        }
        return dropped;
    }

    // Returns the severities of a record's tiers: those saved with it, else the rule's own when
    // the rule is unchanged, else inferred where the record leaves no doubt. Returns an empty
    // list when they cannot be determined.
    static std::vector<severity> record_levels(const persisted_alert& rec, const rule& r, bool edited)
    {
        const std::size_t count = rec.tier_held_since.size();
        if (!rec.tier_levels.empty()) {
            return rec.tier_levels.size() == count ? rec.tier_levels : std::vector<severity>{};
        }
        std::vector<severity> rule_levels = levels_of(r);
        if (!edited) {
            return rule_levels;
        }
        // A rule's tiers have distinct severities in ascending order, so one tier has the
        // alert's level and four tiers have all severities.
        if (count == 1) {
            return {rec.level};
        }
        if (count == 4) {
            return {severity::info, severity::warning, severity::critical, severity::page};
        }
        // Records saved before the store kept tier severities (state schema version 1) carry
        // none. With two or three tiers they are assumed to be the edited rule's when the tier
        // count matches and the alert's level is one of them. A record that fails this test is
        // dropped.
        if (count == rule_levels.size() && std::find(rule_levels.begin(), rule_levels.end(), rec.level) != rule_levels.end()) {
            return rule_levels;
        }
        return {};
    }

    bool restore_binding(std::uint32_t b, const persisted_alert& rec, bool edited)
    {
        binding& entry = bindings_[b];
        const rule& r = *slots_[entry.rule].def;
        if (rec.no_data) {
            if (entry.no_data_since == no_time) {
                entry.no_data_since = rec.active_at;
                entry.no_data_announced = rec.active_at;
                entry.value = rec.value;
                account_no_data(entry, +1);
            }
            return true;
        }
        const std::vector<severity> levels = record_levels(rec, r, edited);
        if (levels.empty() || rec.tier_held_since.size() != levels.size() ||
            rec.tier_released_at.size() != levels.size()) {
            return false;
        }
        account(entry, -1);
        entry.state = rec.state;
        entry.level = rec.level;
        // NOTE: the record does not say whether the alert was announced or held back by the
        // rule's alert limit, so a restored alert counts as announced.
        entry.announced = rec.state;
        entry.announced_level = rec.level;
        entry.value = rec.value;
        entry.active_at = rec.active_at;
        entry.fired_at = rec.fired_at;
        entry.last_sample_at = rec.last_sample_at;
        entry.held = 0;
        for (std::size_t i = 0; i < max_tiers; ++i) {
            entry.tiers[i] = tier_timer{};
            if (i >= levels.size()) {
                continue;
            }
            // NOTE: a persisted 0 means "unset", so a tier that started to hold at sample
            // time 0 (1970-01-01) restores as not held.
            if (rec.tier_held_since[i] != 0) {
                entry.held |= static_cast<std::uint8_t>(1u << i);
                entry.tiers[i].held_since = rec.tier_held_since[i];
            }
            entry.tiers[i].released_at = rec.tier_released_at[i] != 0 ? rec.tier_released_at[i] : no_time;
        }
        // The same mapping as a reload (carry_over()). An unchanged rule gives the exact set of
        // satisfied tiers; an edited one lost the old `for` durations, so the record decides.
        const std::uint8_t satisfied =
            edited ? record_satisfied_mask(entry, levels, rec) : satisfied_mask(entry, r, rec.last_sample_at);
        map_tiers(entry, levels, satisfied, r, rec.last_sample_at);
        account(entry, +1);
        return true;
    }

    // Returns the held tiers (bit i for tier i of `levels`, timers already in `entry`) that a
    // saved alert of an edited rule had satisfied. The old `for` durations are not saved. A
    // pending alert had none. A firing alert's level is its highest satisfied tier, so that
    // tier counts and none above it. A held tier below it counts when it held since the alert
    // fired or earlier, because with ordered thresholds it held along with the higher tier.
    // NOTE: a lower tier whose old `for` was longer and had not elapsed at saving also counts,
    // so when the higher tier clears, the alert steps down instead of going back to pending.
    static std::uint8_t record_satisfied_mask(const binding& entry, std::span<const severity> levels,
                                              const persisted_alert& rec)
    {
        if (rec.state != alert_state::firing) {
            return 0;
        }
        std::uint8_t mask = 0;
        for (std::size_t i = 0; i < std::min(levels.size(), max_tiers); ++i) {
            const auto bit = static_cast<std::uint8_t>(1u << i);
            if ((entry.held & bit) == 0) {
                continue;
            }
            if (levels[i] == rec.level || (levels[i] < rec.level && entry.tiers[i].held_since <= rec.fired_at)) {
                mask |= bit;
            }
        }
        return mask;
    }

    // -- reporting ----------------------------------------------------------------------

    template <class F>
    void for_each_binding(F&& f) const
    {
        for (std::uint32_t s = 0; s < series_.size(); ++s) {
            if (!series_[s].live) {
                continue;
            }
            for (std::uint32_t b = series_[s].first_binding; b != npos; b = bindings_[b].next) {
                f(s, bindings_[b]);
            }
        }
    }

    std::vector<alert_snapshot> alerts() const
    {
        std::vector<alert_snapshot> out;
        for_each_binding([&](std::uint32_t s, const binding& entry) {
            const rule_slot& slot = slots_[entry.rule];
            // A rule over its alert limit shows only its meta alert.
            const bool visible = entry.state != alert_state::inactive && !slot.limit_exceeded;
            const bool no_data_visible = entry.no_data_since != no_time && !slot.limit_exceeded;
            if (!visible && !no_data_visible) {
                return;
            }
            const label_set series = unpack_labels(series_[s].labels.get());
            if (visible) {
                out.push_back(make_event(transition_kind(entry.state), entry, *slot.def, series,
                                         resolve_reason::none, 0)
                                  .alert);
            }
            if (no_data_visible) {
                out.push_back(no_data_snapshot(entry, *slot.def, series, entry.no_data_since));
            }
        });
        for (const auto& slot : slots_) {
            if (slot.limit_exceeded) {
                out.push_back(limit_snapshot(slot));
            }
        }
        return out;
    }

    std::vector<persisted_alert> persisted_state() const
    {
        std::vector<persisted_alert> out;
        for_each_binding([&](std::uint32_t s, const binding& entry) {
            if (entry.state == alert_state::inactive && entry.no_data_since == no_time) {
                return;
            }
            const rule& r = *slots_[entry.rule].def;
            const label_set series = unpack_labels(series_[s].labels.get());
            if (entry.state != alert_state::inactive) {
                out.push_back(make_record(entry, r, series));
            }
            if (entry.no_data_since != no_time) {
                out.push_back(no_data_record(entry, r, series, entry.no_data_since));
            }
        });
        return out;
    }

    // An estimate of the heap and inline bytes the engine holds: containers by capacity,
    // packed label buffers by size plus one malloc header each, windows by ring capacity,
    // and the rule index by node count. Events not yet taken and rule objects (shared with
    // the loader) are left out.
    std::size_t state_bytes() const
    {
        std::size_t bytes = sizeof(engine::impl);
        bytes += series_.capacity() * sizeof(series_entry);
        bytes += free_series_.capacity() * sizeof(std::uint32_t);
        bytes += bindings_.capacity() * sizeof(binding);
        bytes += free_bindings_.capacity() * sizeof(std::uint32_t);
        bytes += index_.bytes();
        bytes += label_bytes_ + live_series_ * malloc_overhead;
        bytes += window_bytes_;
        bytes += detector_bytes_;
        bytes += scratch_.capacity() * sizeof(double);
        bytes += slots_.capacity() * sizeof(rule_slot);
        bytes += by_metric_.bucket_count() * sizeof(void*);
        for (const auto& [metric, list] : by_metric_) {
            bytes += metric.capacity() + list.capacity() * sizeof(std::uint32_t) + 64;
        }
        return bytes;
    }

    engine_stats stats() const
    {
        engine_stats st;
        st.series = live_series_;
        st.pending = pending_total_;
        st.firing = firing_total_ + no_data_total_;
        std::copy(std::begin(firing_by_severity_), std::end(firing_by_severity_), std::begin(st.firing_by_severity));
        st.samples_evaluated = samples_evaluated_;
        st.non_numeric_samples = non_numeric_samples_;
        st.out_of_order_samples = out_of_order_samples_;
        st.duplicate_samples = duplicate_samples_;
        st.too_far_in_future_samples = too_far_in_future_samples_;
        st.too_old_samples = too_old_samples_;
        st.series_limit_rejections = series_limit_rejections_;
        st.alert_limit_rejections = alert_limit_rejections_;
        st.state_bytes = state_bytes();
        st.label_bytes = label_bytes_;
        st.warming_up = warming_up_;
        st.baseline_adaptations = baseline_adaptations_;
        st.detector_bytes = detector_bytes_;
        return st;
    }

    std::vector<rule_stats> rule_statistics() const
    {
        std::vector<rule_stats> out;
        out.reserve(slots_.size());
        for (const auto& slot : slots_) {
            rule_stats rs;
            rs.name = slot.def->name;
            rs.group = slot.def->group;
            rs.series = slot.series;
            rs.warming_up = slot.warming_up;
            rs.pending = slot.pending;
            rs.firing = slot.firing + slot.no_data;
            rs.limit_exceeded = slot.limit_exceeded;
            out.push_back(std::move(rs));
        }
        return out;
    }

    std::shared_ptr<const rule_set> rules_;
    engine_limits limits_;
    const clock& clock_;
    std::vector<rule_slot> slots_;
    std::unordered_map<std::string, std::vector<std::uint32_t>, string_hash, std::equal_to<>> by_metric_;

    std::vector<series_entry> series_;
    std::vector<std::uint32_t> free_series_;
    std::size_t live_series_ = 0;
    std::vector<binding> bindings_;
    std::vector<std::uint32_t> free_bindings_;
    fingerprint_index index_;

    std::vector<alert_event> events_;
    std::vector<double> scratch_;
    std::size_t label_bytes_ = 0;
    std::size_t window_bytes_ = 0;
    std::size_t detector_bytes_ = 0;
    std::size_t warming_up_ = 0;
    std::uint64_t baseline_adaptations_ = 0;
    std::uint64_t detector_failures_ = 0;
    bool replacing_ = false; // inside replace_rules()
    std::function<void(const evaluation&)> observer_;

    std::size_t pending_total_ = 0;
    std::size_t firing_total_ = 0;
    std::size_t no_data_total_ = 0;
    std::size_t firing_by_severity_[5] = {};
    std::uint64_t samples_evaluated_ = 0;
    std::uint64_t non_numeric_samples_ = 0;
    std::uint64_t out_of_order_samples_ = 0;
    std::uint64_t duplicate_samples_ = 0;
    std::uint64_t too_far_in_future_samples_ = 0;
    std::uint64_t too_old_samples_ = 0;
    std::uint64_t series_limit_rejections_ = 0;
    std::uint64_t alert_limit_rejections_ = 0;
};

engine::engine(std::shared_ptr<const rule_set> rules, engine_limits limits, const clock& clock)
    : impl_(std::make_unique<impl>(std::move(rules), limits, clock))
{
}

engine::~engine() = default;

ingest_status engine::ingest(std::span<const label_view> sorted_labels, time_ms timestamp, double value)
{
    return impl_->ingest(sorted_labels, timestamp, value);
}

void engine::tick() { impl_->tick(); }

void engine::replace_rules(std::shared_ptr<const rule_set> rules) { impl_->replace_rules(std::move(rules)); }

void engine::set_limits(engine_limits limits)
{
    impl_->limits_ = limits;
    for (std::uint32_t r = 0; r < impl_->slots_.size(); ++r) {
        impl_->check_rule_limit(r);
    }
}

const engine_limits& engine::limits() const { return impl_->limits_; }

const rule_set& engine::rules() const { return *impl_->rules_; }

time_ms engine::now_ms() const { return impl_->clock_.now_ms(); }

std::size_t engine::restore(const std::vector<persisted_alert>& records) { return impl_->restore(records); }

std::vector<baseline_record> engine::baselines() const { return impl_->baselines(); }

std::size_t engine::restore_baselines(const std::vector<baseline_record>& records)
{
    return impl_->restore_baselines(records);
}

std::vector<alert_event> engine::take_events()
{
    std::vector<alert_event> out;
    out.swap(impl_->events_);
    return out;
}

std::vector<alert_snapshot> engine::alerts() const { return impl_->alerts(); }

std::vector<persisted_alert> engine::persisted_state() const { return impl_->persisted_state(); }

engine_stats engine::stats() const { return impl_->stats(); }

std::vector<rule_stats> engine::rule_statistics() const { return impl_->rule_statistics(); }

void engine::set_observer(std::function<void(const evaluation&)> observer) { impl_->observer_ = std::move(observer); }

} // namespace tocsin
