// Text helpers shared by the payload builders: identity keys, Slack escaping, UTF-8 cuts.

#include <openssl/evp.h>

#include <fmt/format.h>

#include "notifiers/payload.hpp"

namespace tocsin {

namespace {

std::string sha256_hex(std::string_view input)
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    EVP_Digest(input.data(), input.size(), digest, &length, EVP_sha256(), nullptr);
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(length * 2);
    for (unsigned int i = 0; i < length; ++i) {
        out.push_back(hex[digest[i] >> 4]);
        out.push_back(hex[digest[i] & 0xf]);
    }
    return out;
}

// Length of the UTF-8 sequence that starts with `lead`; 1 for a stray continuation byte, so a
// malformed string still advances.
std::size_t sequence_length(unsigned char lead)
{
    if (lead < 0x80) {
        return 1;
    }
    if ((lead & 0xe0) == 0xc0) {
        return 2;
    }
    if ((lead & 0xf0) == 0xe0) {
        return 3;
    }
    if ((lead & 0xf8) == 0xf0) {
        return 4;
    }
    return 1;
}

} // namespace

// The receiver name and group key are joined with a byte that cannot occur in either (names
// come from YAML strings, keys from label sets that reject control characters), so two
// different pairs never hash the same input.
std::string pagerduty_dedup_key(const std::string& receiver, const std::string& group_key)
{
    return sha256_hex(receiver + '\x1f' + group_key);
}

std::string pagerduty_dedup_key(const std::string& receiver, const std::string& group_key, std::uint64_t alert_id)
{
    return sha256_hex(fmt::format("{}\x1f{}\x1f{:016x}", receiver, group_key, alert_id));
}

std::string slack_escape(std::string_view text)
{
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        default: out.push_back(c);
        }
    }
    return out;
}

std::string truncate_utf8(std::string_view text, std::size_t max_chars, bool* truncated)
{
    std::size_t chars = 0;
    std::size_t pos = 0;
    std::size_t cut = std::string_view::npos; // byte offset after max_chars - 1 characters
    while (pos < text.size()) {
        if (max_chars > 0 && chars == max_chars - 1) {
            cut = pos;
        }
        pos += sequence_length(static_cast<unsigned char>(text[pos]));
        ++chars;
    }
    if (truncated) {
        *truncated = chars > max_chars;
    }
    if (chars <= max_chars) {
        return std::string(text);
    }
    if (max_chars == 0) {
        return {};
    }
    std::string out(text.substr(0, cut));
    out += "\u2026";
    return out;
}

} // namespace tocsin
