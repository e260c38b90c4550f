// tocsind: the alerting daemon.

#include <CLI/CLI.hpp>

#include "daemon/app.hpp"

int main(int argc, char** argv)
{
    CLI::App cli{"tocsind: turns metric samples into tiered alerts"};
    tocsin::app_options options;
    cli.add_option("-c,--config,--config.file", options.config_path,
                   "Main configuration file (YAML); an alertmanager.yml works too")
        ->required();
    cli.add_option("--log-level,--log.level", options.log_level,
                   "Log level: trace, debug, info, warn or error; overrides log_level in the config");
    cli.add_option("--storage.path", options.storage_path, "State folder; overrides state_dir");
    cli.add_option("--web.listen-address", options.listen_address, "host:port to listen on; overrides listen");
    cli.add_option("--web.external-url", options.external_url,
                   "URL under which tocsind is reached, for links; its path becomes the route prefix");
    cli.add_option("--web.route-prefix", options.route_prefix, "Path prefix of every endpoint, such as /alertmanager");
    cli.add_option("--data.retention", options.data_retention, "How long expired silences are kept; overrides "
                                                                "silence_retention");
    // Alertmanager's flags that have no meaning for tocsind: accepted, then reported.
    std::vector<std::string> ignored;
    for (const char* name : {"--cluster.listen-address", "--cluster.advertise-address", "--cluster.peer",
                             "--cluster.peer-timeout", "--cluster.gossip-interval", "--cluster.pushpull-interval",
                             "--cluster.tcp-timeout", "--cluster.probe-timeout", "--cluster.probe-interval",
                             "--cluster.settle-timeout", "--cluster.reconnect-interval",
                             "--cluster.reconnect-timeout", "--cluster.label", "--cluster.tls-config",
                             "--log.format", "--alerts.gc-interval", "--web.get-concurrency", "--web.timeout",
                             "--web.config.file", "--web.systemd-socket", "--silences.max-silences",
                             "--silences.max-silence-size-bytes", "--dispatch.maintenance-interval",
                             "--data.maintenance-interval", "--auto-gomemlimit", "--auto-gomaxprocs"}) {
        cli.add_option_function<std::vector<std::string>>(
               name, [&ignored, name](const std::vector<std::string>&) { ignored.emplace_back(name); },
               "Alertmanager flag, accepted and ignored")
            ->expected(0, 1)
            ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
            ->group("Alertmanager compatibility");
    }
    cli.set_version_flag("--version", "tocsind 0.1.0");
    CLI11_PARSE(cli, argc, argv);
    options.ignored_flags = std::move(ignored);
    return tocsin::run_daemon(options);
}
