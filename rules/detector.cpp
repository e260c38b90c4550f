#include "rules/detector.hpp"

#include <cmath>

#include "rules/detector_impl.hpp"
#include "rules/state_codec.hpp"

namespace tocsin {

namespace {

constexpr std::pair<detector_kind, const char*> kind_names[] = {
    {detector_kind::mean_sigma, "mean_sigma"}, {detector_kind::ewma, "ewma"},
    {detector_kind::mad, "mad"},               {detector_kind::seasonal, "seasonal"},
    {detector_kind::baseline, "baseline"},     {detector_kind::psi, "psi"},
    {detector_kind::ks, "ks"},
};

} // namespace

const char* to_string(detector_kind k)
{
    for (const auto& [kind, name] : kind_names) {
        if (kind == k) {
            return name;
        }
    }
    return "unknown";
}

std::optional<detector_kind> parse_detector_kind(std::string_view name)
{
    for (const auto& [kind, text] : kind_names) {
        if (name == text) {
            return kind;
        }
    }
    return std::nullopt;
}

std::string write_output(const detector_output& out)
{
    std::string text;
    detail::state_writer w(text);
    w.boolean(out.ready);
    w.f64(out.score);
    w.f64(out.baseline);
    w.f64(out.scale);
    w.u64(out.samples);
    w.u64(out.current_samples);
    w.f64(out.secondary);
    return text;
}

bool read_output(std::string_view text, detector_output& out)
{
    detail::state_reader r(text);
    detector_output read;
    read.ready = r.boolean();
    read.score = r.f64();
    read.baseline = r.f64();
    read.scale = r.f64();
    read.samples = static_cast<std::size_t>(r.u64());
    read.current_samples = static_cast<std::size_t>(r.u64());
    read.secondary = r.f64();
    if (!r.done()) {
        return false;
    }
    out = read;
    return true;
}

std::unique_ptr<detector> make_detector(const detector_spec& spec, std::string& error)
{
    if (spec.kind == detector_kind::psi || spec.kind == detector_kind::ks) {
        return detail::make_drift_detector(spec, error);
    }
    return detail::make_level_detector(spec, error);
}

double value_at_score(const detector_spec& spec, const detector_output& out, double score_threshold, bool lower)
{
    constexpr double nan = std::numeric_limits<double>::quiet_NaN();
    switch (spec.kind) {
    case detector_kind::psi:
    case detector_kind::ks: return nan;
    case detector_kind::baseline:
        return spec.compare == baseline_compare::ratio ? out.baseline * score_threshold
                                                       : out.baseline + score_threshold;
    default: break;
    }
    // Sigma-like scores: z for above, -z for below, |z| for both.
    const bool below = spec.side == direction::below || (spec.side == direction::both && lower);
    return below ? out.baseline - score_threshold * out.scale : out.baseline + score_threshold * out.scale;
}

} // namespace tocsin
