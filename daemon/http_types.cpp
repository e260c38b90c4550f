#include "daemon/http_types.hpp"

namespace tocsin {

std::string_view http_request::header(std::string_view name) const
{
    for (const auto& [key, value] : headers) {
        if (key == name) {
            return value;
        }
    }
    return {};
}

http_response http_response::text(int status, std::string body)
{
    http_response r;
    r.status = status;
    r.content_type = "text/plain; charset=utf-8";
    r.body = std::move(body);
    return r;
}

http_response http_response::json(int status, std::string body)
{
    http_response r;
    r.status = status;
    r.content_type = "application/json";
    r.body = std::move(body);
    return r;
}

} // namespace tocsin
