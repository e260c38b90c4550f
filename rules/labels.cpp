#include "rules/labels.hpp"

#include <algorithm>
#include <cctype>
#include <cstring>

namespace tocsin {

namespace {

// FNV-1a over name, 0xff, value, 0xfe for each label. 0xff and 0xfe never occur in valid
// UTF-8, so the separators keep {a="bc"} and {ab="c"} apart.
constexpr std::uint64_t fnv_offset = 14695981039346656037ULL;
constexpr std::uint64_t fnv_prime = 1099511628211ULL;

inline std::uint64_t mix(std::uint64_t hash, std::string_view bytes)
{
    for (unsigned char c : bytes) {
        hash ^= c;
        hash *= fnv_prime;
    }
    return hash;
}

inline std::uint64_t mix_byte(std::uint64_t hash, unsigned char c)
{
    hash ^= c;
    hash *= fnv_prime;
    return hash;
}

void append_quoted(std::string& out, std::string_view text)
{
    out.push_back('"');
    for (char c : text) {
        switch (c) {
        case '\\': out += "\\\\"; break;
        case '"': out += "\\\""; break;
        case '\n': out += "\\n"; break;
        default: out.push_back(c);
        }
    }
    out.push_back('"');
}

} // namespace

std::uint64_t fingerprint_of(std::span<const label_view> sorted)
{
    std::uint64_t hash = fnv_offset;
    for (const auto& l : sorted) {
        hash = mix(hash, l.name);
        hash = mix_byte(hash, 0xff);
        hash = mix(hash, l.value);
        hash = mix_byte(hash, 0xfe);
    }
    return hash;
}

label_set::label_set(std::vector<label> labels) : labels_(std::move(labels)) { finish(); }

label_set::label_set(std::initializer_list<label> labels) : labels_(labels) { finish(); }

void label_set::finish()
{
    std::stable_sort(labels_.begin(), labels_.end(),
                     [](const label& a, const label& b) { return a.name < b.name; });
    // Keep the last of equal names: walk backwards and skip names already kept.
    std::vector<label> unique;
    unique.reserve(labels_.size());
    for (auto it = labels_.rbegin(); it != labels_.rend(); ++it) {
        if (!unique.empty() && unique.back().name == it->name) {
            continue;
        }
        unique.push_back(std::move(*it));
    }
    std::reverse(unique.begin(), unique.end());
    std::erase_if(unique, [](const label& l) { return l.value.empty(); });
    labels_ = std::move(unique);

    std::uint64_t hash = fnv_offset;
    for (const auto& l : labels_) {
        hash = mix(hash, l.name);
        hash = mix_byte(hash, 0xff);
        hash = mix(hash, l.value);
        hash = mix_byte(hash, 0xfe);
    }
    fingerprint_ = hash;
}

std::string_view label_set::get(std::string_view name) const
{
    auto it = std::lower_bound(labels_.begin(), labels_.end(), name,
                               [](const label& l, std::string_view n) { return l.name < n; });
    if (it != labels_.end() && it->name == name) {
        return it->value;
    }
    return {};
}

label_set label_set::with(std::string_view name, std::string_view value) const
{
    std::vector<label> copy = labels_;
    copy.push_back(label{std::string(name), std::string(value)});
    return label_set(std::move(copy));
}

label_set label_set::without(std::string_view name) const
{
    std::vector<label> copy;
    copy.reserve(labels_.size());
    for (const auto& l : labels_) {
        if (l.name != name) {
            copy.push_back(l);
        }
    }
    return label_set(std::move(copy));
}

std::string label_set::to_string() const
{
    std::string out = "{";
    bool first = true;
    for (const auto& l : labels_) {
        if (!first) {
            out += ", ";
        }
        first = false;
        if (is_legacy_label_name(l.name)) {
            out += l.name;
        } else {
            append_quoted(out, l.name);
        }
        out.push_back('=');
        append_quoted(out, l.value);
    }
    out.push_back('}');
    return out;
}

bool label_set::equals(std::span<const label_view> sorted) const
{
    if (sorted.size() != labels_.size()) {
        return false;
    }
    for (std::size_t i = 0; i < sorted.size(); ++i) {
        if (sorted[i].name != labels_[i].name || sorted[i].value != labels_[i].value) {
            return false;
        }
    }
    return true;
}

bool is_legacy_label_name(std::string_view name)
{
    if (name.empty()) {
        return false;
    }
    auto head = static_cast<unsigned char>(name[0]);
    if (!(std::isalpha(head) || head == '_')) {
        return false;
    }
    return std::all_of(name.begin() + 1, name.end(), [](char c) {
        auto u = static_cast<unsigned char>(c);
        return (u < 0x80 && std::isalnum(u)) || u == '_';
    });
}

bool is_valid_utf8(std::string_view text)
{
    const auto* p = reinterpret_cast<const unsigned char*>(text.data());
    const auto* end = p + text.size();
    while (p < end) {
        // Skip ASCII eight bytes at a time; label names and most values are plain ASCII.
        while (end - p >= 8) {
            std::uint64_t word;
            std::memcpy(&word, p, sizeof word);
            if ((word & 0x8080808080808080ULL) != 0) {
                break;
            }
            p += 8;
        }
        if (p == end) {
            break;
        }
        unsigned char c = *p;
        if (c < 0x80) {
            ++p;
            continue;
        }
        int extra = 0;
        std::uint32_t code = 0;
        if (c >= 0xc2 && c <= 0xdf) {
            extra = 1;
            code = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            extra = 2;
            code = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            extra = 3;
            code = c & 0x07;
        } else {
            return false;
        }
        if (end - p <= extra) {
            return false;
        }
        for (int i = 1; i <= extra; ++i) {
            if ((p[i] & 0xc0) != 0x80) {
                return false;
            }
            code = (code << 6) | (p[i] & 0x3f);
        }
        // Overlong three- and four-byte forms, surrogates and values past U+10FFFF.
        if ((extra == 2 && code < 0x800) || (extra == 3 && (code < 0x10000 || code > 0x10ffff)) ||
            (code >= 0xd800 && code <= 0xdfff)) {
            return false;
        }
        p += extra + 1;
    }
    return true;
}

} // namespace tocsin
