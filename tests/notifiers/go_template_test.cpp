#include <catch2/catch.hpp>

#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

#include "notifiers/go_template.hpp"

using nlohmann::json;
using tocsin::diagnostics;
using tocsin::gotmpl::template_set;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

// Renders an inline template; fails the test when it does not parse or render.
std::string render(const std::string& source, const json& data = json::object())
{
    template_set set;
    std::string error;
    auto index = set.add_inline(source, error);
    INFO("parse error: " << error);
    REQUIRE(index.has_value());
    std::string out;
    bool ok = set.render(*index, data, out, error);
    INFO("render error: " << error);
    REQUIRE(ok);
    return out;
}

// Returns the parse error of an inline template; fails the test when it parses.
std::string parse_error(const std::string& source)
{
    template_set set;
    std::string error;
    auto index = set.add_inline(source, error);
    INFO("source: " << source);
    REQUIRE_FALSE(index.has_value());
    return error;
}

// Returns the runtime error of an inline template; fails the test when it renders.
std::string render_error(const std::string& source, const json& data = json::object())
{
    template_set set;
    std::string error;
    auto index = set.add_inline(source, error);
    INFO("parse error: " << error);
    REQUIRE(index.has_value());
    std::string out = "stale";
    bool ok = set.render(*index, data, out, error);
    INFO("output: " << out);
    REQUIRE_FALSE(ok);
    CHECK(out.empty());
    return error;
}

json alert(const std::string& status, const std::string& instance, json annotations)
{
    return json{{"Status", status},
                {"Labels", {{"alertname", "DiskFull"}, {"env", "prod"}, {"service", "db"}, {"instance", instance}}},
                {"Annotations", std::move(annotations)},
                {"StartsAt", "2024-05-01T10:00:00Z"},
                {"EndsAt", "0001-01-01T00:00:00Z"},
                {"GeneratorURL", "http://prometheus.example/graph?g0.expr=disk"},
                {"Fingerprint", "f00d" + instance}};
}

// Data shaped like Alertmanager's template data: two firing alerts and one resolved.
json sample_data()
{
    return json{
        {"Receiver", "team db"},
        {"Status", "firing"},
        {"Alerts", json::array({alert("firing", "h1", {{"summary", "disk 95% full"}, {"runbook_url", "https://runbooks/disk"}}),
                                alert("firing", "h2", {{"summary", "disk 97% full"}}),
                                alert("resolved", "h3", {{"summary", "disk 80% full"}})})},
        {"GroupLabels", {{"alertname", "DiskFull"}}},
        {"CommonLabels", {{"alertname", "DiskFull"}, {"env", "prod"}, {"service", "db"}}},
        {"CommonAnnotations", json::object()},
        {"ExternalURL", "http://alertmanager.example:9093"},
    };
}

} // namespace

TEST_CASE("go template renders text and fields")
{
    json data = {{"A", {{"B", "deep"}}}, {"Name", "x"}, {"N", 42}, {"F", 2.5}, {"T", true}};
    CHECK(render("plain text") == "plain text");
    CHECK(render("{{ .Name }}-{{ .A.B }}", data) == "x-deep");
    CHECK(render("{{ .N }} {{ .F }} {{ .T }}", data) == "42 2.5 true");
    CHECK(render("{{ .Missing }}|{{ .Missing.Deeper }}|{{ .A.Nope }}", data) == "||");
    CHECK(render("{{ . }}", json("dot")) == "dot");
    CHECK(render("{{ $.Name }}", data) == "x");
    CHECK(render("{{ .L }} {{ .M }}", json{{"L", {1, "a"}}, {"M", {{"k", "v"}, {"j", 2}}}}) == "[1 a] map[j:2 k:v]");
}

TEST_CASE("go template trims white space next to dashes")
{
    CHECK(render("a  \n {{- \"b\" -}} \n  c") == "abc");
    CHECK(render("a {{- \"b\" }} c") == "ab c");
    CHECK(render("a {{ \"b\" -}} c") == "a bc");
    CHECK(render("x {{- /* note */ -}} y") == "xy");
    // A dash without a space is a negative number, not a trim marker.
    CHECK(render("a {{-3}} b") == "a -3 b");
}

TEST_CASE("go template comments render nothing")
{
    CHECK(render("a{{/* a comment\n over lines */}}b") == "ab");
    CHECK_THAT(parse_error("a{{/* never closed }}"), Contains("unclosed comment"));
    CHECK_THAT(parse_error("{{/* c */ .X }}"), Contains("comment ends before the closing delimiter"));
}

TEST_CASE("go template literals")
{
    CHECK(render(R"t({{ "tab\there \"q\" \u00e9 \x41" }})t") == "tab\there \"q\" \xc3\xa9 A");
    CHECK(render("{{ `raw \\n text` }}") == "raw \\n text");
    CHECK(render("{{ 42 }} {{ -7 }} {{ 0x1F }} {{ 1_000 }} {{ 1.5 }} {{ 1e3 }} {{ 'a' }}") == "42 -7 31 1000 1.5 1000 97");
    CHECK(render("{{ true }} {{ false }}") == "true false");
    CHECK(render("{{ 1000000.0 }} {{ 0.00001 }}") == "1e+06 1e-05");
    CHECK_THAT(parse_error("{{ nil }}"), Contains("nil is not a command"));
    CHECK_THAT(parse_error("{{ 12ab }}"), Contains("bad number syntax: \"12ab\""));
    CHECK_THAT(parse_error("{{ \"bad \\q escape\" }}"), Contains("invalid escape"));
}

TEST_CASE("go template variables")
{
    json data = {{"Name", "n"}, {"Inner", {{"V", "iv"}}}};
    CHECK(render("{{ $x := .Name }}[{{ $x }}]", data) == "[n]");
    CHECK(render("{{ $x := 1 }}{{ $x = 2 }}{{ $x }}", data) == "2");
    CHECK(render("{{ $i := .Inner }}{{ $i.V }}", data) == "iv");
    CHECK(render("{{ with .Inner }}{{ .V }} {{ $.Name }}{{ end }}", data) == "iv n");
    // Assignment inside a range changes the outer variable, as in Go.
    CHECK(render("{{ $n := 0 }}{{ range .L }}{{ $n = . }}{{ end }}{{ $n }}", json{{"L", {1, 2, 3}}}) == "3");
    CHECK_THAT(parse_error("{{ $y }}"), Contains("undefined variable \"$y\""));
    CHECK_THAT(parse_error("{{ $y = 1 }}"), Contains("undefined variable \"$y\""));
    CHECK_THAT(parse_error("{{ if true }}{{ $z := 1 }}{{ end }}{{ $z }}"), Contains("undefined variable \"$z\""));
    CHECK_THAT(parse_error("{{ define \"t\" }}{{ $outer }}{{ end }}"), Contains("undefined variable"));
}

TEST_CASE("go template pipelines and parentheses")
{
    json data = {{"S", "MiXed"}, {"L", {"a", "b"}}};
    CHECK(render("{{ .S | toLower | toUpper }}", data) == "MIXED");
    CHECK(render("{{ printf \"%s-%s\" (index .L 0) (index .L 1) }}", data) == "a-b");
    CHECK(render("{{ (index .L 1) | toUpper }}", data) == "B");
    CHECK(render("{{ (.S) }}", data) == "MiXed");
    CHECK(render("{{ len (stringSlice \"x\" \"y\" \"z\") }}", data) == "3");
    CHECK_THAT(parse_error("{{ \"a\" | \"b\" }}"), StartsWith("1:10: cannot pipe a value into"));
    CHECK_THAT(render_error("{{ .S \"arg\" }}", data), Contains("S is a field, not a method"));
    CHECK_THAT(parse_error("{{ printf\"x\" }}"), Contains("missing space"));
}

TEST_CASE("go template if else if else")
{
    const std::string t = "{{ if eq .V 1 }}one{{ else if eq .V 2 }}two{{ else }}many{{ end }}";
    CHECK(render(t, json{{"V", 1}}) == "one");
    CHECK(render(t, json{{"V", 2}}) == "two");
    CHECK(render(t, json{{"V", 9}}) == "many");
    // Truthiness as in Go: empty string, 0, false, nil and empty collections are false.
    for (const json& empty : {json(""), json(0), json(false), json(nullptr), json::array(), json::object(), json(0.0)}) {
        CHECK(render("{{ if .X }}yes{{ else }}no{{ end }}", json{{"X", empty}}) == "no");
    }
    for (const json& full : {json("a"), json(1), json(true), json::array({1}), json{{"k", "v"}}}) {
        CHECK(render("{{ if .X }}yes{{ else }}no{{ end }}", json{{"X", full}}) == "yes");
    }
    CHECK(render("{{ if .Missing }}yes{{ else }}no{{ end }}") == "no");
    CHECK(render("{{ if $x := .V }}{{ $x }}{{ end }}", json{{"V", "kept"}}) == "kept");
}

TEST_CASE("go template with and else")
{
    CHECK(render("{{ with .A }}[{{ . }}]{{ else }}none{{ end }}", json{{"A", "a"}}) == "[a]");
    CHECK(render("{{ with .A }}[{{ . }}]{{ else }}none{{ end }}", json{{"A", ""}}) == "none");
    CHECK(render("{{ with .A }}a{{ else with .B }}b={{ . }}{{ else }}none{{ end }}", json{{"B", "x"}}) == "b=x");
}

TEST_CASE("go template range over arrays objects and integers")
{
    json data = {{"L", {"a", "b", "c"}}, {"M", {{"zeta", 1}, {"alpha", 2}, {"mid", 3}}}, {"E", json::array()}};
    CHECK(render("{{ range .L }}<{{ . }}>{{ end }}", data) == "<a><b><c>");
    CHECK(render("{{ range $i, $v := .L }}{{ $i }}={{ $v }} {{ end }}", data) == "0=a 1=b 2=c ");
    CHECK(render("{{ range $v := .L }}{{ $v }}{{ end }}", data) == "abc");
    // Objects iterate in sorted key order, as Go's maps do in templates.
    CHECK(render("{{ range $k, $v := .M }}{{ $k }}:{{ $v }} {{ end }}", data) == "alpha:2 mid:3 zeta:1 ");
    CHECK(render("{{ range .E }}x{{ else }}empty{{ end }}", data) == "empty");
    CHECK(render("{{ range .Missing }}x{{ else }}none{{ end }}", data) == "none");
    CHECK(render("{{ range 3 }}{{ . }}{{ end }}") == "012");
    CHECK(render("{{ range .L }}{{ if eq . \"b\" }}{{ continue }}{{ end }}{{ . }}{{ end }}", data) == "ac");
    CHECK(render("{{ range .L }}{{ if eq . \"b\" }}{{ break }}{{ end }}{{ . }}{{ end }}", data) == "a");
    CHECK_THAT(parse_error("{{ break }}"), Contains("outside {{range}}"));
    CHECK_THAT(render_error("{{ range .S }}{{ end }}", json{{"S", "str"}}), Contains("range cannot iterate over string"));
}

TEST_CASE("go template define template and block")
{
    CHECK(render("{{ define \"t\" }}[{{ . }}]{{ end }}{{ template \"t\" \"arg\" }}") == "[arg]");
    CHECK(render("{{ define \"t\" }}[{{ .X }}]{{ end }}{{ template \"t\" . }}", json{{"X", 1}}) == "[1]");
    CHECK(render("{{ define \"t\" }}no dot:{{ . }}{{ end }}{{ template \"t\" }}") == "no dot:");
    CHECK(render("{{ block \"b\" .X }}default {{ . }}{{ end }}", json{{"X", "x"}}) == "default x");

    template_set set;
    diagnostics diags;
    REQUIRE(set.add_file("a.tmpl", R"t({{ define "greet" }}hello {{ .Name }}{{ end }})t", diags));
    std::string out;
    std::string error;
    REQUIRE(set.render_named("greet", json{{"Name", "ann"}}, out, error));
    CHECK(out == "hello ann");
    // A later define of the same name replaces the earlier one.
    REQUIRE(set.add_file("b.tmpl", R"t({{ define "greet" }}hi {{ .Name }}{{ end }})t", diags));
    REQUIRE(set.render_named("greet", json{{"Name", "bob"}}, out, error));
    CHECK(out == "hi bob");
    // A block in a file can be overridden by a later define.
    REQUIRE(set.add_file("c.tmpl", R"t({{ block "part" . }}base{{ end }})t", diags));
    CHECK(set.has("part"));
    REQUIRE(set.add_file("d.tmpl", R"t({{ define "part" }}custom{{ end }})t", diags));
    auto index = set.add_inline(R"(<{{ template "greet" . }}/{{ template "part" }}>)", error);
    REQUIRE(index.has_value());
    REQUIRE(set.render(*index, json{{"Name", "cy"}}, out, error));
    CHECK(out == "<hi cy/custom>");
    CHECK(diags.empty());
    CHECK_FALSE(set.render_named("nope", json::object(), out, error));
    CHECK_THAT(error, Contains("\"nope\" is not defined"));
}

TEST_CASE("go template alert methods")
{
    json data = sample_data();
    CHECK(render("{{ len .Alerts.Firing }}/{{ len .Alerts.Resolved }}", data) == "2/1");
    CHECK(render("{{ range .CommonLabels.SortedPairs }}{{ .Name }}={{ .Value }};{{ end }}", data) ==
          "alertname=DiskFull;env=prod;service=db;");
    CHECK(render("{{ join \",\" .CommonLabels.Names }}|{{ join \",\" .CommonLabels.Values }}", data) ==
          "alertname,env,service|DiskFull,prod,db");
    CHECK(render("{{ join \",\" .CommonLabels.SortedPairs.Values }}", data) == "DiskFull,prod,db");
    CHECK(render("{{ range (.CommonLabels.Remove (stringSlice \"env\" \"alertname\")).SortedPairs }}{{ .Name }}{{ end }}",
                 data) == "service");
    CHECK(render("{{ with .CommonLabels.Remove .GroupLabels.Names }}{{ join \" \" .Values }}{{ end }}", data) == "prod db");
    // A member of the same name wins over the method.
    CHECK(render("{{ .L.Names }}", json{{"L", {{"Names", "member"}}}}) == "member");
    CHECK_THAT(render_error("{{ .CommonLabels.alertname.Foo }}", data), Contains("cannot evaluate field Foo in type string"));
    CHECK_THAT(render_error("{{ .CommonLabels.Remove }}", data), Contains("wrong number of arguments for Remove"));
}

TEST_CASE("go template range over firing alerts with sorted pairs")
{
    const std::string t = R"t({{ range .Alerts.Firing -}}
* {{ .Labels.instance }}: {{ .Annotations.summary }}
{{ range .Labels.SortedPairs }}  {{ .Name }}={{ .Value }}
{{ end -}}
{{ end -}})t";
    CHECK(render(t, sample_data()) ==
          "* h1: disk 95% full\n  alertname=DiskFull\n  env=prod\n  instance=h1\n  service=db\n"
          "* h2: disk 97% full\n  alertname=DiskFull\n  env=prod\n  instance=h2\n  service=db\n");
}

TEST_CASE("go template builtin functions")
{
    json data = {{"L", {"a", "b", "c"}}, {"M", {{"k", "v"}}}, {"S", "hello"}, {"E", ""}, {"Z", 0}};
    CHECK(render("{{ and 1 \"x\" }} {{ and 1 0 }} {{ or .E \"fallback\" }} {{ or 0 .E }}", data) == "x 0 fallback ");
    // and/or stop at the deciding argument, so the failing index is never evaluated.
    CHECK(render("{{ or .S (index .L 99) }}", data) == "hello");
    CHECK(render("{{ not .E }} {{ not .S }}", data) == "true false");
    CHECK(render("{{ len .L }} {{ len .M }} {{ len .S }} {{ len .Missing }}", data) == "3 1 5 0");
    CHECK(render("{{ index .L 1 }} {{ index .M \"k\" }}[{{ index .M \"none\" }}]", data) == "b v[]");
    CHECK(render("{{ slice .L 1 }} {{ slice .S 1 3 }} {{ slice .L 0 1 }}", data) == "[b c] el [a]");
    CHECK(render("{{ print \"a\" 1 2 \"b\" }}", data) == "a1 2b");
    CHECK(render("{{ println \"a\" 1 }}", data) == "a 1\n");
    CHECK(render("{{ eq .S \"x\" \"hello\" }} {{ eq 1 1 }} {{ ne .S \"hello\" }} {{ eq .Missing \"\" }}", data) ==
          "true true false true");
    CHECK(render("{{ lt 1 2 }} {{ le 2 2 }} {{ gt \"b\" \"a\" }} {{ ge 1 2 }} {{ lt 1 1.5 }}", data) ==
          "true true true false true");
    CHECK_THAT(render_error("{{ lt 1 \"a\" }}", data), Contains("incompatible types for comparison"));
    CHECK_THAT(render_error("{{ eq .L .L }}", data), Contains("non-comparable"));
    CHECK(render(R"t({{ html "<a href='x'>&\"" }})t") == "&lt;a href=&#39;x&#39;&gt;&amp;&#34;");
    CHECK(render(R"t({{ js "it's <b> \"q\" =" }})t") == R"(it\'s \u003Cb\u003E \"q\" \u003D)");
    CHECK(render(R"t({{ urlquery "a b&c=d/é" }})t") == "a+b%26c%3Dd%2F%C3%A9");
    CHECK_THAT(parse_error("{{ len }}"), Contains("wrong number of arguments for len"));
    CHECK_THAT(parse_error("{{ .L | not 1 }}"), Contains("wrong number of arguments for not"));
}

TEST_CASE("go template printf verbs")
{
    CHECK(render(R"t({{ printf "%s|%d|%v|%q|%%" "str" 42 "v" "q\"" }})t") == R"(str|42|v|"q\""|%)");
    CHECK(render(R"t({{ printf "%.2f|%f|%.0f|%e" 3.14159 1.5 2.5 1234.5 }})t") == "3.14|1.500000|2|1.234500e+03");
    CHECK(render(R"t({{ printf "%x|%X|%o|%b|%x" 255 255 8 5 "hi" }})t") == "ff|FF|10|101|6869");
    CHECK(render(R"t({{ printf "%5d|%-5d|%05d|%+d" 42 42 42 42 }})t") == "   42|42   |00042|+42");
    CHECK(render(R"t({{ printf "%6.2f|%-6s|%6s|%.2s" 3.14159 "ab" "ab" "abcdef" }})t") == "  3.14|ab    |    ab|ab");
    CHECK(render(R"t({{ printf "%v %v %v" 1.0 0.5 true }})t") == "1 0.5 true");
    CHECK(render(R"t({{ printf "%d" "str" }})t") == "%!d(string=str)");
    CHECK(render(R"t({{ printf "%f" 3 }})t") == "%!f(int=3)");
    CHECK(render(R"t({{ printf "%s %s" "one" }})t") == "one %!s(MISSING)");
    CHECK(render(R"t({{ printf "%s" "one" "two" }})t") == "one%!(EXTRA string=two)");
    CHECK(render(R"t({{ printf "%c|%q|%T|%T" 65 65 "s" 1.5 }})t") == "A|'A'|string|float64");
    CHECK(render(R"t({{ printf "%d" .L }})t", json{{"L", {1, 2}}}) == "[1 2]");
    CHECK(render(R"t({{ printf "%s" .Missing }})t") == "");
}

TEST_CASE("go template alertmanager functions")
{
    json data = {{"S", "  hello world  "}, {"L", {{"b", "2"}, {"a", "1"}}}};
    CHECK(render("{{ toUpper \"abc\" }} {{ toLower \"ABC\" }} {{ title \"hello big-world_x\" }}") ==
          "ABC abc Hello Big-World_x");
    CHECK(render("[{{ trimSpace .S }}]", data) == "[hello world]");
    CHECK(render("{{ join \", \" (stringSlice \"a\" \"b\") }}|{{ stringSlice \"x\" | join \"-\" }}") == "a, b|x");
    CHECK(render("{{ match \"^h.*d$\" \"hold\" }} {{ match \"x+\" \"abc\" }} {{ match \"b\" \"abc\" }}") == "true false true");
    CHECK(render(R"t({{ reReplaceAll "(\\w+)@(\\w+)" "$2 at ${1}" "ann@host" }})t") == "host at ann");
    CHECK(render(R"t({{ reReplaceAll "(?P<user>\\w+)@" "[$user]" "ann@host" }})t") == "[ann]host");
    CHECK(render(R"t({{ reReplaceAll "a*" "-" "baaac" }})t") == "-b-c-");
    CHECK(render(R"t({{ reReplaceAll "x" "$$" "axb" }})t") == "a$b");
    CHECK_THAT(render_error(R"t({{ match "(" "x" }})t"), Contains("error parsing regexp"));
    CHECK(render("{{ safeHtml \"<b>\" }} {{ safeUrl \"http://x\" }}") == "<b> http://x");
    CHECK(render("{{ urlUnescape \"a%20b+c\" }}") == "a b c");
    CHECK_THAT(render_error("{{ urlUnescape \"%zz\" }}"), Contains("invalid URL escape"));
    CHECK(render("{{ toJson .L }}", data) == R"({"a":"1","b":"2"})");
    CHECK(render("{{ toJson \"<&>\" }}") == R"("\u003c\u0026\u003e")");
    CHECK(render("{{ humanize 1234567.0 }} {{ humanize \"0.001\" }}") == "1.235M 1m");
    CHECK(render("{{ humanize1024 2048 }}") == "2ki");
    CHECK(render("{{ humanizeDuration 90 }}") == "1m 30s");
    CHECK(render("{{ humanizePercentage 0.256 }}") == "25.6%");
    CHECK(render("{{ default \"x\" .Missing }} {{ default \"x\" \"given\" }} {{ .Missing | default \"piped\" }}") ==
          "x given piped");
    CHECK(render("{{ required .S }}", data) == "  hello world  ");
    CHECK_THAT(render_error("{{ required \"summary is missing\" .Nope }}"), Contains("summary is missing"));
    CHECK_THAT(parse_error("{{ date \"2006\" .X }}"), Contains("not implement"));
}

TEST_CASE("go template runtime errors name the position and template")
{
    json data = sample_data();
    std::string error = render_error("line one\n  {{ index .Alerts 7 }}", data);
    CHECK_THAT(error, Contains("index out of range: 7"));
    CHECK_THAT(error, Contains("at 2:6"));
    CHECK_THAT(error, Contains("inline template"));

    // The case of a runbook annotation that one alert lacks.
    error = render_error("{{ (index .Alerts 1).Annotations.runbook_url | required }} {{ .CommonLabels.alertname }}", data);
    CHECK_THAT(error, Contains("required value is empty"));
    CHECK_THAT(error, Contains("at 1:48"));

    CHECK_THAT(render_error("{{ .Receiver.Name }}", data), Contains("cannot evaluate field Name in type string"));

    template_set set;
    diagnostics diags;
    REQUIRE(set.add_file("team.tmpl", "{{ define \"team.text\" }}\n{{ index .Alerts 9 }}{{ end }}", diags));
    std::string out;
    REQUIRE_FALSE(set.render_named("team.text", data, out, error));
    CHECK_THAT(error, Contains("at 2:4 in template \"team.text\" of team.tmpl"));
    CHECK(out.empty());
}

TEST_CASE("go template parse errors have line and column")
{
    std::string error = parse_error("ok\n{{ toupper .X }}");
    CHECK_THAT(error, StartsWith("2:4: function \"toupper\" is not defined"));
    CHECK_THAT(error, Contains("toUpper"));
    CHECK_THAT(parse_error("{{ .X "), StartsWith("1:1: unclosed action"));
    CHECK_THAT(parse_error("{{ if .X }}open"), StartsWith("1:4: {{if}} is never closed"));
    CHECK_THAT(parse_error("a\n\n  {{ end }}"), StartsWith("3:3: unexpected {{end}}"));
    CHECK_THAT(parse_error("{{ \"never closed }}"), Contains("unterminated quoted string"));
    CHECK_THAT(parse_error("{{ `never closed }}"), Contains("unterminated raw quoted string"));
    CHECK_THAT(parse_error("{{ .X | }}"), Contains("missing value for command"));
    CHECK_THAT(parse_error("{{ ( .X }}"), Contains("unclosed left parenthesis"));
    CHECK_THAT(parse_error("{{ .X ) }}"), Contains("unexpected right parenthesis"));
    CHECK_THAT(parse_error("{{ template .X }}"), Contains("template name as a quoted string"));
    CHECK_THAT(parse_error("{{ if 1 }}{{ define \"x\" }}{{ end }}{{ end }}"), Contains("only allowed at the top level"));
    CHECK_THAT(parse_error("{{ .X # }}"), Contains("unrecognized character in action: '#'"));

    template_set set;
    diagnostics diags;
    CHECK_FALSE(set.add_file("bad.tmpl", "{{ define \"x\" }}\n  {{ nofunc }}\n{{ end }}", diags));
    REQUIRE(diags.size() == 1);
    CHECK(diags.items()[0].to_string() == "bad.tmpl:2:6: function \"nofunc\" is not defined");
    CHECK_FALSE(set.has("x"));
}

TEST_CASE("go template check_references reports undefined templates")
{
    template_set set;
    diagnostics diags;
    REQUIRE(set.add_file("t.tmpl", "{{ define \"a\" }}\n{{ template \"missing.one\" . }}{{ end }}", diags));
    std::string error;
    REQUIRE(set.add_inline("{{ template \"a\" . }}{{ template \"missing.two\" . }}{{ template \"missing.two\" }}", error));
    REQUIRE(set.add_inline("{{ define \"local\" }}x{{ end }}{{ template \"local\" }}", error));
    CHECK_FALSE(set.check_references(diags, "alertmanager.yml"));
    REQUIRE(diags.size() == 2);
    CHECK_THAT(diags.items()[0].to_string(), StartsWith("t.tmpl:2:4: template \"missing.one\" is not defined"));
    CHECK(diags.items()[1].file == "alertmanager.yml");
    CHECK_THAT(diags.items()[1].message, StartsWith("inline template at 1:24: template \"missing.two\""));

    template_set clean;
    diagnostics none;
    REQUIRE(clean.add_inline("{{ template \"slack.default.title\" . }}", error));
    CHECK(clean.check_references(none, "alertmanager.yml"));
    CHECK(none.empty());
}

TEST_CASE("go template default templates render sample data")
{
    template_set set;
    json data = sample_data();
    const char* names[] = {"__subject",
                           "__description",
                           "__alertmanagerURL",
                           "slack.default.title",
                           "slack.default.username",
                           "slack.default.fallback",
                           "slack.default.callbackid",
                           "slack.default.pretext",
                           "slack.default.titlelink",
                           "slack.default.iconemoji",
                           "slack.default.iconurl",
                           "slack.default.text",
                           "slack.default.footer",
                           "pagerduty.default.description",
                           "pagerduty.default.client",
                           "pagerduty.default.clientURL",
                           "pagerduty.default.instances"};
    for (const char* name : names) {
        INFO(name);
        CHECK(set.has(name));
        std::string out;
        std::string error;
        CHECK(set.render_named(name, data, out, error));
        CHECK(error.empty());
    }
    std::string out;
    std::string error;
    REQUIRE(set.render_named("__subject", data, out, error));
    CHECK(out == "[FIRING:2] DiskFull (prod db)");
    REQUIRE(set.render_named("pagerduty.default.description", data, out, error));
    CHECK(out == "[FIRING:2] DiskFull (prod db)");
    REQUIRE(set.render_named("__alertmanagerURL", data, out, error));
    CHECK(out == "http://alertmanager.example:9093/api/v1/alerts");
    REQUIRE(set.render_named("slack.default.username", data, out, error));
    CHECK(out == "tocsin");
    REQUIRE(set.render_named("slack.default.text", data, out, error));
    CHECK_THAT(out, StartsWith("2 firing:\nLabels:\n  alertname = DiskFull\n"));
    CHECK_THAT(out, Contains("Annotations:\n  runbook_url = https://runbooks/disk\n  summary = disk 95% full\n"));
    CHECK_THAT(out, Contains("1 resolved:"));
    REQUIRE(set.render_named("__text_alert_list", data["Alerts"], out, error));
    CHECK_THAT(out, Contains("instance = h3"));
    diagnostics diags;
    CHECK(set.check_references(diags, "alertmanager.yml"));

    json resolved = data;
    resolved["Status"] = "resolved";
    resolved["CommonLabels"] = resolved["GroupLabels"];
    REQUIRE(set.render_named("__subject", resolved, out, error));
    CHECK(out == "[RESOLVED] DiskFull");
}

TEST_CASE("go template rejects hostile input without hanging")
{
    auto start = std::chrono::steady_clock::now();

    std::string deep_if;
    for (int i = 0; i < 200; ++i) {
        deep_if += "{{ if 1 }}";
    }
    CHECK_THAT(parse_error(deep_if), Contains("nesting deeper than 100"));
    std::string deep_parens = "{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}";
    CHECK_THAT(parse_error(deep_parens), Contains("nesting deeper than 100"));
    CHECK_THAT(parse_error("{{ .X"), Contains("unclosed action"));
    CHECK_FALSE(parse_error(std::string(100000, '{')).empty());
    CHECK_THAT(parse_error("{{" + std::string(100000, ' ')), Contains("unclosed action"));

    CHECK_THAT(render_error("{{ range 100000000 }}{{ end }}"), Contains("more than 1000000 iterations"));
    CHECK_THAT(render_error("{{ range 1000 }}{{ range 1000 }}{{ range 1000 }}{{ end }}{{ end }}{{ end }}"), Contains("iterations"));
    CHECK_THAT(render_error("{{ define \"r\" }}{{ template \"r\" . }}{{ end }}{{ template \"r\" . }}"), Contains("nested more than 100 calls"));
    // Two calls per level with a shrinking list: shallow enough for the call limit, but 2^60 calls.
    std::string list;
    for (int i = 0; i < 60; ++i) {
        list += " \"x\"";
    }
    CHECK_THAT(render_error("{{ define \"r\" }}{{ if . }}{{ template \"r\" (slice . 1) }}{{ template \"r\" (slice . 1) }}"
                       "{{ end }}{{ end }}{{ template \"r\" (stringSlice" + list + ") }}"), Contains("steps"));
    CHECK_THAT(render_error("{{ range 1000000 }}xxxxxxxxxxxxxxxxxxxx{{ end }}"), Contains("output exceeds"));
    CHECK_THAT(render_error("{{ $s := \"xxxxxxxxxxxxxxxx\" }}{{ range 40 }}{{ $s = printf \"%s%s\" $s $s }}{{ end }}"), Contains("exceeds"));
    CHECK(render("{{ printf \"%0100000000d\" 1 }}") == "%!(BADWIDTH)1");

    auto elapsed = std::chrono::steady_clock::now() - start;
    CHECK(elapsed < std::chrono::seconds(30));
}

TEST_CASE("go template set is movable")
{
    template_set a;
    std::string error;
    auto index = a.add_inline("{{ .X }}", error);
    REQUIRE(index.has_value());
    template_set b(std::move(a));
    std::string out;
    REQUIRE(b.render(*index, json{{"X", "moved"}}, out, error));
    CHECK(out == "moved");
    CHECK_FALSE(b.render(*index + 5, json::object(), out, error));
}
