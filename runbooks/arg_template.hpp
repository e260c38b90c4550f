#pragma once
// Argument templates for runbook steps. A template is literal text with placeholders:
//   {{ $labels.<name> }}      an alert label; <name> must be declared under the runbook's params
//   {{ $run.id }}             the run's id
//   {{ $runbook.name }}       the runbook's name
//   {{ $episode.start }}      the firing episode's start, RFC 3339 UTC with milliseconds
//   {{ $alert.fingerprint }}  the alert's label fingerprint, 16 hex digits
// Nothing else: no functions, no pipes, no conditionals. Templates are parsed when runbooks
// load, so an unknown placeholder or an undeclared label is a load error.
//
// A label value is inserted only when it fully matches the pattern its param declares (RE2,
// anchored at both ends) and contains no NUL byte. Rendering never splits: one template renders to
// exactly one string, and an argv element stays one argv element whatever the value holds.

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rules/clock.hpp"
#include "rules/labels.hpp"

namespace re2 {
class RE2;
}

namespace tocsin::runbooks {

// One entry of a runbook's params: the only labels its templates may use.
struct param {
    std::string name;
    std::string pattern;                 // as written in the file
    std::shared_ptr<const re2::RE2> re;  // compiled; matched against the whole value

    // True when `value` matches the whole pattern.
    bool accepts(std::string_view value) const;
};

// Compiles a param pattern. Returns nullopt and sets `error` when RE2 rejects it.
std::optional<param> make_param(std::string name, std::string pattern, std::string& error);

// Escaping applied to inserted values. Literal text is never changed.
enum class escape_mode {
    none, // argv elements, environment values, notification text
    url,  // percent-encodes every byte outside A-Z a-z 0-9 - . _ ~
    json, // escapes as the inside of a JSON string: the template puts the quotes around it
};

// Values a template may refer to when it renders.
struct render_context {
    const label_set* labels = nullptr;
    const std::vector<param>* params = nullptr;
    std::string run_id;
    std::string runbook;
    time_ms episode_start = 0;
    std::uint64_t fingerprint = 0;
};

class arg_template {
public:
    struct piece {
        enum class kind { literal, label, run_id, runbook, episode_start, fingerprint } what = kind::literal;
        std::string text; // literal text, or the label name
    };

    // Parses `source`. `params` are the declared labels; a placeholder naming another label is
    // an error. On failure returns false and sets `error` to a message that names the part and
    // its column within the template.
    static bool parse(std::string_view source, const std::vector<param>& params, arg_template& out,
                      std::string& error);

    // Renders, or returns nullopt and sets `error` ("label model: value \"x; rm\" does not match
    // the pattern ..."). A missing label is an error too: an empty argument is never inserted.
    std::optional<std::string> render(const render_context& ctx, escape_mode mode, std::string& error) const;

    const std::string& source() const { return source_; }
    const std::vector<piece>& pieces() const { return pieces_; }
    // True when the template has no placeholder.
    bool is_literal() const;
    // The text before the first placeholder.
    std::string literal_prefix() const;

private:
    std::string source_;
    std::vector<piece> pieces_;
};

// RFC 3339 UTC with milliseconds: 2024-05-01T12:00:00.000Z.
std::string format_rfc3339(time_ms t);

// Quotes a value for a message: control bytes, quotes and backslashes escaped, long values cut.
std::string quote_value(std::string_view value);

} // namespace tocsin::runbooks
