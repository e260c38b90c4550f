#pragma once
// Time-series charts as plain SVG 1.1: no scripts, no external resources, all text escaped.
// The backtest draws one per (rule, series); the renderer itself takes no rule types.
//
// Thread safety: none needed; render_svg is a pure function.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "rules/clock.hpp"

namespace tocsin {

// A line over time. NaN values break the line. Lines with more points than the plot has pixel
// columns are drawn from the minimum and maximum of each column, so spikes stay visible.
struct chart_line {
    std::string name; // legend entry; empty leaves it out of the legend
    std::string color;
    bool dashed = false;
    double width = 1.5;
    std::vector<time_ms> times;
    std::vector<double> values;
};

// A shaded area between two lines over time; breaks where either side is NaN.
struct chart_band {
    std::string name;
    std::string color;
    std::vector<time_ms> times;
    std::vector<double> lower;
    std::vector<double> upper;
};

// A shaded time range across the whole plot height (alert spans, warm-up).
struct chart_span {
    std::string name; // legend entry; spans with the same name share one entry
    std::string color;
    double opacity = 0.25;
    time_ms start = 0;
    time_ms end = 0;
    // Also draws an opaque strip along the top of the plot, so a span of a few minutes on a
    // chart of weeks remains visible.
    bool top_marker = false;
};

// A horizontal line across the plot with a label at its right end.
struct chart_hline {
    std::string name;
    std::string color;
    double value = 0;
    bool dashed = true;
};

struct chart {
    std::string title;
    std::string subtitle;
    std::string y_label;
    int width = 1200;
    int height = 460;
    std::vector<chart_span> spans;
    std::vector<chart_band> bands;
    std::vector<chart_hline> hlines;
    std::vector<chart_line> lines; // drawn in order, the last on top
    // Values that decide the y range. The lines, bands and hlines not listed are clipped to
    // the plot, so a wide band early in a warm-up does not flatten the chart.
    std::vector<double> y_range_values;
};

// Renders the chart as a standalone SVG document.
std::string render_svg(const chart& c);

// Escapes & < > " ' for SVG text and attribute values.
std::string svg_escape(std::string_view text);

// The indexes of the points to draw when `columns` pixel columns show [t0, t1]: all of them
// when there are at most two per column, else per column the first, minimum, maximum, first
// NaN and last, in time order.
std::vector<std::size_t> downsample_min_max(const std::vector<time_ms>& times, const std::vector<double>& values,
                                            time_ms t0, time_ms t1, int columns);

// Tick positions: "nice" values (1, 2 or 5 times a power of ten) covering [lo, hi].
std::vector<double> nice_value_ticks(double lo, double hi, int max_ticks);

// Time ticks on round seconds, minutes, hours or days (UTC) within [t0, t1], labelled "HH:MM"
// within one day, "MM-DD HH:MM" across days, "YYYY-MM-DD" for steps of a day or more.
struct time_ticks {
    std::vector<time_ms> at;
    std::vector<std::string> labels;
};
time_ticks nice_time_ticks(time_ms t0, time_ms t1, int max_ticks);

} // namespace tocsin
