#pragma once
// Inhibition with Alertmanager's semantics: while a source alert fires, target alerts with the
// same values of the rule's `equal` labels are muted.
//
// - A label named in `equal` and absent on both alerts counts as equal (both are empty), as in
//   Alertmanager. So a rule whose `equal` labels the source matchers do not require lets any
//   source alert without them inhibit every target alert without them.
// - An alert never inhibits itself. An alert that matches both the source and the target
//   matchers cannot inhibit another alert that also matches both, so among several such alerts
//   none is muted. An alert that matches only the source side still inhibits them.
//
// Thread safety: none. One owner calls every member function.

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "rules/clock.hpp"
#include "routing/alert.hpp"
#include "routing/config.hpp"

namespace tocsin {

class inhibitor {
public:
    explicit inhibitor(std::vector<inhibit_rule_config> rules);

    // Records the current form of an alert (by alert::id): a candidate source while it fires.
    void observe(const alert& a);
    // Forgets an alert that left the dispatcher.
    void forget(std::uint64_t id);

    // Ids of the firing source alerts that mute an alert with `labels` at `now`, sorted; empty
    // when nothing does. `self` is the id of that alert, which never inhibits itself.
    std::vector<std::uint64_t> inhibited_by(std::uint64_t self, const label_set& labels, time_ms now) const;
    bool inhibited(std::uint64_t self, const label_set& labels, time_ms now) const;

    bool empty() const { return rules_.empty(); }

private:
    struct source {
        label_set labels;
        time_ms ends_at = 0;
        bool also_target = false; // matches the rule's target matchers too
    };
    struct rule_state {
        inhibit_rule_config config;
        std::unordered_map<std::uint64_t, source> sources; // by alert id
    };

    // Calls `found` for each inhibiting source id until it returns false.
    template <typename Found>
    void each_inhibitor(std::uint64_t self, const label_set& labels, time_ms now, Found found) const;

    std::vector<rule_state> rules_;
};

} // namespace tocsin
