// Slack messages, for incoming webhooks and chat.postMessage: Block Kit by default, or
// Alertmanager's single attachment with send_blocks: false.
//
// Escaping. Slack reads `&`, `<` and `>` as markup in every text, so each piece of alert data
// must reach Slack escaped exactly once:
// - Texts built here (headers, label fields, alert lines) and the output of the default
//   templates are escaped when they are put into the message.
// - The output of a receiver's own templates is sent as written, because it is mrkdwn the user
//   wrote: a `<{{ .CommonAnnotations.dashboard }}|Dashboard>` link must stay a link. The values
//   those templates insert are made safe in the template DATA instead (slack_data()):
//     * a value that is a URL (http:// or https://, no spaces) gets `&` as `&amp;` and `<`, `>`,
//       `|` percent-encoded, so it is a valid target inside a link token and cannot end it;
//     * any other value is escaped with slack_escape(), and when it contains mrkdwn style
//       characters (`*`, `~`, a backtick, or `_` at a word edge) it is wrapped in an inline code
//       span, so a label such as `*/5 * * * *` shows literally instead of turning bold.
//   Templates for plain-text places (the header, button texts, the notification fallback) get
//   the values escaped only, since plain text shows backticks literally. Templates for fields
//   that are not text at all (URLs, channel, username, icons, color) get the raw data.

#include <algorithm>
#include <cctype>
#include <set>

#include <fmt/format.h>

#include "notifiers/payload.hpp"
#include "notifiers/payload_detail.hpp"

namespace tocsin::payload_detail {

namespace {

using ordered_json = nlohmann::ordered_json;

// Block Kit limits, counted in UTF-16 code units of the text as sent (see utf16_length()).
constexpr std::size_t max_blocks = 50;
constexpr std::size_t max_section_text = 3000;
constexpr std::size_t max_message_text = 40000; // top-level text, and all block texts together
constexpr std::size_t max_header_text = 150;
constexpr std::size_t max_fields = 10;
constexpr std::size_t max_field_text = 2000;
constexpr std::size_t max_context_text = 2000;
constexpr std::size_t max_button_text = 75;
constexpr std::size_t max_buttons = 25;
constexpr std::size_t max_url = 3000;
// Alertmanager cuts the attachment title to 1024 characters, per Slack's legacy field limit.
constexpr std::size_t max_attachment_title = 1024;
// Maximum annotation text shown on one alert line, in code points before escaping.
constexpr std::size_t max_line_summary = 300;

bool is_url(std::string_view value)
{
    auto starts = [&](std::string_view prefix) {
        if (value.size() < prefix.size()) {
            return false;
        }
        for (std::size_t i = 0; i < prefix.size(); ++i) {
            if (std::tolower(static_cast<unsigned char>(value[i])) != prefix[i]) {
                return false;
            }
        }
        return true;
    };
    return (starts("http://") || starts("https://")) && value.find_first_of(" \t\r\n") == std::string_view::npos;
}

// A URL made safe as the target of a `<url|label>` token: Slack decodes `&amp;` back to `&`,
// and the percent-encoded `<`, `>`, `|` mean the same to the web server.
std::string slack_url(std::string_view url)
{
    std::string out;
    out.reserve(url.size());
    for (char c : url) {
        switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "%3C"; break;
        case '>': out += "%3E"; break;
        case '|': out += "%7C"; break;
        default: out.push_back(c);
        }
    }
    return out;
}

bool is_space_or_edge(std::string_view text, std::size_t pos)
{
    return pos >= text.size() || text[pos] == ' ' || text[pos] == '\t' || text[pos] == '\n';
}

// True when mrkdwn could read styling into `line`: bold, strike, code, or italics at a word edge.
bool has_mrkdwn_style(std::string_view line)
{
    for (std::size_t i = 0; i < line.size(); ++i) {
        const char c = line[i];
        if (c == '*' || c == '~' || c == '`') {
            return true;
        }
        if (c == '_' && (i == 0 || is_space_or_edge(line, i - 1) || is_space_or_edge(line, i + 1))) {
            return true;
        }
    }
    return false;
}

// One line of alert data as mrkdwn that shows it literally.
std::string mrkdwn_line(std::string_view line)
{
    if (!has_mrkdwn_style(line)) {
        return slack_escape(line);
    }
    // An inline code span cannot hold a backtick.
    // NOTE: a backtick in a value is shown as U+02CB (a look-alike), which changes the text.
    std::string inner;
    for (char c : line) {
        if (c == '`') {
            inner += "\u02cb";
        } else {
            inner.push_back(c);
        }
    }
    return "`" + slack_escape(inner) + "`";
}

// A label or annotation value as mrkdwn that shows it literally; see the file comment.
std::string mrkdwn_value(std::string_view value)
{
    if (is_url(value)) {
        return slack_url(value);
    }
    // Code spans do not cross lines, so each line gets its own.
    std::string out;
    std::size_t start = 0;
    while (true) {
        const std::size_t end = value.find('\n', start);
        const std::string_view line = value.substr(start, end == std::string_view::npos ? value.npos : end - start);
        out += line.empty() ? std::string() : mrkdwn_line(line);
        if (end == std::string_view::npos) {
            break;
        }
        out += '\n';
        start = end + 1;
    }
    return out;
}

enum class data_style : std::uint8_t { mrkdwn, plain };

nlohmann::json escape_strings(const nlohmann::json& value, data_style style)
{
    if (value.is_string()) {
        const auto& s = value.get_ref<const std::string&>();
        return style == data_style::mrkdwn ? mrkdwn_value(s) : slack_escape(s);
    }
    if (value.is_object()) {
        nlohmann::json out = nlohmann::json::object();
        for (const auto& [k, v] : value.items()) {
            out[slack_escape(k)] = escape_strings(v, style);
        }
        return out;
    }
    if (value.is_array()) {
        nlohmann::json out = nlohmann::json::array();
        for (const auto& v : value) {
            out.push_back(escape_strings(v, style));
        }
        return out;
    }
    return value;
}

// Cuts escaped Slack text to `max_units` UTF-16 units including a final "…", never inside an
// entity such as `&amp;` or a `<...>` token, which would break the markup after it.
std::string cut_wire_text(std::string_view text, std::size_t max_units, bool* cut = nullptr)
{
    if (utf16_length(text) <= max_units) {
        if (cut) {
            *cut = false;
        }
        return std::string(text);
    }
    if (cut) {
        *cut = true;
    }
    std::size_t pos = 0;
    std::size_t units = 0;
    while (pos < text.size()) {
        std::size_t next = pos + 1;
        while (next < text.size() && (static_cast<unsigned char>(text[next]) & 0xc0) == 0x80) {
            ++next;
        }
        const std::size_t cost = utf16_length(text.substr(pos, next - pos));
        if (units + cost + 1 > max_units) {
            break;
        }
        units += cost;
        pos = next;
    }
    const std::string_view head = text.substr(0, pos);
    const std::size_t amp = head.rfind('&');
    if (amp != std::string_view::npos && head.find(';', amp) == std::string_view::npos) {
        pos = amp;
    }
    const std::size_t open = text.substr(0, pos).rfind('<');
    if (open != std::string_view::npos && text.substr(0, pos).find('>', open) == std::string_view::npos) {
        pos = open;
    }
    return std::string(text.substr(0, pos)) + "\u2026";
}

ordered_json text_object(const char* type, std::string text)
{
    return {{"type", type}, {"text", std::move(text)}};
}

struct slack_severity {
    const char* color;
    const char* emoji;
};

slack_severity classify(const notification& n)
{
    if (n.all_resolved()) {
        return {"good", "\u2705"};
    }
    const severity_rank rank = highest_severity(n);
    if (rank == severity_rank::info) {
        return {"#439fe0", "\u2139\ufe0f"};
    }
    if (rank == severity_rank::warning) {
        return {"warning", "\u26a0\ufe0f"};
    }
    return {"danger", "\U0001f525"};
}

std::string annotation(const alert& a, std::string_view name)
{
    for (const auto& [k, v] : a.annotations) {
        if (k == name) {
            return v;
        }
    }
    return {};
}

// The first non-empty annotation among `names`, from the common annotations when every alert
// has the same value, otherwise from the first alert.
std::string pick_annotation(const nlohmann::json& data, const notification& n,
                            std::initializer_list<std::string_view> names)
{
    const auto& common = data["CommonAnnotations"];
    for (auto name : names) {
        auto it = common.find(std::string(name));
        if (it != common.end() && it->is_string() && !it->get_ref<const std::string&>().empty()) {
            return it->get<std::string>();
        }
    }
    if (!n.alerts.empty()) {
        for (auto name : names) {
            std::string v = annotation(n.alerts.front(), name);
            if (!v.empty()) {
                return v;
            }
        }
    }
    return {};
}

// One line per alert: status, the labels that tell it apart from the others, and its summary.
std::string alert_line(const notification& n, std::size_t index, const nlohmann::json& common_labels)
{
    const alert& a = n.alerts[index];
    std::string line = index < n.firing ? "\U0001f525" : "\u2705";
    std::vector<std::string> parts;
    for (const auto& l : a.labels.items()) {
        if (!common_labels.contains(l.name)) {
            parts.push_back(slack_escape(l.name) + "=" + mrkdwn_value(l.value));
        }
    }
    if (parts.empty()) {
        parts.push_back(mrkdwn_value(std::string(a.labels.get("alertname"))));
    }
    line += ' ';
    line += fmt::format("{}", fmt::join(parts, ", "));
    std::string summary = annotation(a, "summary");
    if (summary.empty()) {
        summary = annotation(a, "description");
    }
    if (!summary.empty()) {
        std::string one_line = summary;
        std::replace(one_line.begin(), one_line.end(), '\n', ' ');
        line += " \u2014 ";
        line += mrkdwn_value(truncate_utf8(one_line, max_line_summary));
    }
    return line;
}

// Runbook lines shown under one alert; the rest are counted.
constexpr std::size_t max_runbook_lines = 5;

// Formats one runbook_actions line as "Runbook: <line>", escaped and cut like the alert's summary.
std::string runbook_line(std::string_view line)
{
    return "Runbook: " + mrkdwn_value(truncate_utf8(line, max_line_summary));
}

// Formats up to max_runbook_lines of `lines` as runbook lines, then a count of the rest, one per
// line of text.
std::string runbook_block(const std::vector<std::string>& lines)
{
    std::vector<std::string> out;
    for (std::size_t i = 0; i < lines.size() && i < max_runbook_lines; ++i) {
        out.push_back(runbook_line(lines[i]));
    }
    if (lines.size() > max_runbook_lines) {
        out.push_back(fmt::format("Runbook: \u2026and {} more runs", lines.size() - max_runbook_lines));
    }
    return fmt::format("{}", fmt::join(out, "\n"));
}

// Formats the runbook_actions lines of alert `a`, which go under its alert line.
std::string alert_runbook_text(const alert& a)
{
    return runbook_block(runbook_action_lines(annotation(a, runbook_actions_annotation)));
}

// Splits mrkdwn text into pieces of at most `max_units`, at line ends where possible.
std::vector<std::string> split_sections(std::string_view text, std::size_t max_units)
{
    std::vector<std::string> out;
    std::string current;
    std::size_t start = 0;
    while (start <= text.size()) {
        std::size_t end = text.find('\n', start);
        std::string_view line = text.substr(start, end == std::string_view::npos ? text.npos : end - start);
        std::string piece = cut_wire_text(line, max_units);
        if (!current.empty() && utf16_length(current) + 1 + utf16_length(piece) > max_units) {
            out.push_back(std::move(current));
            current.clear();
        }
        if (!current.empty()) {
            current += '\n';
        }
        current += piece;
        if (end == std::string_view::npos) {
            break;
        }
        start = end + 1;
    }
    if (!trim(current).empty()) {
        out.push_back(std::move(current));
    }
    std::erase_if(out, [](const std::string& s) { return trim(s).empty(); });
    return out;
}

class slack_builder {
public:
    slack_builder(const notification& n, const slack_config& config, const routing_config& routing,
                  const compiled_templates& templates, build_result& result)
        : n_(n), config_(config), result_(result), fields_(templates, n, result),
          raw_(template_data(n, routing.global.external_url)), mrkdwn_(escape_strings(raw_, data_style::mrkdwn)),
          plain_(escape_strings(raw_, data_style::plain)), severity_(classify(n))
    {
    }

    std::string build()
    {
        ordered_json message = ordered_json::object();
        top_level(message);
        if (config_.send_blocks) {
            message["blocks"] = blocks();
        } else {
            message["attachments"] = ordered_json::array({attachment()});
        }
        return dump_json(message);
    }

private:
    // A field that is sent as text: default output escaped here, the receiver's output as is.
    field_text render_text(std::string_view field, data_style style, std::string_view default_name,
                           std::string_view builtin = {})
    {
        field_text t = fields_.render(field, style == data_style::mrkdwn ? mrkdwn_ : plain_, default_name, raw_,
                                      builtin);
        if (!t.from_receiver) {
            t.text = slack_escape(t.text);
        }
        t.marker = slack_escape(t.marker);
        return t;
    }

    // Like render_text(), with the error marker, if any, appended to the text (or put in
    // `marker` when the caller places it).
    std::string text_field(std::string_view field, data_style style, std::string_view default_name,
                           std::string_view builtin = {}, std::string* marker = nullptr)
    {
        field_text t = render_text(field, style, default_name, builtin);
        if (!t.marker.empty()) {
            if (marker) {
                *marker = t.marker;
            } else {
                t.text = trim(t.text).empty() ? t.marker : t.text + " " + t.marker;
            }
        }
        return t.text;
    }

    // A field that is not text (URL, channel, username, icon, color), from the raw data.
    std::string value_field(std::string_view field, std::string_view default_name, std::string_view builtin = {})
    {
        field_text t = fields_.render(field, raw_, default_name, raw_, builtin);
        return trim(t.text);
    }

    std::string title_link()
    {
        return value_field("title_link", "slack.default.titlelink", default_title_link());
    }

    std::string default_title_link() const
    {
        const auto& base = raw_["ExternalURL"].get_ref<const std::string&>();
        // tocsind's alert list; the name of the default template is Alertmanager's.
        return base.empty() ? std::string() : base + "/api/v1/alerts";
    }

    std::string fallback()
    {
        const std::string builtin = builtin_subject(n_) + (default_title_link().empty() ? "" : " | " + default_title_link());
        return text_field("fallback", data_style::plain, "slack.default.fallback", builtin);
    }

    void top_level(ordered_json& message)
    {
        const std::string channel = value_field("channel", {}, {});
        if (!channel.empty()) {
            message["channel"] = channel;
        }
        for (auto [field, default_name] : {std::pair{"username", "slack.default.username"},
                                           {"icon_emoji", "slack.default.iconemoji"},
                                           {"icon_url", "slack.default.iconurl"}}) {
            const std::string value = value_field(field, default_name);
            if (!value.empty()) {
                message[field] = value;
            }
        }
        if (config_.link_names) {
            message["link_names"] = true;
        }

        // With blocks, the top-level text is what notifications and screen readers show.
        std::string text;
        std::string marker;
        if (fields_.configured("message_text")) {
            text = text_field("message_text", data_style::mrkdwn, {}, {}, &marker);
        }
        if ((config_.send_blocks || !marker.empty()) && trim(text).empty()) {
            text = fallback();
        }
        if (!marker.empty()) {
            text += " " + marker;
        }
        bool cut = false;
        text = cut_wire_text(text, max_message_text, &cut);
        if (cut) {
            log_cut("top-level text", max_message_text);
        }
        if (!text.empty()) {
            message["text"] = std::move(text);
        }
    }

    void log_cut(std::string_view what, std::size_t limit)
    {
        result_.log_lines.push_back(fmt::format(
            "Slack {} cut to {} characters to fit Slack's limits: receiver=\"{}\" group_key={}", what, limit,
            n_.integration.receiver, n_.group_key));
    }

    std::string header_text()
    {
        field_text title = render_text("title", data_style::plain, "slack.default.title", builtin_subject(n_));
        std::string text = title.text;
        if (!title.from_receiver || trim(text).empty()) {
            // The default title gets the status emoji, as the receiver's own title does not.
            const std::string subject = trim(text).empty() ? slack_escape(builtin_subject(n_)) : trim(text);
            text = std::string(severity_.emoji) + " " + subject;
        }
        bool cut = false;
        if (!title.marker.empty()) {
            // The marker must stay visible, so the title gives way to it.
            const std::string marker = cut_wire_text(title.marker, max_header_text / 2);
            text = cut_wire_text(text, max_header_text - utf16_length(marker) - 1, &cut) + " " + marker;
        }
        text = cut_wire_text(text, max_header_text, &cut);
        if (cut) {
            log_cut("header", max_header_text);
        }
        return text;
    }

    // The labels every alert shares (except the alert name, which the header shows), or the
    // receiver's own fields.
    ordered_json field_objects(bool mrkdwn_objects)
    {
        ordered_json out = ordered_json::array();
        if (!config_.fields.empty()) {
            for (std::size_t i = 0; i < config_.fields.size() && out.size() < max_fields; ++i) {
                // Attachment fields are not in mrkdwn_in, so they get the plain-text data.
                const data_style style = mrkdwn_objects ? data_style::mrkdwn : data_style::plain;
                const std::string title = text_field(fmt::format("fields[{}].title", i), style, {});
                const std::string value = text_field(fmt::format("fields[{}].value", i), style, {});
                if (mrkdwn_objects) {
                    std::string text = title.empty() ? value : "*" + title + "*\n" + value;
                    if (!trim(text).empty()) {
                        out.push_back(text_object("mrkdwn", cut_wire_text(text, max_field_text)));
                    }
                } else {
                    out.push_back({{"title", title}, {"value", value}, {"short", config_.fields[i].is_short}});
                }
            }
            return out;
        }
        if (!mrkdwn_objects) {
            return out; // Alertmanager's attachment has no fields unless configured
        }
        std::vector<std::pair<std::string, std::string>> labels;
        for (const auto& [name, value] : raw_["CommonLabels"].items()) {
            if (name != "alertname") {
                labels.emplace_back(name, value.get<std::string>());
            }
        }
        for (std::size_t i = 0; i < labels.size(); ++i) {
            if (out.size() == max_fields - 1 && labels.size() > max_fields) {
                std::vector<std::string> rest;
                for (std::size_t j = i; j < labels.size(); ++j) {
                    rest.push_back(slack_escape(labels[j].first));
                }
                out.push_back(text_object(
                    "mrkdwn", cut_wire_text(fmt::format("*{} more labels*\n{}", rest.size(), fmt::join(rest, ", ")),
                                            max_field_text)));
                break;
            }
            const std::string text = "*" + slack_escape(labels[i].first) + "*\n" + mrkdwn_value(labels[i].second);
            out.push_back(text_object("mrkdwn", cut_wire_text(text, max_field_text)));
        }
        return out;
    }

    std::string status_text(const std::string& marker)
    {
        const std::size_t resolved = n_.alerts.size() - std::min(n_.firing, n_.alerts.size());
        std::string text = fmt::format("*Severity:* {}   *Firing:* {}   *Resolved:* {}",
                                       n_.all_resolved() ? "resolved" : severity_name(highest_severity(n_)),
                                       n_.firing, resolved);
        const std::string summary = pick_annotation(raw_, n_, {"summary", "description"});
        if (!summary.empty() && (n_.alerts.size() == 1 || raw_["CommonAnnotations"].contains("summary") ||
                                 raw_["CommonAnnotations"].contains("description"))) {
            text += "\n" + mrkdwn_value(truncate_utf8(summary, 1000));
        }
        if (!marker.empty()) {
            text += "\n" + marker;
        }
        return cut_wire_text(text, max_section_text);
    }

    std::string links_text()
    {
        std::vector<std::string> links;
        std::size_t units = 0;
        auto add = [&](const std::string& url, std::string_view label) {
            if (!is_url(url) || url.size() > max_url) {
                return;
            }
            std::string link = "<" + slack_url(url) + "|" + std::string(label) + ">";
            if (units + utf16_length(link) + 5 > max_context_text) {
                return;
            }
            units += utf16_length(link) + 5;
            links.push_back(std::move(link));
        };
        add(pick_annotation(raw_, n_, {"runbook_url", "runbook"}), "Runbook");
        add(pick_annotation(raw_, n_, {"dashboard", "dashboard_url"}), "Dashboard");
        add(title_link(), "Open in tocsin");
        return fmt::format("{}", fmt::join(links, "  \u00b7  "));
    }

    // Formats the runbook_actions lines of every alert, each once, in alert order.
    std::string all_runbook_text() const
    {
        std::vector<std::string> lines;
        std::set<std::string, std::less<>> seen;
        for (const auto& a : n_.alerts) {
            for (auto& line : runbook_action_lines(annotation(a, runbook_actions_annotation))) {
                if (seen.insert(line).second) {
                    lines.push_back(std::move(line));
                }
            }
        }
        return runbook_block(lines);
    }

    ordered_json section(std::string text)
    {
        return {{"type", "section"}, {"text", text_object("mrkdwn", std::move(text))}};
    }

    ordered_json blocks()
    {
        // Layout: pretext, header, then either the status line, the label fields and the alert
        // lines (each followed by its runbook lines), or the receiver's text, the label fields and
        // the runbook lines of all alerts. Links, footer and buttons close it.
        // The fixed blocks are built first, so the alert list gets what is left of the limits.
        ordered_json head = ordered_json::array();
        ordered_json middle = ordered_json::array();
        ordered_json tail = ordered_json::array();
        std::size_t units = 0;
        auto add = [&](ordered_json& to, ordered_json block, std::size_t text_units) {
            to.push_back(std::move(block));
            units += text_units;
        };

        if (fields_.configured("pretext")) {
            const std::string pretext = cut_wire_text(text_field("pretext", data_style::mrkdwn, {}), max_section_text);
            if (!trim(pretext).empty()) {
                add(head, section(pretext), utf16_length(pretext));
            }
        }
        const std::string header = header_text();
        add(head, {{"type", "header"}, {"text", text_object("plain_text", header)}}, utf16_length(header));

        // The receiver's text replaces the status line and the alert list. When it fails, the
        // default layout is sent with the error marker in the status section.
        std::vector<std::string> user_sections;
        std::string text_marker;
        if (fields_.configured("text")) {
            const std::string text = text_field("text", data_style::mrkdwn, "slack.default.text", {}, &text_marker);
            if (text_marker.empty()) {
                user_sections = split_sections(text, max_section_text);
            }
        }
        const bool default_layout = user_sections.empty();
        if (default_layout) {
            const std::string status = status_text(text_marker);
            add(head, section(status), utf16_length(status));
        }

        ordered_json label_fields = field_objects(true);
        if (!label_fields.empty()) {
            std::size_t field_units = 0;
            for (const auto& f : label_fields) {
                field_units += utf16_length(f["text"].get_ref<const std::string&>());
            }
            add(middle, {{"type", "section"}, {"fields", std::move(label_fields)}}, field_units);
        }

        // The receiver's text replaces the alert lines, so the runbook lines get a block of their own.
        if (!default_layout) {
            const std::string runbook = cut_wire_text(all_runbook_text(), max_context_text);
            if (!runbook.empty()) {
                add(tail, {{"type", "context"}, {"elements", ordered_json::array({text_object("mrkdwn", runbook)})}},
                    utf16_length(runbook));
            }
        }
        const std::string links = links_text();
        if (!links.empty()) {
            add(tail, {{"type", "context"}, {"elements", ordered_json::array({text_object("mrkdwn", links)})}},
                utf16_length(links));
        }
        if (fields_.configured("footer")) {
            const std::string footer = cut_wire_text(text_field("footer", data_style::mrkdwn, {}), max_context_text);
            if (!trim(footer).empty()) {
                add(tail, {{"type", "context"}, {"elements", ordered_json::array({text_object("mrkdwn", footer)})}},
                    utf16_length(footer));
            }
        }
        ordered_json buttons = action_buttons();
        if (!buttons.empty()) {
            add(tail, {{"type", "actions"}, {"elements", std::move(buttons)}}, 0);
        }

        // The body: the receiver's text, or one line per alert, within what the limits leave.
        std::size_t blocks_left = max_blocks - std::min(max_blocks, head.size() + middle.size() + tail.size());
        // Room for "…and N more alerts" and its block.
        constexpr std::size_t tail_line_units = 48;
        std::size_t units_left = max_message_text - std::min(max_message_text, units + tail_line_units);
        blocks_left = blocks_left > 0 ? blocks_left - 1 : 0;

        ordered_json body = ordered_json::array();
        if (!default_layout) {
            for (std::size_t i = 0; i < user_sections.size(); ++i) {
                const std::size_t cost = utf16_length(user_sections[i]);
                if (body.size() >= blocks_left || cost > units_left) {
                    body.push_back(section("\u2026(the rest of this message did not fit Slack's limits)"));
                    log_cut("text", max_message_text);
                    break;
                }
                units_left -= cost;
                body.push_back(section(user_sections[i]));
            }
        } else {
            body = alert_sections(blocks_left, units_left);
        }

        ordered_json out = std::move(head);
        auto append = [&](ordered_json& blocks) {
            for (auto& b : blocks) {
                out.push_back(std::move(b));
            }
        };
        if (default_layout) {
            append(middle);
            append(body);
        } else {
            append(body);
            append(middle);
        }
        append(tail);
        return out;
    }

    ordered_json alert_sections(std::size_t blocks_left, std::size_t units_left)
    {
        ordered_json out = ordered_json::array();
        const nlohmann::json& common = raw_["CommonLabels"];
        std::string current;
        std::size_t shown = 0;
        for (; shown < n_.alerts.size(); ++shown) {
            std::string full = alert_line(n_, shown, common);
            const std::string runbook = alert_runbook_text(n_.alerts[shown]);
            if (!runbook.empty()) {
                full += "\n" + runbook;
            }
            const std::string line = cut_wire_text(full, max_section_text);
            const std::size_t cost = utf16_length(line) + 1;
            if (cost > units_left) {
                break;
            }
            if (!current.empty() && utf16_length(current) + cost > max_section_text) {
                if (out.size() + 1 >= blocks_left) {
                    break; // the current section is the last one that fits
                }
                out.push_back(section(std::move(current)));
                current.clear();
            }
            if (!current.empty()) {
                current += '\n';
            }
            current += line;
            units_left -= cost;
        }

        if (shown < n_.alerts.size()) {
            const std::string more = fmt::format("\u2026and {} more alerts", n_.alerts.size() - shown);
            if (utf16_length(current) + 1 + utf16_length(more) <= max_section_text) {
                current += current.empty() ? more : "\n" + more;
            } else {
                out.push_back(section(std::move(current)));
                current = more; // the block reserved for this line
            }
            result_.log_lines.push_back(fmt::format(
                "Slack message shows {} of {} alerts to fit Slack's limits: receiver=\"{}\" group_key={}", shown,
                n_.alerts.size(), n_.integration.receiver, n_.group_key));
        }
        if (!current.empty()) {
            out.push_back(section(std::move(current)));
        }
        return out;
    }

    ordered_json action_buttons()
    {
        ordered_json out = ordered_json::array();
        for (std::size_t i = 0; i < config_.actions.size() && out.size() < max_buttons; ++i) {
            const std::string url = value_field(fmt::format("actions[{}].url", i), {});
            std::string text = text_field(fmt::format("actions[{}].text", i), data_style::plain, {});
            if (!is_url(url) || url.size() > max_url || trim(text).empty()) {
                continue;
            }
            ordered_json button = {{"type", "button"},
                                   {"text", text_object("plain_text", cut_wire_text(text, max_button_text))},
                                   {"url", url}};
            const std::string style = value_field(fmt::format("actions[{}].style", i), {});
            if (style == "primary" || style == "danger") {
                button["style"] = style;
            }
            out.push_back(std::move(button));
        }
        return out;
    }

    ordered_json attachment()
    {
        ordered_json a = ordered_json::object();
        bool cut = false;
        const std::string title =
            cut_wire_text(text_field("title", data_style::plain, "slack.default.title", builtin_subject(n_)),
                          max_attachment_title, &cut);
        if (cut) {
            log_cut("title", max_attachment_title);
        }
        if (!title.empty()) {
            a["title"] = title;
        }
        const std::string link = title_link();
        if (!link.empty()) {
            a["title_link"] = link;
        }
        const std::string pretext = text_field("pretext", data_style::mrkdwn, "slack.default.pretext");
        if (!pretext.empty()) {
            a["pretext"] = pretext;
        }

        std::string marker;
        std::string text = text_field("text", data_style::mrkdwn, "slack.default.text", {}, &marker);
        if (!marker.empty()) {
            // The default text is often empty; the alert lines keep the message useful.
            if (trim(text).empty()) {
                std::vector<std::string> lines;
                for (std::size_t i = 0; i < n_.alerts.size(); ++i) {
                    lines.push_back(alert_line(n_, i, raw_["CommonLabels"]));
                }
                text = fmt::format("{}", fmt::join(lines, "\n"));
                text = cut_wire_text(text, max_message_text / 4);
            }
            text += "\n" + marker;
        }
        text = cut_wire_text(text, max_message_text, &cut);
        if (cut) {
            log_cut("text", max_message_text);
        }
        a["text"] = text;
        a["fallback"] = cut_wire_text(fallback(), max_message_text);
        a["callback_id"] = "";
        ordered_json fields = field_objects(false);
        if (!fields.empty()) {
            a["fields"] = std::move(fields);
        }
        ordered_json actions = ordered_json::array();
        for (std::size_t i = 0; i < config_.actions.size(); ++i) {
            ordered_json action = {{"type", config_.actions[i].type.empty() ? "button" : config_.actions[i].type},
                                   {"text", text_field(fmt::format("actions[{}].text", i), data_style::plain, {})},
                                   {"url", value_field(fmt::format("actions[{}].url", i), {})}};
            const std::string style = value_field(fmt::format("actions[{}].style", i), {});
            if (!style.empty()) {
                action["style"] = style;
            }
            actions.push_back(std::move(action));
        }
        if (!actions.empty()) {
            a["actions"] = std::move(actions);
        }
        a["footer"] = cut_wire_text(text_field("footer", data_style::mrkdwn, "slack.default.footer"), 300);
        const std::string color = value_field("color", {}, severity_.color);
        if (!color.empty()) {
            a["color"] = color;
        }
        a["mrkdwn_in"] = {"fallback", "pretext", "text"};
        return a;
    }

    const notification& n_;
    const slack_config& config_;
    build_result& result_;
    field_renderer fields_;
    nlohmann::json raw_;
    nlohmann::json mrkdwn_;
    nlohmann::json plain_;
    slack_severity severity_;
};

} // namespace

build_result build_slack(const notification& original, const slack_config& config, const routing_config& routing,
                         const compiled_templates& templates)
{
    build_result result;
    const notification n = filter_resolved(original, config.send_resolved);
    if (n.alerts.empty()) {
        return result;
    }
    slack_builder builder(n, config, routing, templates, result);
    outbound_message m;
    m.integration = n.integration;
    m.group_key = n.group_key;
    m.body = builder.build();
    m.resolved = n.all_resolved();
    m.alert_count = n.alerts.size();
    result.messages.push_back(std::move(m));
    return result;
}

} // namespace tocsin::payload_detail
