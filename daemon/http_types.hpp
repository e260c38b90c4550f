#pragma once
// Plain request and response types, so that only daemon/http_server.cpp includes Beast.

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rules/json_depth.hpp"

namespace tocsin {

struct http_request {
    std::string method;  // "GET", "POST", ...
    std::string target;  // path and query as sent
    std::string path;    // without the query
    std::string query;   // after '?', undecoded
    std::vector<std::pair<std::string, std::string>> headers; // names lower-cased
    std::string body;
    std::string remote_address;

    // Returns the first header with this lower-case name, or "".
    std::string_view header(std::string_view name) const;
};

struct http_response {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;

    static http_response text(int status, std::string body);
    static http_response json(int status, std::string body);
};

// Decodes %XX escapes in a path segment. Returns nullopt for a malformed escape.
std::optional<std::string> percent_decode(std::string_view text);

// Splits a query string (a=1&b=x%20y) into decoded name and value pairs in their order; `+`
// reads as a space, as HTML forms send it. Returns nullopt for a malformed escape.
std::optional<std::vector<std::pair<std::string, std::string>>> parse_query(std::string_view query);

// json_nesting_depth() comes from rules/json_depth.hpp.

// Called on the server's event loop thread for every complete request.
using http_handler = std::function<http_response(const http_request&)>;

} // namespace tocsin
