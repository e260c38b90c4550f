#pragma once
// The tocsind process: configuration, engine, state store and HTTP server on one event loop.

#include <memory>
#include <string>
#include <vector>

namespace tocsin {

struct app_options {
    std::string config_path;
    std::string log_level; // overrides log_level from the config when set

    // Alertmanager's flags, so tocsind can take the place of the alertmanager binary. Each
    // overrides the config file when set.
    std::string storage_path;   // --storage.path: state_dir
    std::string listen_address; // --web.listen-address: listen
    std::string external_url;   // --web.external-url
    std::string route_prefix;   // --web.route-prefix: path prefix of every endpoint
    std::string data_retention; // --data.retention: silence_retention
    std::vector<std::string> ignored_flags; // accepted for compatibility and ignored, with a warning
};

// Runs the daemon until SIGTERM or SIGINT. Returns the process exit code: 0 after a clean
// stop, 1 when the configuration is invalid or the state store or listener cannot start.
int run_daemon(const app_options& options);

} // namespace tocsin
