#pragma once
// Factories of the detector families, called by make_detector(). Not part of the public API.

#include <memory>
#include <string>

#include "rules/detector.hpp"

namespace tocsin::detail {

// mean_sigma, ewma, mad, seasonal and baseline.
std::unique_ptr<detector> make_level_detector(const detector_spec& spec, std::string& error);

// psi and ks.
std::unique_ptr<detector> make_drift_detector(const detector_spec& spec, std::string& error);

} // namespace tocsin::detail
