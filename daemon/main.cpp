// tocsind: the alerting daemon.

#include <CLI/CLI.hpp>

#include "daemon/app.hpp"

int main(int argc, char** argv)
{
    CLI::App cli{"tocsind: turns metric samples into tiered alerts"};
    tocsin::app_options options;
    cli.add_option("-c,--config", options.config_path, "Main configuration file (YAML)")->required();
    cli.add_option("--log-level", options.log_level,
                   "Log level: trace, debug, info, warn or error; overrides log_level in the config");
    cli.set_version_flag("--version", "tocsind 0.1.0");
    CLI11_PARSE(cli, argc, argv);
    return tocsin::run_daemon(options);
}
