#pragma once
// Loads the `dynamic:` block of a rule into a detector_spec. Part of the rule loader; kept apart
// because the block has many keys that apply to only some detector types.

#include <cstdint>
#include <optional>
#include <string>

#include <yaml-cpp/yaml.h>

#include "rules/detector.hpp"
#include "rules/yaml_check.hpp"

namespace tocsin {

struct dynamic_block {
    detector_spec spec;
    // `k: 3` gives a rule without `tiers` one warning tier "> 3".
    std::optional<double> k;
    YAML::Mark k_mark;
};

// Reads the block, reporting every problem through `check`. `rule_dir` is the folder of the
// rule file, against which relative file names resolve. Returns nothing when the block is
// unusable; the errors are then in `check`.
std::optional<dynamic_block> load_dynamic_block(const YAML::Node& node, const std::string& rule_dir,
                                                yaml::checker& check);

// A canonical text of the spec for the rule's definition hash.
std::string canonical_text(const detector_spec& spec);

// A 64-bit hash of canonical_text(spec): saved detector state is only given back to a detector
// of the same spec.
std::uint64_t detector_spec_hash(const detector_spec& spec);

} // namespace tocsin
