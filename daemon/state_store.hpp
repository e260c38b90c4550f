#pragma once
// Durable daemon state in SQLite. It has three parts:
// - the pending and firing alerts with their timers;
// - the delivery state: the dispatcher's alerts, group timers, copies and notification log, the
//   outbox of notifications not yet accepted by their receiver, and each group's Slack message;
// - the threshold overrides set through the API, until they expire;
// - snapshots of the detectors of dynamic rules, so that baselines survive a restart;
// - silences;
// - the notification history behind the noise report (one row per alert in each notification);
// - a small key/value table for facts such as the hash of the last loaded configuration.
//
// The database is <state_dir>/tocsin.db in WAL mode. A committed transaction survives a crash or
// SIGKILL of the process in both sync modes. With sync_mode::full (the default) each commit
// also waits for fsync, so it survives a power loss on storage that honours fsync. With
// sync_mode::normal a power loss can undo the last commits, but a commit costs no disk wait.
//
// Thread safety: none. One owner calls every member function. A background thread with its
// own connection copies the WAL into the database file once a second (a checkpoint), so the
// owner's commits never pay for it.

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "daemon/noise_report.hpp"
#include "daemon/overrides.hpp"
#include "notifiers/delivery.hpp"
#include "notifiers/sender.hpp"
#include "routing/dispatcher.hpp"
#include "routing/silences.hpp"
#include "rules/engine.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace tocsin {

enum class sync_mode { full, normal };

class state_store {
public:
    // Opens or creates <state_dir>/tocsin.db, creating the folder when missing, and brings the
    // schema up to date. Returns null and sets `error` (naming the file and the fix) when the
    // folder or file cannot be used or the database is corrupt.
    static std::unique_ptr<state_store> open(const std::string& state_dir, std::string& error,
                                             sync_mode sync = sync_mode::full);

    ~state_store();
    state_store(const state_store&) = delete;
    state_store& operator=(const state_store&) = delete;

    // Applies alert events in order, in one transaction. A pending or firing record is
    // inserted or replaced by alert id. A resolved event or an inactive record deletes it.
    bool apply(const std::vector<alert_event>& events, std::string& error);

    // Returns every stored alert, ordered by id.
    std::optional<std::vector<persisted_alert>> load_alerts(std::string& error);

    // Replaces every stored alert with `alerts` in one transaction (used at shutdown).
    bool replace_all(const std::vector<persisted_alert>& alerts, std::string& error);

    // Writes alert events, batches of dispatcher changes (in order) and new outbox entries in
    // one transaction, so a crash never leaves a notification log entry without the
    // notification that it records.
    // Assigns each new entry its id.
    // `outbox_updates` (retry state) and `outbox_removed` (delivered, failed or dropped ids) are
    // applied in the same transaction, after the new entries.
    // `history` (the rows of the notifications behind the new entries, see noise_report.hpp) is
    // written in the same transaction, so a notification is recorded exactly when it is queued.
    bool commit(const std::vector<alert_event>& events, const std::vector<dispatch_changes>& changes,
                std::vector<outbox_entry>& new_entries, std::string& error,
                const std::vector<outbox_entry>& outbox_updates = {},
                const std::vector<std::uint64_t>& outbox_removed = {},
                const std::vector<history_row>& history = {});

    // The notification history rows sent from `since` to `now` (both included), plus the rows
    // with a flap marker sent before `since`, which tell whether an alert already flapped when
    // the period began. In no particular order, and at most `max_rows` of them: a caller that
    // gets `max_rows` rows should take the period as too large to report on.
    std::optional<std::vector<history_row>> load_history(time_ms since, time_ms now, std::size_t max_rows,
                                                         std::string& error);
    // Deletes up to `max_rows` history rows sent before `before`, oldest first, and returns how
    // many it deleted. A bounded delete keeps each call short on a large backlog.
    std::optional<std::size_t> prune_history(time_ms before, std::size_t max_rows, std::string& error);

    std::optional<dispatch_state> load_dispatch_state(std::string& error);
    // Every undelivered outbox entry, oldest first.
    std::optional<std::vector<outbox_entry>> load_outbox(std::string& error);
    // Saves attempts, next_attempt_at and last_error of a retried entry.
    bool update_outbox(const outbox_entry& entry, std::string& error);
    // Removes a delivered, failed or dropped entry.
    bool remove_outbox(std::uint64_t id, std::string& error);
    // Saves the outcomes of sends (retry state and removals) in one transaction that does not
    // wait for fsync, even with sync_mode::full. It survives a crash of the process. A power loss
    // can only make a notification go out once more, which at-least-once delivery allows, so a
    // delivered notification never stalls the event loop on the disk.
    bool record_outcomes(const std::vector<outbox_entry>& updates, const std::vector<std::uint64_t>& removed,
                         std::string& error);

    using thread_key = std::pair<std::string, std::string>; // (integration id, group key)
    bool set_slack_thread(const thread_key& key, const slack_thread& thread, std::string& error);
    bool remove_slack_thread(const thread_key& key, std::string& error);
    std::optional<std::map<thread_key, slack_thread>> load_slack_threads(std::string& error);

    bool set_meta(const std::string& key, const std::string& value, std::string& error);
    // Returns nullopt with `error` empty when the key is absent, or with `error` set on failure.
    std::optional<std::string> get_meta(const std::string& key, std::string& error);

    // Inserts or replaces the override of o.rule_name. It is committed (and with sync_mode::full
    // fsynced) when this returns true.
    bool set_override(const threshold_override& o, std::string& error);
    // Deletes the override of `rule_name`; deleting an absent one succeeds.
    bool remove_override(const std::string& rule_name, std::string& error);
    // Returns every stored override, expired ones included, ordered by rule name.
    // Rows with damaged tiers are skipped and their rule names listed in `unreadable`.
    std::optional<std::vector<threshold_override>> load_overrides(std::vector<std::string>& unreadable,
                                                                  std::string& error);

    // Replaces every saved detector state with `records` in one transaction.
    bool replace_baselines(const std::vector<baseline_record>& records, std::string& error);
    // Returns the saved detector states. Rows whose series labels cannot be read are skipped
    // and counted in `unreadable`.
    std::optional<std::vector<baseline_record>> load_baselines(std::size_t& unreadable, std::string& error);

    // Writes the changes of the silence store in one transaction.
    bool apply_silence_changes(const silence_changes& changes, std::string& error);
    // Returns the stored silences. A row that cannot be read is skipped and described in
    // `unreadable` (its id and the problem).
    std::optional<std::vector<silence>> load_silences(std::vector<std::string>& unreadable, std::string& error);

    const std::string& path() const { return path_; }

    // The schema version this build writes. A database with a newer version is not opened.
    static constexpr int schema_version = 8;

private:
    state_store(sqlite3* db, std::string path);

    bool prepare_statements(std::string& error);
    bool upsert(const persisted_alert& alert, std::string& error);
    bool remove(std::uint64_t id, std::string& error);
    bool execute(const char* sql, std::string& error);
    bool commit_or_rollback(bool ok, std::string& error);
    std::string describe_failure(const char* action) const;
    // A prepared statement for `sql`, prepared on first use and kept until the store closes.
    sqlite3_stmt* statement(const char* sql, std::string& error);
    // Steps `sql` and calls `row` for each row; `row` returns what is wrong with a row, or
    // nullopt. A bad row stops the read and reports the database as damaged; `what` names the
    // table in a step failure.
    bool read_rows(const char* sql, const char* what,
                   const std::function<std::optional<std::string>(sqlite3_stmt*)>& row, std::string& error);
    bool apply_events(const std::vector<alert_event>& events, std::string& error);
    bool apply_changes(const dispatch_changes& changes, std::string& error);
    bool insert_outbox(outbox_entry& entry, std::string& error);
    bool insert_history(const std::vector<history_row>& rows, std::string& error);

    sqlite3* db_ = nullptr;
    std::string path_;
    sync_mode sync_ = sync_mode::full;

    void start_checkpointer();
    void stop_checkpointer();
    std::thread checkpointer_;
    std::mutex checkpointer_mutex_;
    std::condition_variable checkpointer_wake_;
    bool checkpointer_stop_ = false;
    sqlite3_stmt* upsert_ = nullptr;
    sqlite3_stmt* delete_ = nullptr;
    sqlite3_stmt* select_all_ = nullptr;
    sqlite3_stmt* set_meta_ = nullptr;
    sqlite3_stmt* get_meta_ = nullptr;
    std::unordered_map<const char*, sqlite3_stmt*> statements_; // keyed by the SQL literal's address
};

} // namespace tocsin
