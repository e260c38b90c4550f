#include "daemon/ctl_report.hpp"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "daemon/noise_report.hpp"
#include "daemon/terminal_text.hpp"
#include "rules/duration.hpp"
#include "rules/promql_lexer.hpp"

namespace tocsin {

namespace {

// Maximum size of a token file, which contains one token.
constexpr std::size_t max_token_file_bytes = 64 * 1024;

std::string env_or(const char* name, std::string fallback)
{
    const char* value = std::getenv(name);
    return value != nullptr && *value != '\0' ? std::string(value) : fallback;
}

// The token from --token-file or $TOCSIN_TOKEN, or nullopt after printing why it cannot be used.
// Reads need no token unless a proxy in front of tocsind requires one, so an empty token is valid.
std::optional<std::string> token_of(const report_command& cmd, std::ostream& err)
{
    std::string token;
    if (!cmd.token_file.empty()) {
        std::ifstream file(cmd.token_file, std::ios::binary);
        if (!file) {
            err << "tocsinctl: cannot read the token file " << promql::quote(cmd.token_file)
                << "; check the path given to --token-file\n";
            return std::nullopt;
        }
        std::string text(max_token_file_bytes + 1, '\0');
        file.read(text.data(), static_cast<std::streamsize>(text.size()));
        text.resize(static_cast<std::size_t>(file.gcount()));
        if (text.size() > max_token_file_bytes) {
            err << "tocsinctl: the token file " << promql::quote(cmd.token_file) << " is over "
                << max_token_file_bytes << " bytes; it should hold only the token\n";
            return std::nullopt;
        }
        token = std::string(trim_space(text));
        if (token.empty()) {
            err << "tocsinctl: the token file " << promql::quote(cmd.token_file) << " is empty\n";
            return std::nullopt;
        }
    } else {
        token = std::string(trim_space(env_or("TOCSIN_TOKEN", "")));
    }
    const bool control = std::any_of(token.begin(), token.end(), [](char c) {
        const auto byte = static_cast<unsigned char>(c);
        return byte < 0x20 || byte == 0x7f;
    });
    if (control) {
        err << "tocsinctl: the token holds control characters; the token file or TOCSIN_TOKEN must hold the "
               "token alone\n";
        return std::nullopt;
    }
    return token;
}

} // namespace

std::string noise_report_target(const report_command& cmd)
{
    return fmt::format("/api/v1/report/noise?since={}&limit={}", percent_encode(cmd.since), cmd.limit);
}

int report_noise(const report_command& cmd, silence_transport& api, std::ostream& out, std::ostream& err)
{
    std::string error;
    auto since = parse_duration(cmd.since, error);
    if (!since || since->count() <= 0) {
        err << "tocsinctl: --since " << promql::quote(cmd.since) << ": "
            << (since ? std::string("must be longer than 0s") : error) << "; for example --since 7d\n";
        return 2;
    }
    if (cmd.limit < 1 || cmd.limit > max_noise_report_limit) {
        err << "tocsinctl: --limit " << cmd.limit << " is out of range; expected 1 to " << max_noise_report_limit
            << '\n';
        return 2;
    }
    const transport_reply reply = api.send("GET", noise_report_target(cmd), "");
    if (reply.status == 0) {
        err << "tocsinctl: " << reply.error << '\n';
        return 1;
    }
    if (reply.status < 200 || reply.status >= 300) {
        err << "tocsinctl: " << reply.status << ": " << server_error_message(reply.status, reply.body) << '\n';
        return 1;
    }
    auto report = parse_noise_report(reply.body, error);
    if (!report) {
        err << "tocsinctl: " << error << '\n';
        return 1;
    }
    if (cmd.json) {
        out << nlohmann::json::parse(reply.body).dump(2, ' ', false, nlohmann::json::error_handler_t::replace)
            << '\n';
        return 0;
    }
    out << format_noise_report(*report);
    return 0;
}

int run_report_command(const report_command& cmd)
{
    const std::string url = !cmd.url.empty() ? cmd.url : env_or("TOCSIN_URL", default_tocsin_url);
    auto token = token_of(cmd, std::cerr);
    if (!token) {
        return 2;
    }
    std::string error;
    auto timeout = parse_duration(cmd.timeout, error);
    if (!timeout || timeout->count() <= 0) {
        std::cerr << "tocsinctl: --timeout " << promql::quote(cmd.timeout) << ": "
                  << (timeout ? std::string("must be longer than 0s") : error) << '\n';
        return 2;
    }
    auto api = make_http_transport(url, *token, cmd.ca_file, *timeout, error);
    if (!api) {
        std::cerr << "tocsinctl: " << error << '\n';
        return 2;
    }
    return report_noise(cmd, *api, std::cout, std::cerr);
}

} // namespace tocsin
