#include "routing/config.hpp"

namespace tocsin {

namespace {

bool matches_all(const route_config& route, const label_set& labels)
{
    for (const auto& m : route.matchers) {
        if (!m.matches(labels)) {
            return false;
        }
    }
    return true;
}

// Appends the routes below `route` (or `route` itself) that take the alert. Returns false when
// `route` does not match, so the caller tries the next sibling.
bool collect_routes(const route_config& route, const label_set& labels, std::vector<const route_config*>& out)
{
    if (!matches_all(route, labels)) {
        return false;
    }
    const std::size_t before = out.size();
    for (const auto& child : route.routes) {
        // A matching child stops the search of its siblings unless it has `continue: true`.
        if (collect_routes(child, labels, out) && !child.continue_matching) {
            break;
        }
    }
    if (out.size() == before) {
        out.push_back(&route);
    }
    return true;
}

} // namespace

std::vector<const route_config*> match_routes(const route_config& root, const label_set& labels)
{
    std::vector<const route_config*> out;
    collect_routes(root, labels, out);
    return out;
}

} // namespace tocsin
