// The built-in notification templates. Receivers whose fields are left empty use them, and
// users' templates call them by these names, which are Alertmanager's. The text is tocsin's own.
// Every template takes the notification data (Receiver, Status, Alerts, GroupLabels,
// CommonLabels, CommonAnnotations, ExternalURL) except "__text_alert_list", which takes a list
// of alerts such as .Alerts.Firing.

#include "notifiers/go_template_impl.hpp"

namespace tocsin::gotmpl::detail {

namespace {

constexpr std::string_view source = R"tmpl(
{{- /* [FIRING:2] DiskFull (db prod): the status, the firing count, the group label values,
       then the values of the other labels every alert shares. */ -}}
{{ define "__subject" -}}
[{{ .Status | toUpper }}{{ if eq .Status "firing" }}:{{ len .Alerts.Firing }}{{ end }}]
{{- range .GroupLabels.SortedPairs }} {{ .Value }}{{ end }}
{{- with .CommonLabels.Remove .GroupLabels.Names }} ({{ join " " .Values }}){{ end }}
{{- end }}

{{ define "__description" }}{{ end }}

{{ define "__text_alert_list" -}}
{{ range . -}}
Labels:
{{ range .Labels.SortedPairs }}  {{ .Name }} = {{ .Value }}
{{ end -}}
Annotations:
{{ range .Annotations.SortedPairs }}  {{ .Name }} = {{ .Value }}
{{ end -}}
{{ with .GeneratorURL }}Source: {{ . }}
{{ end }}
{{ end -}}
{{- end }}

{{ define "__alertmanagerURL" }}{{ .ExternalURL }}/api/v1/alerts{{ end }}

{{ define "slack.default.title" }}{{ template "__subject" . }}{{ end }}
{{ define "slack.default.username" }}tocsin{{ end }}
{{ define "slack.default.fallback" }}{{ template "slack.default.title" . }} | {{ template "slack.default.titlelink" . }}{{ end }}
{{ define "slack.default.callbackid" }}{{ end }}
{{ define "slack.default.pretext" }}{{ end }}
{{ define "slack.default.titlelink" }}{{ template "__alertmanagerURL" . }}{{ end }}
{{ define "slack.default.iconemoji" }}{{ end }}
{{ define "slack.default.iconurl" }}{{ end }}
{{ define "slack.default.text" -}}
{{ with .Alerts.Firing }}{{ len . }} firing:
{{ template "__text_alert_list" . }}{{ end -}}
{{ with .Alerts.Resolved }}{{ len . }} resolved:
{{ template "__text_alert_list" . }}{{ end -}}
{{- end }}
{{ define "slack.default.footer" }}{{ end }}

{{ define "pagerduty.default.description" }}{{ template "__subject" . }}{{ end }}
{{ define "pagerduty.default.client" }}tocsin{{ end }}
{{ define "pagerduty.default.clientURL" }}{{ template "__alertmanagerURL" . }}{{ end }}
{{ define "pagerduty.default.instances" }}{{ template "__text_alert_list" .Alerts }}{{ end }}
)tmpl";

} // namespace

std::string_view default_templates_source()
{
    return source;
}

} // namespace tocsin::gotmpl::detail
