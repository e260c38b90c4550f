// tocsinctl: checks configuration and rule files without starting the daemon, as promtool
// does for Prometheus. Exit status 0 means valid, 1 means errors (printed one per line on
// stderr as file:line:column: message), 2 means a usage error.

#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "daemon/config.hpp"
#include "rules/rule_loader.hpp"

namespace {

// NOTE: kept in step with project(VERSION) in the top-level CMakeLists.txt by hand.
constexpr const char* tocsin_version = "0.1.0";

void print_diagnostics(const tocsin::diagnostics& diags)
{
    for (const auto& d : diags.items()) {
        std::fprintf(stderr, "%s\n", d.to_string().c_str());
    }
}

int check_config(const std::string& path)
{
    tocsin::diagnostics diags;
    auto config = tocsin::load_config(path, diags);
    if (!config) {
        print_diagnostics(diags);
        std::fprintf(stderr, "%s: FAILED (%zu errors)\n", path.c_str(), diags.size());
        return 1;
    }
    std::printf("%s: OK (%zu rule files, %zu rules)\n", path.c_str(), config->rule_file_paths.size(),
                config->rules->rules.size());
    return 0;
}

int check_rules(const std::vector<std::string>& files)
{
    tocsin::diagnostics all;
    std::vector<tocsin::rule_group> groups;
    std::vector<std::string> lines;
    for (const auto& file : files) {
        tocsin::diagnostics diags;
        auto loaded = tocsin::load_rule_file(file, diags);
        if (diags.empty()) {
            std::size_t rules = 0;
            for (const auto& g : loaded) {
                rules += g.rules.size();
            }
            lines.push_back(fmt::format("{}: OK ({} groups, {} rules)", file, loaded.size(), rules));
        }
        all.append(diags);
        for (auto& g : loaded) {
            groups.push_back(std::move(g));
        }
    }
    // Alert names must also be unique across the files checked together.
    auto set = tocsin::make_rule_set(std::move(groups));
    tocsin::validate_rule_set(*set, all);

    if (!all.empty()) {
        print_diagnostics(all);
        return 1;
    }
    for (const auto& line : lines) {
        std::printf("%s\n", line.c_str());
    }
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    CLI::App app{"tocsinctl: check tocsin configuration and rule files"};
    app.require_subcommand(1);

    std::string config_path;
    auto* check = app.add_subcommand("check", "Check a main config file and every rule file it names");
    check->add_option("CONFIG", config_path, "Path of the main config file")->required();

    std::vector<std::string> rule_files;
    auto* check_rules_command = app.add_subcommand("check-rules", "Check rule files on their own");
    check_rules_command->add_option("FILE", rule_files, "Rule files to check")->required();

    auto* version = app.add_subcommand("version", "Print the version");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        // app.exit prints the help or the usage error; --help exits 0, a usage error exits 2.
        return app.exit(e) == 0 ? 0 : 2;
    }

    if (check->parsed()) {
        return check_config(config_path);
    }
    if (check_rules_command->parsed()) {
        return check_rules(rule_files);
    }
    if (version->parsed()) {
        std::printf("tocsinctl %s\n", tocsin_version);
        return 0;
    }
    return 2;
}
