#pragma once
// Named spdlog loggers, one per component, all writing to stderr (journald adds timestamps
// and levels of its own, but the lines stay readable in a terminal too).

#include <memory>
#include <string>

#include <spdlog/spdlog.h>

namespace tocsin {

// Sets the level of every tocsin logger: trace, debug, info, warn, error. Returns false for
// an unknown level name.
bool set_log_level(const std::string& level);

// The logger for one component ("ingest", "rules", "store", "http", "main"), created on first use.
std::shared_ptr<spdlog::logger> get_logger(const std::string& component);

} // namespace tocsin
