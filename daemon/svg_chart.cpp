#include "daemon/svg_chart.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace tocsin {

namespace {

// Plot area margins in pixels: the title above, tick labels and the legend below, and the
// labels of horizontal lines on the right.
constexpr int margin_left = 80;
constexpr int margin_right = 130;
constexpr int margin_top = 52;
constexpr int margin_bottom = 64;
constexpr int legend_row_height = 18;
constexpr double char_width_px = 6.6; // average width of an 11 px sans-serif character

struct plot_area {
    double x0 = 0, x1 = 0, y0 = 0, y1 = 0; // pixels; y0 is the top
    time_ms t0 = 0, t1 = 0;
    double lo = 0, hi = 1;

    double x(time_ms t) const
    {
        return x0 + static_cast<double>(t - t0) / static_cast<double>(t1 - t0) * (x1 - x0);
    }
    double y(double v) const { return y1 - (v - lo) / (hi - lo) * (y1 - y0); }
};

std::string format_px(double v)
{
    // Values far outside the plot are clipped anyway; clamping keeps the numbers short and
    // finite for renderers that reject huge coordinates.
    v = std::clamp(v, -1e6, 1e6);
    return fmt::format("{:.1f}", v);
}

// A tick label: short, with k/M/G/T suffixes from 10 000 up.
std::string format_value_label(double v, double step)
{
    const double magnitude = std::fabs(v);
    static constexpr std::array<std::pair<double, const char*>, 4> suffixes{
        {{1e12, "T"}, {1e9, "G"}, {1e6, "M"}, {1e3, "k"}}};
    if (magnitude >= 1e4) {
        for (const auto& [scale, suffix] : suffixes) {
            if (magnitude >= scale) {
                const int decimals = std::max(0, static_cast<int>(std::ceil(-std::log10(step / scale))));
                return fmt::format("{:.{}f}{}", v / scale, std::min(decimals, 3), suffix);
            }
        }
    }
    if (magnitude < step / 2) {
        return "0";
    }
    const int decimals = std::max(0, static_cast<int>(std::ceil(-std::log10(step) - 1e-9)));
    return fmt::format("{:.{}f}", v, std::min(decimals, 9));
}

struct utc_parts {
    int year, month, day, hour, minute, second;
};

utc_parts utc_of(time_ms t)
{
    using namespace std::chrono;
    const sys_time<milliseconds> tp{milliseconds(t)};
    const auto day = floor<days>(tp);
    const year_month_day ymd{day};
    const hh_mm_ss<milliseconds> hms{tp - day};
    return {static_cast<int>(ymd.year()),
            static_cast<int>(static_cast<unsigned>(ymd.month())),
            static_cast<int>(static_cast<unsigned>(ymd.day())),
            static_cast<int>(hms.hours().count()),
            static_cast<int>(hms.minutes().count()),
            static_cast<int>(hms.seconds().count())};
}

time_ms floor_to(time_ms t, time_ms step)
{
    time_ms q = t / step;
    if (t % step != 0 && t < 0) {
        --q;
    }
    return q * step;
}

void append_path(std::string& out, const plot_area& area, const std::vector<time_ms>& times,
                 const std::vector<double>& values, const std::vector<std::size_t>& indexes)
{
    bool pen_down = false;
    for (std::size_t i : indexes) {
        const double v = values[i];
        if (!std::isfinite(v)) {
            pen_down = false;
            continue;
        }
        out += pen_down ? 'L' : 'M';
        out += format_px(area.x(times[i]));
        out += ',';
        out += format_px(area.y(v));
        out += ' ';
        pen_down = true;
    }
}

// The band's points, at most one per pixel column (lowest lower and highest upper), with NaN
// where a column has no finite pair, so the polygon breaks there.
struct band_points {
    std::vector<time_ms> times;
    std::vector<double> lower;
    std::vector<double> upper;
};

band_points decimate_band(const chart_band& band, const plot_area& area)
{
    band_points out;
    const std::size_t n = std::min({band.times.size(), band.lower.size(), band.upper.size()});
    const int columns = std::max(1, static_cast<int>(area.x1 - area.x0));
    if (n <= static_cast<std::size_t>(columns)) {
        out.times.assign(band.times.begin(), band.times.begin() + static_cast<std::ptrdiff_t>(n));
        out.lower.assign(band.lower.begin(), band.lower.begin() + static_cast<std::ptrdiff_t>(n));
        out.upper.assign(band.upper.begin(), band.upper.begin() + static_cast<std::ptrdiff_t>(n));
        return out;
    }
    constexpr double nan = std::numeric_limits<double>::quiet_NaN();
    int current = -1;
    for (std::size_t i = 0; i < n; ++i) {
        const double fraction =
            static_cast<double>(band.times[i] - area.t0) / static_cast<double>(area.t1 - area.t0);
        const int column = std::clamp(static_cast<int>(fraction * columns), 0, columns - 1);
        const bool finite = std::isfinite(band.lower[i]) && std::isfinite(band.upper[i]);
        if (column != current) {
            current = column;
            out.times.push_back(band.times[i]);
            out.lower.push_back(finite ? band.lower[i] : nan);
            out.upper.push_back(finite ? band.upper[i] : nan);
            continue;
        }
        if (!finite) {
            continue;
        }
        double& lower = out.lower.back();
        double& upper = out.upper.back();
        lower = std::isfinite(lower) ? std::min(lower, band.lower[i]) : band.lower[i];
        upper = std::isfinite(upper) ? std::max(upper, band.upper[i]) : band.upper[i];
    }
    return out;
}

void append_band(std::string& out, const chart_band& band, const plot_area& area)
{
    const band_points points = decimate_band(band, area);
    std::size_t i = 0;
    const std::size_t n = points.times.size();
    while (i < n) {
        while (i < n && !(std::isfinite(points.lower[i]) && std::isfinite(points.upper[i]))) {
            ++i;
        }
        const std::size_t begin = i;
        while (i < n && std::isfinite(points.lower[i]) && std::isfinite(points.upper[i])) {
            ++i;
        }
        if (i - begin < 2) {
            continue;
        }
        std::string coords;
        for (std::size_t k = begin; k < i; ++k) {
            coords += fmt::format("{},{} ", format_px(area.x(points.times[k])), format_px(area.y(points.upper[k])));
        }
        for (std::size_t k = i; k-- > begin;) {
            coords += fmt::format("{},{} ", format_px(area.x(points.times[k])), format_px(area.y(points.lower[k])));
        }
        coords.pop_back();
        out += fmt::format("<polygon points=\"{}\" fill=\"{}\" fill-opacity=\"0.18\" stroke=\"none\"/>\n", coords,
                           svg_escape(band.color));
    }
}

// Computes the time and value ranges of the plot.
plot_area make_area(const chart& c)
{
    plot_area area;
    area.x0 = margin_left;
    area.x1 = std::max(margin_left + 100, c.width - margin_right);
    area.y0 = margin_top;
    area.y1 = std::max(margin_top + 100, c.height - margin_bottom);

    time_ms t0 = std::numeric_limits<time_ms>::max();
    time_ms t1 = std::numeric_limits<time_ms>::min();
    for (const auto& line : c.lines) {
        if (!line.times.empty()) {
            t0 = std::min(t0, line.times.front());
            t1 = std::max(t1, line.times.back());
        }
    }
    for (const auto& span : c.spans) {
        t0 = std::min(t0, span.start);
        t1 = std::max(t1, span.end);
    }
    if (t0 > t1) {
        t0 = 0;
        t1 = 60'000;
    }
    if (t0 == t1) {
        t0 -= 30'000;
        t1 += 30'000;
    }
    area.t0 = t0;
    area.t1 = t1;

    double lo = std::numeric_limits<double>::infinity();
    double hi = -std::numeric_limits<double>::infinity();
    for (double v : c.y_range_values) {
        if (std::isfinite(v)) {
            lo = std::min(lo, v);
            hi = std::max(hi, v);
        }
    }
    if (!(lo <= hi)) {
        lo = 0;
        hi = 1;
    }
    if (lo == hi) {
        const double pad = lo == 0 ? 1 : std::fabs(lo) * 0.1;
        lo -= pad;
        hi += pad;
    }
    const double pad = (hi - lo) * 0.05;
    area.lo = lo - pad;
    area.hi = hi + pad;
    return area;
}

void append_axes(std::string& out, const plot_area& area)
{
    out += "<g font-size=\"11\" fill=\"#444\">\n";
    const std::vector<double> value_ticks = nice_value_ticks(area.lo, area.hi, 7);
    const double step = value_ticks.size() >= 2 ? value_ticks[1] - value_ticks[0] : 1.0;
    for (double v : value_ticks) {
        const std::string y = format_px(area.y(v));
        out += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#e4e4e4\"/>\n", format_px(area.x0),
                           y, format_px(area.x1), y);
        out += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\" dominant-baseline=\"middle\">{}</text>\n",
                           format_px(area.x0 - 6), y, svg_escape(format_value_label(v, step)));
    }
    const time_ticks ticks = nice_time_ticks(area.t0, area.t1, 8);
    for (std::size_t i = 0; i < ticks.at.size(); ++i) {
        const std::string x = format_px(area.x(ticks.at[i]));
        out += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#e4e4e4\"/>\n", x,
                           format_px(area.y0), x, format_px(area.y1));
        out += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", x, format_px(area.y1 + 15),
                           svg_escape(ticks.labels[i]));
    }
    out += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">time (UTC)</text>\n", format_px(area.x1),
                       format_px(area.y1 + 30));
    out += "</g>\n";
    out += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#888\"/>\n",
                       format_px(area.x0), format_px(area.y0), format_px(area.x1 - area.x0),
                       format_px(area.y1 - area.y0));
}

struct legend_entry {
    std::string name;
    std::string color;
    enum class shape { line, dashed_line, box } kind = shape::line;
};

void append_legend(std::string& out, const chart& c, const plot_area& area)
{
    std::vector<legend_entry> entries;
    auto add = [&](const std::string& name, const std::string& color, legend_entry::shape kind) {
        if (name.empty()) {
            return;
        }
        for (const auto& e : entries) {
            if (e.name == name) {
                return;
            }
        }
        entries.push_back({name, color, kind});
    };
    // The lines are drawn in order with the main one last, on top; the legend lists it first.
    for (auto line = c.lines.rbegin(); line != c.lines.rend(); ++line) {
        add(line->name, line->color, line->dashed ? legend_entry::shape::dashed_line : legend_entry::shape::line);
    }
    for (const auto& band : c.bands) {
        add(band.name, band.color, legend_entry::shape::box);
    }
    for (const auto& hline : c.hlines) {
        add(hline.name, hline.color, hline.dashed ? legend_entry::shape::dashed_line : legend_entry::shape::line);
    }
    for (const auto& span : c.spans) {
        add(span.name, span.color, legend_entry::shape::box);
    }

    double x = area.x0;
    double y = area.y1 + 44;
    out += "<g font-size=\"11\" fill=\"#222\">\n";
    for (const auto& e : entries) {
        const double width = 24 + static_cast<double>(e.name.size()) * char_width_px + 14;
        if (x + width > c.width - 10 && x > area.x0) {
            x = area.x0;
            y += legend_row_height;
        }
        const std::string color = svg_escape(e.color);
        switch (e.kind) {
        case legend_entry::shape::box:
            out += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"18\" height=\"10\" fill=\"{}\" fill-opacity=\"0.4\" "
                               "stroke=\"{}\"/>\n",
                               format_px(x), format_px(y - 5), color, color);
            break;
        case legend_entry::shape::line:
        case legend_entry::shape::dashed_line:
            out += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"2\"{}/>\n",
                               format_px(x), format_px(y), format_px(x + 18), format_px(y), color,
                               e.kind == legend_entry::shape::dashed_line ? " stroke-dasharray=\"5,3\"" : "");
            break;
        }
        out += fmt::format("<text x=\"{}\" y=\"{}\" dominant-baseline=\"middle\">{}</text>\n", format_px(x + 24),
                           format_px(y), svg_escape(e.name));
        x += width;
    }
    out += "</g>\n";
}

} // namespace

std::string svg_escape(std::string_view text)
{
    std::string out;
    out.reserve(text.size());
    for (char ch : text) {
        switch (ch) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        case '\'': out += "&apos;"; break;
        default:
            // Control characters other than tab and newline are not allowed in XML 1.0.
            if (static_cast<unsigned char>(ch) < 0x20 && ch != '\t' && ch != '\n') {
                out += ' ';
            } else {
                out += ch;
            }
        }
    }
    return out;
}

std::vector<std::size_t> downsample_min_max(const std::vector<time_ms>& times, const std::vector<double>& values,
                                            time_ms t0, time_ms t1, int columns)
{
    const std::size_t n = std::min(times.size(), values.size());
    std::vector<std::size_t> out;
    if (columns <= 0 || n <= static_cast<std::size_t>(columns) * 2 || t1 <= t0) {
        out.resize(n);
        for (std::size_t i = 0; i < n; ++i) {
            out[i] = i;
        }
        return out;
    }

    // Per column: first, minimum, maximum, last, and the first NaN (so the line breaks).
    std::size_t begin = 0;
    while (begin < n) {
        const auto column_of = [&](std::size_t i) {
            const double fraction = static_cast<double>(times[i] - t0) / static_cast<double>(t1 - t0);
            return std::clamp(static_cast<int>(fraction * columns), 0, columns - 1);
        };
        const int column = column_of(begin);
        std::size_t end = begin;
        std::size_t min_index = n, max_index = n, nan_index = n;
        while (end < n && column_of(end) == column) {
            const double v = values[end];
            if (!std::isfinite(v)) {
                nan_index = std::min(nan_index, end);
            } else {
                if (min_index == n || v < values[min_index]) {
                    min_index = end;
                }
                if (max_index == n || v > values[max_index]) {
                    max_index = end;
                }
            }
            ++end;
        }
        std::array<std::size_t, 5> picks{begin, min_index, max_index, nan_index, end - 1};
        std::sort(picks.begin(), picks.end());
        for (std::size_t p : picks) {
            if (p < n && (out.empty() || out.back() != p)) {
                out.push_back(p);
            }
        }
        begin = end;
    }
    return out;
}

std::vector<double> nice_value_ticks(double lo, double hi, int max_ticks)
{
    std::vector<double> ticks;
    if (!(std::isfinite(lo) && std::isfinite(hi)) || hi <= lo || max_ticks < 2) {
        return ticks;
    }
    const double raw = (hi - lo) / (max_ticks - 1);
    const double power = std::pow(10.0, std::floor(std::log10(raw)));
    double step = power * 10;
    for (double m : {1.0, 2.0, 5.0, 10.0}) {
        if (power * m >= raw) {
            step = power * m;
            break;
        }
    }
    const double first = std::ceil(lo / step) * step;
    for (int i = 0; i < 64; ++i) {
        const double v = first + i * step;
        if (v > hi + step * 1e-9) {
            break;
        }
        // Snap values such as 0.30000000000000004 to the step's grid.
        ticks.push_back(std::round(v / step) * step);
    }
    return ticks;
}

time_ticks nice_time_ticks(time_ms t0, time_ms t1, int max_ticks)
{
    constexpr time_ms second = 1000, minute = 60 * second, hour = 60 * minute, day = 24 * hour;
    static constexpr std::array<time_ms, 21> steps{
        second,      5 * second,  15 * second, 30 * second, minute,  5 * minute, 15 * minute,
        30 * minute, hour,        2 * hour,    3 * hour,    6 * hour, 12 * hour, day,
        2 * day,     7 * day,     14 * day,    28 * day,    91 * day, 182 * day, 364 * day};
    time_ticks out;
    if (t1 <= t0 || max_ticks < 1) {
        return out;
    }
    time_ms step = steps.back();
    for (time_ms s : steps) {
        if ((t1 - t0) / s + 1 <= max_ticks) {
            step = s;
            break;
        }
    }
    while ((t1 - t0) / step + 1 > max_ticks) {
        step *= 2;
    }

    const utc_parts first = utc_of(t0);
    const utc_parts last = utc_of(t1);
    const bool one_day = first.year == last.year && first.month == last.month && first.day == last.day;
    // Steps below a day sit on multiples of the step since midnight. Longer steps count from
    // the first midnight in range, so the first day gets a label.
    time_ms first_tick = floor_to(t0, std::min(step, day));
    if (first_tick < t0) {
        first_tick += std::min(step, day);
    }
    for (time_ms t = first_tick; t <= t1; t += step) {
        const utc_parts p = utc_of(t);
        std::string label;
        if (step >= day) {
            label = fmt::format("{:04}-{:02}-{:02}", p.year, p.month, p.day);
        } else if (step < minute) {
            label = fmt::format("{:02}:{:02}:{:02}", p.hour, p.minute, p.second);
        } else if (one_day) {
            label = fmt::format("{:02}:{:02}", p.hour, p.minute);
        } else {
            label = fmt::format("{:02}-{:02} {:02}:{:02}", p.month, p.day, p.hour, p.minute);
        }
        out.at.push_back(t);
        out.labels.push_back(std::move(label));
    }
    return out;
}

std::string render_svg(const chart& c)
{
    const plot_area area = make_area(c);
    std::string out;
    out.reserve(64 * 1024);
    out += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
    out += fmt::format("<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"{}\" height=\"{}\" "
                       "viewBox=\"0 0 {} {}\" font-family=\"Helvetica, Arial, sans-serif\">\n",
                       c.width, c.height, c.width, c.height);
    out += fmt::format("<title>{}</title>\n", svg_escape(c.title));
    out += fmt::format("<defs><clipPath id=\"plot\"><rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/></clipPath>"
                       "</defs>\n",
                       format_px(area.x0), format_px(area.y0), format_px(area.x1 - area.x0),
                       format_px(area.y1 - area.y0));
    out += fmt::format("<rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"#ffffff\"/>\n", c.width, c.height);
    out += fmt::format("<text x=\"{}\" y=\"20\" font-size=\"15\" font-weight=\"bold\" fill=\"#111\">{}</text>\n",
                       margin_left, svg_escape(c.title));
    if (!c.subtitle.empty()) {
        out += fmt::format("<text x=\"{}\" y=\"38\" font-size=\"12\" fill=\"#444\">{}</text>\n", margin_left,
                           svg_escape(c.subtitle));
    }
    if (!c.y_label.empty()) {
        const double mid = (area.y0 + area.y1) / 2;
        out += fmt::format("<text x=\"16\" y=\"{}\" font-size=\"11\" fill=\"#444\" text-anchor=\"middle\" "
                           "transform=\"rotate(-90 16 {})\">{}</text>\n",
                           format_px(mid), format_px(mid), svg_escape(c.y_label));
    }

    append_axes(out, area);

    out += "<g clip-path=\"url(#plot)\">\n";
    for (const auto& span : c.spans) {
        const double x0 = std::max(area.x0, area.x(span.start));
        const double x1 = std::min(area.x1, area.x(span.end));
        // A span shorter than a pixel still gets one, so a brief alert stays visible.
        const double width = std::max(1.0, x1 - x0);
        out += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" fill-opacity=\"{:.2f}\">"
                           "<title>{}</title></rect>\n",
                           format_px(x0), format_px(area.y0), format_px(width), format_px(area.y1 - area.y0),
                           svg_escape(span.color), span.opacity, svg_escape(span.name));
        if (span.top_marker) {
            out += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"6\" fill=\"{}\"/>\n", format_px(x0),
                               format_px(area.y0), format_px(std::max(2.0, width)), svg_escape(span.color));
        }
    }
    for (const auto& band : c.bands) {
        append_band(out, band, area);
    }
    for (const auto& hline : c.hlines) {
        if (!std::isfinite(hline.value)) {
            continue;
        }
        const std::string y = format_px(area.y(hline.value));
        out += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"1.5\"{}/>\n",
                           format_px(area.x0), y, format_px(area.x1), y, svg_escape(hline.color),
                           hline.dashed ? " stroke-dasharray=\"6,4\"" : "");
    }
    const int columns = static_cast<int>(area.x1 - area.x0);
    for (const auto& line : c.lines) {
        const auto indexes = downsample_min_max(line.times, line.values, area.t0, area.t1, columns);
        std::string d;
        append_path(d, area, line.times, line.values, indexes);
        if (d.empty()) {
            continue;
        }
        d.pop_back();
        out += fmt::format("<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"{:.1f}\" "
                           "stroke-linejoin=\"round\"{}/>\n",
                           d, svg_escape(line.color), line.width, line.dashed ? " stroke-dasharray=\"5,3\"" : "");
    }
    out += "</g>\n";

    // Labels of the horizontal lines, right of the plot where they cannot hide data.
    out += "<g font-size=\"11\">\n";
    for (const auto& hline : c.hlines) {
        if (!std::isfinite(hline.value) || hline.value < area.lo || hline.value > area.hi) {
            continue;
        }
        out += fmt::format("<text x=\"{}\" y=\"{}\" dominant-baseline=\"middle\" fill=\"{}\">{}</text>\n",
                           format_px(area.x1 + 6), format_px(area.y(hline.value)), svg_escape(hline.color),
                           svg_escape(hline.name));
    }
    out += "</g>\n";

    append_legend(out, c, area);
    out += "</svg>\n";
    return out;
}

} // namespace tocsin
