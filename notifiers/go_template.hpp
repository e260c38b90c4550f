#pragma once
// Notification templates in the Go text/template language, as Alertmanager uses them, over
// JSON data shaped like Alertmanager's template data:
//   {Receiver, Status, Alerts: [{Status, Labels, Annotations, StartsAt, EndsAt, GeneratorURL,
//    Fingerprint}], GroupLabels, CommonLabels, CommonAnnotations, ExternalURL}
// Supported: actions with {{- -}} trimming, comments, pipelines, variables ($x := , $x =),
// if / else if / else, range (over arrays and objects, with $i, $v :=, and else), with,
// define, template, block, and the functions and methods Alertmanager templates use
// (see go_template.cpp). Templates parse when the config loads; a reference to an undefined
// template is a load error. Rendering can still fail on data (an index out of range, `required`
// on an empty value): render() then reports the error and the caller falls back to a default.

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "rules/diagnostics.hpp"

namespace tocsin::gotmpl {

struct parsed_template;

class template_set {
public:
    // A set that contains the default templates (default_templates.cpp), under Alertmanager's names
    // such as "__subject", "slack.default.title", "pagerduty.default.description".
    template_set();
    ~template_set();
    template_set(template_set&&) noexcept;
    template_set& operator=(template_set&&) noexcept;

    // Parses a template file and adds its {{ define }} blocks. Errors go to `diags` as
    // file:line:column. A define of a name that already exists replaces it, as in Go.
    bool add_file(const std::string& file, std::string_view source, diagnostics& diags);

    // Parses a template given inline in the config. Returns an index for render(), or nullopt
    // with `error` naming the problem and the line:column within the template text.
    std::optional<std::size_t> add_inline(std::string_view source, std::string& error);

    // Checks that every {{ template "x" }} in the set names a defined template. Reports each
    // missing name once, with where it is used.
    bool check_references(diagnostics& diags, const std::string& config_file) const;

    // Renders an inline template or a named one. On failure returns false, leaves `out` holding
    // nothing, and sets `error` ("index out of range: 0 at 1:5" style).
    bool render(std::size_t inline_index, const nlohmann::json& data, std::string& out, std::string& error) const;
    bool render_named(std::string_view name, const nlohmann::json& data, std::string& out,
                      std::string& error) const;
    bool has(std::string_view name) const;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

} // namespace tocsin::gotmpl
