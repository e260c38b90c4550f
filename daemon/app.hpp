#pragma once
// The tocsind process: configuration, engine, state store and HTTP server on one event loop.

#include <memory>
#include <string>

namespace tocsin {

struct app_options {
    std::string config_path;
    std::string log_level; // overrides log_level from the config when set
};

// Runs the daemon until SIGTERM or SIGINT. Returns the process exit code: 0 after a clean
// stop, 1 when the configuration is invalid or the state store or listener cannot start.
int run_daemon(const app_options& options);

} // namespace tocsin
