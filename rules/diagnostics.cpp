#include "rules/diagnostics.hpp"

namespace tocsin {

std::string diagnostic::to_string() const
{
    std::string out = file;
    if (line > 0) {
        out += ':' + std::to_string(line) + ':' + std::to_string(column);
    }
    out += ": ";
    out += message;
    return out;
}

void diagnostics::add(std::string file, int line, int column, std::string message)
{
    items_.push_back(diagnostic{std::move(file), line, column, std::move(message)});
}

void diagnostics::append(const diagnostics& other)
{
    items_.insert(items_.end(), other.items_.begin(), other.items_.end());
}

std::string diagnostics::to_string() const
{
    std::string out;
    for (const auto& d : items_) {
        out += d.to_string();
        out += '\n';
    }
    return out;
}

} // namespace tocsin
