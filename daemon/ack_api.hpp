#pragma once
// The acknowledgement API: POST /api/v1/alerts/{id}/ack records who is handling a firing alert,
// which stops its escalation; DELETE withdraws it. The request body of POST is
// {"by": "alice", "comment": "checking the feature pipeline"}.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "routing/alert.hpp"

namespace tocsin {

inline constexpr std::size_t max_ack_body_bytes = 16 * 1024;
inline constexpr std::size_t max_ack_by_bytes = 256;
inline constexpr std::size_t max_ack_comment_bytes = 4096;

struct ack_request {
    std::string by;
    std::string comment;
    std::string error; // set when the body is rejected (HTTP 400)
};

// Parses the body of POST /api/v1/alerts/{id}/ack.
ack_request parse_ack_request(std::string_view body);

// The alert id of a path /api/v1/alerts/{id}/ack, where id is the 16 hex digits that
// GET /api/v1/alerts shows (or the fingerprint GET /api/v2/alerts shows for alerts other
// senders posted). Returns nullopt when the path has another form; sets `bad_id` when only
// the id is malformed.
std::optional<std::uint64_t> ack_path_id(std::string_view path, bool& bad_id);

// {"id", "labels", "acknowledged": {"by", "comment", "at"} or null}: the response of GET, POST
// and DELETE.
nlohmann::json ack_json(const alert& a);

} // namespace tocsin
