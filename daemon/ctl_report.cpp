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
    auto api = connect_to_tocsind(cmd.url, cmd.token_file, cmd.ca_file, cmd.timeout, std::cerr);
    if (!api) {
        return 2;
    }
    return report_noise(cmd, *api, std::cout, std::cerr);
}

} // namespace tocsin
