#include "daemon/logging.hpp"

#include <mutex>

#include <spdlog/sinks/stdout_sinks.h>

namespace tocsin {

namespace {

std::mutex registry_mutex; // guards the shared sink and the level
spdlog::level::level_enum current_level = spdlog::level::info;

spdlog::sink_ptr shared_sink()
{
    static auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    return sink;
}

} // namespace

bool set_log_level(const std::string& level)
{
    auto parsed = spdlog::level::from_str(level);
    if (parsed == spdlog::level::off && level != "off") {
        return false;
    }
    std::lock_guard lock(registry_mutex);
    current_level = parsed;
    spdlog::apply_all([&](const std::shared_ptr<spdlog::logger>& logger) { logger->set_level(parsed); });
    return true;
}

std::shared_ptr<spdlog::logger> get_logger(const std::string& component)
{
    std::lock_guard lock(registry_mutex);
    if (auto existing = spdlog::get(component)) {
        return existing;
    }
    auto logger = std::make_shared<spdlog::logger>(component, shared_sink());
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ [%n] %v", spdlog::pattern_time_type::utc);
    logger->set_level(current_level);
    spdlog::register_logger(logger);
    return logger;
}

} // namespace tocsin
