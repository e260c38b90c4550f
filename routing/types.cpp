#include <cstdlib>

#include "routing/config.hpp"
#include "routing/dispatcher.hpp"

namespace tocsin {

const receiver_config* routing_config::find_receiver(const std::string& name) const
{
    for (const auto& r : receivers) {
        if (r.name == name) {
            return &r;
        }
    }
    return nullptr;
}

std::optional<std::string> process_env(const char* name)
{
    if (const char* value = std::getenv(name)) {
        return std::string(value);
    }
    return std::nullopt;
}

const char* to_string(integration_kind k)
{
    switch (k) {
    case integration_kind::webhook: return "webhook";
    case integration_kind::pagerduty: return "pagerduty";
    case integration_kind::slack: return "slack";
    case integration_kind::console: return "console";
    }
    return "unknown";
}

std::string integration_ref::id() const
{
    return receiver + "/" + to_string(kind) + "/" + std::to_string(index);
}

bool dispatch_changes::empty() const
{
    return alerts_upserted.empty() && alerts_deleted.empty() && groups_upserted.empty() && groups_deleted.empty() &&
           nflog_upserted.empty() && nflog_deleted.empty() && copies_upserted.empty() && copies_deleted.empty();
}

} // namespace tocsin
