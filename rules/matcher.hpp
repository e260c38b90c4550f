#pragma once
// Prometheus label matchers: =, !=, =~, !~. Regexes go through RE2 and are fully anchored,
// as in PromQL: `instance=~"web"` matches only "web", never "web-2". An absent label
// matches as the empty string.

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "rules/labels.hpp"

namespace re2 {
class RE2;
}

namespace tocsin {

enum class match_op { equal, not_equal, regex, not_regex };

class label_matcher {
public:
    // Builds a matcher; for regex operators returns nullopt and fills `error` when the
    // pattern does not compile.
    static std::optional<label_matcher> make(std::string name, match_op op, std::string value,
                                             std::string& error);

    // Parses one matcher in PromQL syntax: name="v", name!="v", name=~"re", name!~"re",
    // with a quoted name for UTF-8 names ("service.name"="checkout"). An unquoted value
    // is accepted for =/!= (severity=critical). Fills `error` and returns nullopt on
    // malformed input such as `foo=` or `foo=~`.
    static std::optional<label_matcher> parse(std::string_view text, std::string& error);

    bool matches(std::string_view value) const;
    bool matches(const label_set& labels) const { return matches(labels.get(name_)); }

    const std::string& name() const { return name_; }
    match_op op() const { return op_; }
    const std::string& value() const { return value_; }
    std::string to_string() const;

private:
    std::string name_;
    match_op op_ = match_op::equal;
    std::string value_;
    std::shared_ptr<const re2::RE2> regex_; // set for regex and not_regex
};

} // namespace tocsin
