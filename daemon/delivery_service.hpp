#pragma once
// Delivery inside tocsind: rule engine events in, notifications out.
//
//   engine events -> dispatcher (groups, timers, notification log) -> payloads -> outbox
//   (durable) -> delivery_queue (order, retries, limits) -> http_sender -> receivers
//
// Every flush commits the engine's alert events, the dispatcher's changes and the new outbox
// entries in one store transaction before anything is sent. An entry leaves the outbox when its
// receiver accepted it or rejected it for good. After a crash the outbox is sent again, so
// delivery is at least once, and PagerDuty's dedup_key makes a repeat harmless.
//
// Thread safety: all calls on the daemon's event loop thread.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "daemon/metrics.hpp"
#include "daemon/noise_report.hpp"
#include "daemon/state_store.hpp"
#include "notifiers/delivery.hpp"
#include "notifiers/payload.hpp"
#include "notifiers/sender.hpp"
#include "routing/dispatcher.hpp"
#include "rules/engine.hpp"

namespace tocsin {

// A message that is no alert group's notification: a runbook's notify step, escalation or
// approval request. Every integration of `receiver` gets it as one firing pseudo-alert with
// `labels` and the annotation summary = `text`, under group key "runbook:<key>".
struct direct_message {
    std::string receiver;
    std::string key;
    label_set labels; // alertname and severity included
    std::string text;
    time_ms starts_at = 0; // 0: now
    // A resolve of the message sent with the same receiver, key and labels: integrations with
    // send_resolved get it, and PagerDuty closes the incident it opened.
    bool resolved = false;
};

class delivery_service {
public:
    // `wake` is called after a send completes, because the next wake-up time may have moved. The
    // daemon then calls pump() and re-arms its timer for next_wakeup().
    delivery_service(state_store& store, const clock& clock, http_sender& sender,
                     std::shared_ptr<const routing_config> routing, std::shared_ptr<const compiled_templates> templates,
                     retry_policy policy, std::string external_url, std::function<void()> wake);
    ~delivery_service();

    // Loads the dispatcher state, the outbox and the Slack threads from the store, then brings the
    // dispatcher in line with the engine's alerts. A firing alert it does not know joins its
    // groups, unless its rule is in `held_rules`: such a rule is over its alert limit, and the
    // limit's meta alert represents it. An alert the dispatcher has as firing that the engine no
    // longer has is resolved now.
    bool start(const std::vector<alert_snapshot>& engine_alerts, const std::set<std::string>& held_rules,
               std::string& error);

    // Feeds engine events to the dispatcher, flushes groups whose time has come and commits
    // the events, the dispatcher changes and the new notifications in one transaction. Events
    // that fail to commit stay in `events` for the next call; returns false then.
    bool flush(std::vector<alert_event>& events, std::string& error);

    // Adds alerts received from another sender over Alertmanager's API. A firing alert that is
    // already held keeps its earlier start, as Alertmanager merges them. The alerts are written
    // with the dispatcher's changes; returns false when that write failed (it is retried with
    // the next flush).
    bool receive(std::vector<alert> alerts, std::string& error);

    // Records or (with an empty `by`) withdraws an acknowledgement of alert `id` and commits it
    // like receive(). `saved` is false when that write failed (it is retried with the next flush).
    ack_outcome acknowledge(std::uint64_t id, const std::string& by, const std::string& comment, bool& saved,
                            std::string& error);

    // Queues `m` for every integration of its receiver. Inside flush() (from an observer) it
    // is written with that flush; otherwise it is written now. False with `error` when the
    // receiver is unknown or the write failed (then it is retried with the next flush).
    bool send_direct(const direct_message& m, std::string& error);

    // Queues a PagerDuty change event for every PagerDuty integration of `receivers` (unknown
    // names are skipped), written like send_direct(). Returns the number of events queued, or
    // -1 with `error` when the write failed.
    int send_change_event(const std::vector<std::string>& receivers, const change_event& e, std::string& error);

    // The receivers of the groups that alert `id` is in now.
    std::vector<std::string> receivers_of(std::uint64_t id) const;

    // Sets or (with an empty `text`) removes annotation `name` of alert `id`; see
    // dispatcher::annotate. Later updates of the alert in the same firing episode keep it.
    bool annotate(std::uint64_t id, const std::string& name, const std::string& text, bool announce);

    // Called with the dispatcher's version of an alert after each change that flush() (rule
    // engine events) or receive() (other senders) applied, and its mute status.
    void set_alert_observer(std::function<void(const alert&, const mute_status&)> observer)
    {
        alert_observer_ = std::move(observer);
    }
    // Called for each firing alert of a notification to escalation step `level` (1, 2, ...).
    void set_escalation_observer(std::function<void(const alert&, std::uint32_t level, const mute_status&)> observer)
    {
        escalation_observer_ = std::move(observer);
    }

    // Starts sends whose turn has come.
    void pump();

    // When flush() or pump() next has work, on the injected clock.
    std::optional<time_ms> next_wakeup() const;

    void replace_config(std::shared_ptr<const routing_config> routing, std::shared_ptr<const compiled_templates> templates,
                        retry_policy policy, std::string external_url);

    // How long the notification history behind the noise report is kept (history_retention).
    // flush() deletes older rows, at most once an hour unless a backlog remains.
    void set_history_retention(std::chrono::milliseconds retention) { history_retention_ = retention; }

    // Cancels sends in flight; their entries stay in the outbox for the next start.
    void stop();

    void write_metrics(metrics_writer& w) const;
    const dispatcher& groups() const { return *dispatcher_; }
    // See dispatcher::set_silences.
    void set_silences(const silence_store* silences) { dispatcher_->set_silences(silences); }

private:
    struct integration_metrics {
        latency_histogram latency; // enqueue to acceptance
        std::uint64_t notifications = 0;
    };

    void upsert_from_event(const alert_event& e);
    // Upserts `a` into the dispatcher, keeping sticky annotations of the same episode, and
    // calls the alert observer.
    void upsert_alert(alert a);
    // Builds the messages of `n` into `out` (console ones are printed); false when it built none.
    bool queue_messages(const notification& n, std::vector<outbox_entry>& out);
    // Adds entries built outside a group flush to the outbox; see send_direct().
    bool commit_direct(std::vector<outbox_entry>& fresh, std::string& error);
    void enqueue_notifications(std::vector<outbox_entry>& out, std::vector<history_row>& history);
    void keep_news(std::vector<history_row> rows, std::vector<history_row>& history);
    void prune_history(time_ms now);
    void print_console(const outbound_message& m);
    void on_result(std::uint64_t id, const attempt_result& result);
    void drop_entry(const outbox_entry& entry, const char* why);
    void apply_limits();

    state_store& store_;
    const clock& clock_;
    http_sender& sender_;
    std::shared_ptr<const routing_config> routing_;
    std::shared_ptr<const compiled_templates> templates_;
    retry_policy policy_;
    std::string external_url_;
    std::function<void()> wake_;
    std::unique_ptr<dispatcher> dispatcher_;
    std::unique_ptr<delivery_queue> queue_;
    std::vector<dispatch_changes> unsaved_changes_;
    std::vector<outbox_entry> unsaved_entries_;
    // History rows of the notifications in unsaved_entries_ (and of console ones), written with them.
    std::vector<history_row> unsaved_history_;
    // Episodes (group, alert id, start) whose firing row is in the history, with the time of
    // the last one; see keep_news().
    std::unordered_map<std::uint64_t, time_ms> recorded_episodes_;
    std::chrono::milliseconds history_retention_{std::chrono::hours(24 * 30)};
    time_ms next_history_prune_at_ = 0;
    // Outcomes of sends, saved together by the next pump() or flush() (see
    // state_store::record_outcomes). A crash before that sends the notification again, which
    // at-least-once delivery allows.
    std::vector<outbox_entry> unsaved_updates_;
    std::vector<std::uint64_t> unsaved_removals_;
    std::map<state_store::thread_key, slack_thread> threads_;
    struct flight {
        outbox_entry entry;
        // The credentials the attempt used, removed from the receiver's error text before it is
        // logged, because some receivers echo the request in their error response.
        std::vector<std::string> secrets;
    };
    std::map<std::uint64_t, flight> in_flight_; // by id, to know what a result belongs to
    std::map<std::string, integration_metrics> metrics_;
    std::map<std::string, std::uint64_t> template_errors_; // by receiver
    // Notifications rejected for good, by integration id and reason. They add up to the queue's failed count.
    std::map<std::pair<std::string, std::string>, std::uint64_t> failures_;
    std::set<std::string> integrations_; // ids of the integrations in the current config
    std::uint64_t store_failures_ = 0;
    bool stopped_ = false;
    bool in_flush_ = false;
    std::function<void(const alert&, const mute_status&)> alert_observer_;
    std::function<void(const alert&, std::uint32_t, const mute_status&)> escalation_observer_;
    // Sticky annotations set through annotate(), by alert id: (episode start, name, text).
    struct sticky_note {
        time_ms episode_start = 0;
        std::string name;
        std::string text;
    };
    std::map<std::uint64_t, sticky_note> sticky_;
};

} // namespace tocsin
