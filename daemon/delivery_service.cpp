#include "daemon/delivery_service.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "daemon/logging.hpp"

namespace tocsin {

namespace {

// Converts an engine alert to the form routing uses. A resolve is dated when tocsind learned of
// it, capped by its sample time, so a sample stamped slightly in the future does not delay it.
alert to_routing_alert(const alert_snapshot& s, time_ms now, bool resolved)
{
    alert a;
    a.id = s.id;
    a.labels = s.labels;
    a.annotations = s.annotations;
    std::sort(a.annotations.begin(), a.annotations.end());
    a.starts_at = s.fired_at != 0 ? s.fired_at : s.active_at;
    if (resolved) {
        a.ends_at = s.resolved_at != 0 ? std::min(s.resolved_at, now) : now;
        if (a.ends_at <= 0) {
            a.ends_at = now;
        }
    }
    a.updated_at = now;
    a.source = "rules";
    return a;
}

std::shared_ptr<spdlog::logger> notify_log() { return get_logger("notify"); }

// The secret parts of a send target: the credentials, the whole URL and, for URLs that are
// themselves the credential (Slack and generic webhooks), their path.
std::vector<std::string> secrets_of(const send_target& target)
{
    std::vector<std::string> out;
    for (const std::string* value : {&target.routing_key, &target.bearer_token, &target.url}) {
        if (!value->empty()) {
            out.push_back(*value);
        }
    }
    const auto scheme_end = target.url.find("://");
    if (scheme_end != std::string::npos) {
        const auto path = target.url.find('/', scheme_end + 3);
        // A short path such as "/" or "/hook" is no secret and would blank out ordinary words.
        if (path != std::string::npos && target.url.size() - path > 8) {
            out.push_back(target.url.substr(path));
        }
    }
    return out;
}

// Replaces every occurrence of each secret in `text` with "<secret>".
std::string without_secrets(std::string text, const std::vector<std::string>& secrets)
{
    for (const auto& secret : secrets) {
        for (auto pos = text.find(secret); pos != std::string::npos; pos = text.find(secret, pos)) {
            text.replace(pos, secret.size(), "<secret>");
            pos += 8;
        }
    }
    return text;
}

// Links in notifications lead back to tocsind. A routing config loaded by the daemon has no
// external_url of its own, so the main config's value fills it in. Otherwise every link is relative.
std::shared_ptr<const routing_config> with_external_url(std::shared_ptr<const routing_config> routing,
                                                        const std::string& url)
{
    if (!routing || url.empty() || !routing->global.external_url.empty()) {
        return routing;
    }
    auto copy = std::make_shared<routing_config>(*routing);
    copy->global.external_url = url;
    return copy;
}

} // namespace

delivery_service::delivery_service(state_store& store, const clock& clock, http_sender& sender,
                                   std::shared_ptr<const routing_config> routing,
                                   std::shared_ptr<const compiled_templates> templates, retry_policy policy,
                                   std::string external_url, std::function<void()> wake)
    : store_(store), clock_(clock), sender_(sender), routing_(with_external_url(std::move(routing), external_url)),
      templates_(std::move(templates)),
      policy_(policy), external_url_(std::move(external_url)), wake_(std::move(wake)),
      dispatcher_(std::make_unique<dispatcher>(routing_, clock_)),
      queue_(std::make_unique<delivery_queue>(policy_, clock_))
{
    apply_limits();
}

delivery_service::~delivery_service() = default;

void delivery_service::apply_limits()
{
    integrations_.clear();
    for (const auto& r : routing_->receivers) {
        auto set = [&](integration_kind kind, std::size_t i, const delivery_limits& limits) {
            auto id = integration_ref{r.name, kind, static_cast<std::uint32_t>(i)}.id();
            queue_->set_limits(id, kind, limits);
            integrations_.insert(std::move(id));
        };
        for (std::size_t i = 0; i < r.webhooks.size(); ++i) {
            set(integration_kind::webhook, i, r.webhooks[i].limits);
        }
        for (std::size_t i = 0; i < r.pagerduty.size(); ++i) {
            set(integration_kind::pagerduty, i, r.pagerduty[i].limits);
        }
        for (std::size_t i = 0; i < r.slack.size(); ++i) {
            set(integration_kind::slack, i, r.slack[i].limits);
        }
    }
}

bool delivery_service::start(const std::vector<alert_snapshot>& engine_alerts, const std::set<std::string>& held_rules,
                             std::string& error)
{
    auto state = store_.load_dispatch_state(error);
    if (!state) {
        return false;
    }
    auto outbox = store_.load_outbox(error);
    if (!outbox) {
        return false;
    }
    auto threads = store_.load_slack_threads(error);
    if (!threads) {
        return false;
    }
    threads_ = std::move(*threads);
    dispatcher_->restore(*state);

    const time_ms now = clock_.now_ms();
    std::set<std::uint64_t> engine_firing;
    for (const auto& s : engine_alerts) {
        if (s.state != alert_state::firing || s.id == 0) {
            continue; // meta alerts of rules over their limit have id 0 and are not routed
        }
        engine_firing.insert(s.id);
    }
    std::set<std::uint64_t> known;
    std::size_t resolved = 0;
    for (const alert& a : dispatcher_->alerts()) {
        known.insert(a.id);
        if (a.source == "rules" && !a.resolved_at(now) && engine_firing.count(a.id) == 0) {
            alert copy = a;
            copy.ends_at = now;
            copy.updated_at = now;
            dispatcher_->upsert(std::move(copy));
            ++resolved;
        }
    }
    std::size_t added = 0;
    for (const auto& s : engine_alerts) {
        if (s.state == alert_state::firing && s.id != 0 && known.count(s.id) == 0 &&
            held_rules.count(s.rule_name) == 0) {
            dispatcher_->upsert(to_routing_alert(s, now, false));
            ++added;
        }
    }
    for (auto& entry : *outbox) {
        queue_->add(std::move(entry));
    }
    auto stats = dispatcher_->stats();
    notify_log()->info("delivery state restored: {} alerts in {} groups, {} notification log entries, {} undelivered "
                       "notifications; {} alerts resolved and {} added to match the rule engine",
                       stats.alerts, stats.groups, stats.nflog_entries, queue_->size(), resolved, added);
    return true;
}

void delivery_service::upsert_alert(alert a)
{
    const std::uint64_t id = a.id;
    if (!sticky_.empty()) {
        auto it = sticky_.find(id);
        if (it != sticky_.end()) {
            if (it->second.episode_start == a.starts_at) {
                std::erase_if(a.annotations, [&it](const auto& kv) { return kv.first == it->second.name; });
                a.annotations.emplace_back(it->second.name, it->second.text);
                std::sort(a.annotations.begin(), a.annotations.end());
            } else {
                sticky_.erase(it); // a new episode starts without the old one's notes
            }
        }
    }
    const bool resolved = a.resolved_at(clock_.now_ms());
    dispatcher_->upsert(std::move(a));
    if (resolved) {
        sticky_.erase(id);
    }
    if (alert_observer_) {
        if (const alert* held = dispatcher_->find(id)) {
            alert_observer_(*held, dispatcher_->mute_status_of(id, held->labels));
        }
    }
}

bool delivery_service::annotate(std::uint64_t id, const std::string& name, const std::string& text, bool announce)
{
    const alert* held = dispatcher_->find(id);
    if (held == nullptr) {
        return false;
    }
    if (text.empty()) {
        sticky_.erase(id);
    } else {
        sticky_[id] = sticky_note{held->starts_at, name, text};
    }
    return dispatcher_->annotate(id, name, text, announce);
}

bool delivery_service::queue_messages(const notification& n, std::vector<outbox_entry>& out)
{
    const time_ms now = clock_.now_ms();
    build_result built = build_messages(n, *routing_, *templates_);
    for (const auto& line : built.log_lines) {
        notify_log()->warn("{}", line);
    }
    if (built.template_errors > 0) {
        template_errors_[n.integration.receiver] += built.template_errors;
    }
    const bool built_any = !built.messages.empty();
    for (auto& m : built.messages) {
        ++metrics_[m.integration.id()].notifications;
        if (m.integration.kind == integration_kind::console) {
            print_console(m);
            continue;
        }
        outbox_entry e;
        e.message = std::move(m);
        e.created_at = now;
        e.next_attempt_at = now;
        out.push_back(std::move(e));
    }
    return built_any;
}

bool delivery_service::send_direct(const direct_message& m, std::string& error)
{
    const receiver_config* receiver = routing_->find_receiver(m.receiver);
    if (receiver == nullptr) {
        error = fmt::format("receiver {} is not in the routing configuration", m.receiver);
        return false;
    }
    const time_ms now = clock_.now_ms();
    alert pseudo;
    pseudo.id = m.labels.fingerprint();
    pseudo.labels = m.labels;
    pseudo.annotations = {{"summary", m.text}};
    pseudo.starts_at = m.starts_at != 0 ? m.starts_at : now;
    pseudo.ends_at = m.resolved ? now : 0;
    pseudo.updated_at = now;
    pseudo.source = "runbooks";
    std::vector<outbox_entry> fresh;
    auto add = [&](integration_kind kind, const auto& configs) {
        for (std::size_t i = 0; i < configs.size(); ++i) {
            if (m.resolved && !configs[i].send_resolved) {
                continue;
            }
            notification n;
            n.integration = integration_ref{receiver->name, kind, static_cast<std::uint32_t>(i)};
            n.route_key = "runbooks";
            n.group_key = "runbook:" + m.key;
            n.group_labels = m.labels;
            n.alerts.push_back(pseudo);
            n.firing = m.resolved ? 0 : 1;
            n.created_at = now;
            queue_messages(n, fresh);
        }
    };
    add(integration_kind::webhook, receiver->webhooks);
    add(integration_kind::pagerduty, receiver->pagerduty);
    add(integration_kind::slack, receiver->slack);
    add(integration_kind::console, receiver->console);
    return commit_direct(fresh, error);
}

bool delivery_service::commit_direct(std::vector<outbox_entry>& fresh, std::string& error)
{
    for (auto& e : fresh) {
        unsaved_entries_.push_back(std::move(e));
    }
    if (in_flush_) {
        return true; // the flush in progress writes them
    }
    std::vector<alert_event> none;
    if (!flush(none, error)) {
        error = "the message is queued in memory but could not be written yet: " + error;
        return false;
    }
    if (wake_) {
        wake_();
    }
    return true;
}

int delivery_service::send_change_event(const std::vector<std::string>& receivers, const change_event& e,
                                        std::string& error)
{
    const time_ms now = clock_.now_ms();
    std::vector<outbox_entry> fresh;
    for (const auto& name : receivers) {
        const receiver_config* receiver = routing_->find_receiver(name);
        if (receiver == nullptr) {
            continue;
        }
        for (std::size_t i = 0; i < receiver->pagerduty.size(); ++i) {
            integration_ref ref{receiver->name, integration_kind::pagerduty, static_cast<std::uint32_t>(i)};
            outbox_entry entry;
            entry.message = build_pagerduty_change_event(ref, e);
            entry.message.group_key = "change:" + ref.id();
            ++metrics_[ref.id()].notifications;
            entry.created_at = now;
            entry.next_attempt_at = now;
            fresh.push_back(std::move(entry));
        }
    }
    const int count = static_cast<int>(fresh.size());
    if (count == 0) {
        return 0;
    }
    return commit_direct(fresh, error) ? count : -1;
}

std::vector<std::string> delivery_service::receivers_of(std::uint64_t id) const
{
    std::vector<std::string> out;
    for (const auto& g : dispatcher_->groups()) {
        if (std::find(g.alert_ids.begin(), g.alert_ids.end(), id) != g.alert_ids.end() &&
            std::find(out.begin(), out.end(), g.receiver) == out.end()) {
            out.push_back(g.receiver);
        }
    }
    return out;
}

void delivery_service::upsert_from_event(const alert_event& e)
{
    if (e.held_back || e.alert.id == 0) {
        return;
    }
    const time_ms now = clock_.now_ms();
    switch (e.what) {
    case alert_event::kind::firing:
    case alert_event::kind::severity_changed:
        upsert_alert(to_routing_alert(e.alert, now, false));
        break;
    case alert_event::kind::updated:
        if (e.alert.state == alert_state::firing) {
            upsert_alert(to_routing_alert(e.alert, now, false));
        }
        break;
    case alert_event::kind::resolved:
        // Only alerts that fired reached the dispatcher, so a pending alert that resolves has
        // nothing to announce.
        if (e.alert.fired_at != 0) {
            upsert_alert(to_routing_alert(e.alert, now, true));
        }
        break;
    case alert_event::kind::pending:
        break;
    }
}

// A group notifies with all its alerts at each change, so most history rows would repeat that
// an episode still fires. Kept: a firing row of each episode in each group at most once an
// hour, resolves, flap markers, and one row per alert name of each notification, which is what
// the noise report counts notifications by. So a report counts an episode that fires through
// its start when a notification carried it in the period, to the hour. After a restart an
// episode's next firing row is kept again; the report counts episodes once however many rows
// they have.
void delivery_service::keep_news(std::vector<history_row> rows, std::vector<history_row>& history)
{
    // Entries leave when their episode resolves. Alerts dropped otherwise (by a reload) would
    // stay, so the map starts over past this size, which only keeps a few rows more.
    constexpr std::size_t max_recorded_episodes = 1'000'000;
    if (recorded_episodes_.size() > max_recorded_episodes) {
        recorded_episodes_.clear();
    }
    std::set<std::string> names;
    for (auto& row : rows) {
        std::uint64_t key = std::hash<std::string>{}(row.group_key);
        for (const std::uint64_t part : {row.alert_id, static_cast<std::uint64_t>(row.starts_at)}) {
            key = (key ^ part) * 0x100000001b3ULL; // FNV-1a's prime spreads the bits of each part
        }
        const bool first_of_name = names.insert(row.alertname).second;
        constexpr time_ms refresh_ms = 3'600'000;
        bool keep = first_of_name || row.flap != 0;
        if (row.ends_at != 0) {
            keep = true;
            recorded_episodes_.erase(key);
        } else if (auto [it, inserted] = recorded_episodes_.try_emplace(key, row.sent_at);
                   inserted || row.sent_at - it->second >= refresh_ms) {
            it->second = row.sent_at;
            keep = true;
        }
        if (keep) {
            history.push_back(std::move(row));
        }
    }
}

void delivery_service::enqueue_notifications(std::vector<outbox_entry>& out, std::vector<history_row>& history)
{
    for (const notification& n : dispatcher_->flush_due()) {
        if (n.escalation_level > 0 && escalation_observer_) {
            for (std::size_t i = 0; i < n.firing && i < n.alerts.size(); ++i) {
                const alert& a = n.alerts[i];
                escalation_observer_(a, n.escalation_level, dispatcher_->mute_status_of(a.id, a.labels));
            }
        }
        if (queue_messages(n, out)) {
            keep_news(history_rows(n), history);
        }
    }
}

// Prints the message with its continuation lines indented and control characters escaped, so
// label values cannot forge a log line or send terminal escapes.
void delivery_service::print_console(const outbound_message& m)
{
    std::string text;
    text.reserve(m.body.size());
    for (unsigned char c : m.body) {
        if (c == '\n') {
            text += "\n    ";
        } else if (c < 0x20 || c == 0x7f) {
            text += fmt::format("\\x{:02x}", c);
        } else {
            text.push_back(static_cast<char>(c));
        }
    }
    while (!text.empty() && (text.back() == ' ' || text.back() == '\n')) {
        text.pop_back();
    }
    notify_log()->info("console receiver {}:\n    {}", m.integration.receiver, text);
}

bool delivery_service::receive(std::vector<alert> alerts, std::string& error)
{
    const time_ms now = clock_.now_ms();
    // Messages that observers queue meanwhile are written by the flush below.
    in_flush_ = true;
    for (alert& a : alerts) {
        // Alertmanager merges an alert with the one it holds when their times overlap: a held
        // firing alert keeps its start, also when the sender resolves it without a startsAt.
        if (const alert* held = dispatcher_->find(a.id); held != nullptr && !held->resolved_at(now) &&
                                                          (a.ends_at == 0 || a.ends_at >= held->starts_at)) {
            a.starts_at = std::min(a.starts_at, held->starts_at);
        }
        upsert_alert(std::move(a));
    }
    in_flush_ = false;
    std::vector<alert_event> none;
    return flush(none, error);
}

ack_outcome delivery_service::acknowledge(std::uint64_t id, const std::string& by, const std::string& comment,
                                          bool& saved, std::string& error)
{
    const ack_outcome outcome = by.empty() ? dispatcher_->unacknowledge(id) : dispatcher_->acknowledge(id, by, comment);
    std::vector<alert_event> none;
    saved = flush(none, error);
    return outcome;
}

bool delivery_service::flush(std::vector<alert_event>& events, std::string& error)
{
    in_flush_ = true;
    for (const auto& e : events) {
        upsert_from_event(e);
    }
    std::vector<outbox_entry> fresh;
    enqueue_notifications(fresh, unsaved_history_);
    in_flush_ = false;
    auto changes = dispatcher_->take_changes();
    if (!changes.empty()) {
        unsaved_changes_.push_back(std::move(changes));
    }
    for (auto& e : fresh) {
        unsaved_entries_.push_back(std::move(e));
    }
    if (!store_.commit(events, unsaved_changes_, unsaved_entries_, error, unsaved_updates_, unsaved_removals_,
                       unsaved_history_)) {
        ++store_failures_;
        // The dispatcher already moved on; its changes, the new entries and their history rows
        // wait in memory and are written with the next flush, in order.
        return false;
    }
    events.clear();
    unsaved_changes_.clear();
    unsaved_updates_.clear();
    unsaved_removals_.clear();
    unsaved_history_.clear();
    for (auto& e : unsaved_entries_) {
        queue_->add(std::move(e));
    }
    unsaved_entries_.clear();
    pump();
    // After pump(), so the sends have started before this write waits for the disk.
    prune_history(clock_.now_ms());
    return true;
}

void delivery_service::prune_history(time_ms now)
{
    // Rows per delete, so that a large backlog (after retention was shortened) is removed over
    // several flushes instead of in one long stall of the event loop.
    constexpr std::size_t batch = 10'000;
    if (now < next_history_prune_at_) {
        return;
    }
    std::string error;
    auto deleted = store_.prune_history(now - history_retention_.count(), batch, error);
    if (!deleted) {
        notify_log()->error("cannot prune the notification history, will retry in a minute: {}", error);
        next_history_prune_at_ = now + 60'000;
        return;
    }
    next_history_prune_at_ = *deleted == batch ? now : now + 3'600'000;
}

void delivery_service::pump()
{
    if (stopped_) {
        return;
    }
    std::string error;
    if (store_.record_outcomes(unsaved_updates_, unsaved_removals_, error)) {
        unsaved_updates_.clear();
        unsaved_removals_.clear();
    } else {
        ++store_failures_;
        notify_log()->error("cannot save the outcome of {} sends, will retry: {}",
                            unsaved_updates_.size() + unsaved_removals_.size(), error);
    }
    auto exists = [this](const std::string& id) { return integrations_.count(id) > 0; };
    for (const auto& dropped : queue_->expire(exists)) {
        drop_entry(dropped, "it is older than delivery.max_age or its receiver was removed from the configuration");
    }
    for (auto& entry : queue_->take_due()) {
        auto target = resolve_target(entry, *routing_, policy_.default_timeout);
        if (!target) {
            attempt_result gone;
            gone.outcome = attempt_outcome::failed;
            gone.reason = "receiver_removed";
            queue_->complete(entry.id, gone);
            ++failures_[{entry.message.integration.id(), gone.reason}];
            drop_entry(entry, "its receiver is no longer in the configuration");
            continue;
        }
        if (entry.message.integration.kind == integration_kind::slack && target->slack_web_api) {
            auto it = threads_.find({entry.message.integration.id(), entry.message.group_key});
            if (it != threads_.end()) {
                target->thread = it->second;
            }
        }
        const std::uint64_t id = entry.id;
        in_flight_[id] = flight{entry, secrets_of(*target)};
        sender_.send(entry, *target, [this, id](attempt_result result) { on_result(id, result); });
    }
}

void delivery_service::drop_entry(const outbox_entry& entry, const char* why)
{
    unsaved_removals_.push_back(entry.id);
    notify_log()->warn("dropped notification for {} (group {}) after {} attempts: {}", entry.message.integration.id(),
                       entry.message.group_key, entry.attempts, why);
}

void delivery_service::on_result(std::uint64_t id, const attempt_result& raw_result)
{
    auto found = in_flight_.find(id);
    if (found == in_flight_.end()) {
        return;
    }
    outbox_entry sent = std::move(found->second.entry);
    attempt_result result = raw_result;
    result.detail = without_secrets(std::move(result.detail), found->second.secrets);
    in_flight_.erase(found);
    if (stopped_) {
        return; // the entry stays in the outbox for the next start
    }
    auto completion = queue_->complete(id, result);
    const std::string integration = sent.message.integration.id();
    std::string error;
    switch (completion.outcome) {
    case attempt_outcome::delivered: {
        const double seconds = static_cast<double>(clock_.now_ms() - sent.created_at) / 1000.0;
        metrics_[integration].latency.observe(std::max(0.0, seconds));
        if (sent.message.integration.kind == integration_kind::slack) {
            const state_store::thread_key key{integration, sent.message.group_key};
            if (sent.message.resolved) {
                // The episode is over; the next firing starts a new message.
                if (threads_.erase(key) > 0 && !store_.remove_slack_thread(key, error)) {
                    notify_log()->error("cannot forget the Slack thread of group {}: {}", key.second, error);
                }
            } else if (!result.slack_ts.empty() && threads_.count(key) == 0) {
                slack_thread thread{result.slack_channel, result.slack_ts};
                threads_[key] = thread;
                if (!store_.set_slack_thread(key, thread, error)) {
                    notify_log()->error("cannot save the Slack thread of group {}: {}", key.second, error);
                }
            }
        }
        unsaved_removals_.push_back(id);
        notify_log()->info("notified {} of group {}: {} alerts, {} (attempt {})", integration,
                           sent.message.group_key, sent.message.alert_count,
                           sent.message.resolved ? "resolved" : "firing", completion.entry.attempts);
        break;
    }
    case attempt_outcome::failed:
        if (result.outcome == attempt_outcome::failed) { // not an entry that grew too old while retrying
            ++failures_[{integration, result.reason}];
        }
        unsaved_removals_.push_back(id);
        if (result.outcome == attempt_outcome::retry) {
            // The receiver's response asked for a retry, but the entry passed delivery.max_age.
            notify_log()->error("gave up on the notification for {} (group {}) after {} attempts over "
                                "delivery.max_age ({} ms); last error: {}",
                                integration, sent.message.group_key, completion.entry.attempts,
                                policy_.max_age.count(), completion.entry.last_error);
            break;
        }
        notify_log()->error("{} rejected the notification for group {} (HTTP {}, {}): {}; not retried, fix the "
                            "receiver's configuration",
                            integration, sent.message.group_key, result.http_status, result.reason,
                            result.detail.empty() ? "no details" : result.detail);
        break;
    case attempt_outcome::retry:
        unsaved_updates_.push_back(completion.entry);
        notify_log()->warn("delivery to {} failed (HTTP {}, {}{}{}); attempt {} retries in {} ms", integration,
                           result.http_status, result.reason, result.detail.empty() ? "" : ": ", result.detail,
                           completion.entry.attempts + 1,
                           std::max<time_ms>(0, completion.entry.next_attempt_at - clock_.now_ms()));
        break;
    }
    if (wake_) {
        wake_();
    }
}

std::optional<time_ms> delivery_service::next_wakeup() const
{
    auto a = dispatcher_->next_flush_at();
    auto b = queue_->next_wakeup();
    if (a && b) {
        return std::min(*a, *b);
    }
    return a ? a : b;
}

void delivery_service::replace_config(std::shared_ptr<const routing_config> routing,
                                      std::shared_ptr<const compiled_templates> templates, retry_policy policy,
                                      std::string external_url)
{
    routing_ = with_external_url(std::move(routing), external_url);
    templates_ = std::move(templates);
    policy_ = policy;
    external_url_ = std::move(external_url);
    dispatcher_->replace_config(routing_);
    apply_limits();
}

void delivery_service::stop()
{
    stopped_ = true;
    sender_.stop();
}

void delivery_service::write_metrics(metrics_writer& w) const
{
    const auto& counters = queue_->counters();
    auto counter_family = [&](const char* name, const char* help, auto field) {
        w.family(name, "counter", help);
        for (const auto& [id, c] : counters) {
            w.sample(name, {{"integration", id}}, static_cast<double>(c.*field));
        }
    };
    counter_family("tocsin_notifications_sent_total", "Notifications accepted by their receiver.",
                   &integration_counters::sent);
    // By reason as well, like Alertmanager's notifications_failed_total: client_error, bad_response,
    // bad_url, receiver_removed. Every integration shows client_error from the start.
    w.family("tocsin_notifications_failed_total", "counter",
             "Notifications rejected by their receiver and not retried, by reason.");
    for (const auto& [id, c] : counters) {
        if (failures_.count({id, "client_error"}) == 0) {
            w.sample("tocsin_notifications_failed_total", {{"integration", id}, {"reason", "client_error"}}, 0);
        }
        for (auto it = failures_.lower_bound({id, ""}); it != failures_.end() && it->first.first == id; ++it) {
            w.sample("tocsin_notifications_failed_total", {{"integration", id}, {"reason", it->first.second}},
                     static_cast<double>(it->second));
        }
    }
    counter_family("tocsin_notifications_retried_total", "Delivery attempts that will be retried.",
                   &integration_counters::retried);
    counter_family("tocsin_notifications_dropped_total",
                   "Notifications given up after delivery.max_age or because their receiver was removed.",
                   &integration_counters::dropped);
    w.family("tocsin_notification_queue_length", "gauge", "Notifications waiting in the outbox, in flight included.");
    for (const auto& [id, c] : counters) {
        w.sample("tocsin_notification_queue_length", {{"integration", id}}, static_cast<double>(c.queued + c.in_flight));
    }
    w.family("tocsin_notifications_total", "counter", "Notifications produced by group flushes, per integration.");
    for (const auto& [id, m] : metrics_) {
        w.sample("tocsin_notifications_total", {{"integration", id}}, static_cast<double>(m.notifications));
    }
    w.family("tocsin_notification_delivery_seconds", "histogram",
             "Time from a notification entering the outbox to its receiver accepting it.");
    for (const auto& [id, m] : metrics_) {
        if (m.latency.count > 0) {
            w.histogram("tocsin_notification_delivery_seconds", {{"integration", id}}, m.latency);
        }
    }
    w.family("tocsin_notification_template_errors_total", "counter",
             "Templates that failed while rendering; the default text was sent instead.");
    for (const auto& [receiver, count] : template_errors_) {
        w.sample("tocsin_notification_template_errors_total", {{"receiver", receiver}}, static_cast<double>(count));
    }
    auto stats = dispatcher_->stats();
    w.family("tocsin_dispatcher_alerts", "gauge", "Alerts held by the dispatcher, resolved ones not yet notified included.");
    w.sample("tocsin_dispatcher_alerts", static_cast<double>(stats.alerts));
    w.family("tocsin_dispatcher_groups", "gauge", "Aggregation groups.");
    w.sample("tocsin_dispatcher_groups", static_cast<double>(stats.groups));
    w.family("tocsin_escalations_total", "counter", "Notifications sent to the receiver of an escalation step.");
    w.sample("tocsin_escalations_total", static_cast<double>(stats.escalations));
    w.family("tocsin_notifications_rate_limited_total", "counter",
             "Group notifications deferred because the receiver's rate_limit was reached.");
    w.sample("tocsin_notifications_rate_limited_total", static_cast<double>(stats.rate_limited));
    w.family("tocsin_alert_storms", "gauge", "Alert storms whose digest stands for alerts now.");
    w.sample("tocsin_alert_storms", static_cast<double>(stats.storms));
    w.family("tocsin_alert_storms_total", "counter", "Alert storms started, each announced by one digest.");
    w.sample("tocsin_alert_storms_total", static_cast<double>(stats.storms_started));
    w.family("tocsin_delivery_store_failures_total", "counter", "Failed commits of delivery state; retried with the next flush.");
    w.sample("tocsin_delivery_store_failures_total", static_cast<double>(store_failures_));
}

} // namespace tocsin
