#include "routing/inhibit.hpp"

#include <algorithm>
#include <utility>

namespace tocsin {

namespace {

bool matches_all(const std::vector<label_matcher>& matchers, const label_set& labels)
{
    return std::all_of(matchers.begin(), matchers.end(), [&](const label_matcher& m) { return m.matches(labels); });
}

} // namespace

inhibitor::inhibitor(std::vector<inhibit_rule_config> rules)
{
    rules_.reserve(rules.size());
    for (auto& r : rules) {
        rules_.push_back(rule_state{std::move(r), {}});
    }
}

void inhibitor::observe(const alert& a)
{
    for (rule_state& r : rules_) {
        if (matches_all(r.config.source_matchers, a.labels)) {
            r.sources[a.id] = source{a.labels, a.ends_at, matches_all(r.config.target_matchers, a.labels)};
        } else {
            r.sources.erase(a.id);
        }
    }
}

void inhibitor::forget(std::uint64_t id)
{
    for (rule_state& r : rules_) {
        r.sources.erase(id);
    }
}

template <typename Found>
void inhibitor::each_inhibitor(std::uint64_t self, const label_set& labels, time_ms now, Found found) const
{
    for (const rule_state& r : rules_) {
        if (r.sources.empty() || !matches_all(r.config.target_matchers, labels)) {
            continue;
        }
        const bool target_is_two_sided = matches_all(r.config.source_matchers, labels);
        for (const auto& [id, s] : r.sources) {
            if (id == self || (s.ends_at != 0 && s.ends_at <= now)) {
                continue;
            }
            if (target_is_two_sided && s.also_target) {
                continue;
            }
            const bool equal = std::all_of(r.config.equal.begin(), r.config.equal.end(), [&](const std::string& name) {
                return s.labels.get(name) == labels.get(name);
            });
            if (equal && !found(id)) {
                return;
            }
        }
    }
}

std::vector<std::uint64_t> inhibitor::inhibited_by(std::uint64_t self, const label_set& labels, time_ms now) const
{
    std::vector<std::uint64_t> out;
    each_inhibitor(self, labels, now, [&](std::uint64_t id) {
        out.push_back(id);
        return true;
    });
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

bool inhibitor::inhibited(std::uint64_t self, const label_set& labels, time_ms now) const
{
    bool any = false;
    each_inhibitor(self, labels, now, [&](std::uint64_t) {
        any = true;
        return false;
    });
    return any;
}

} // namespace tocsin
