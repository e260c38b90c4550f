#pragma once
// The audit log of automated responses: an append-only JSON-lines file, one record per line:
//   {"actor":"tocsin","details":{...},"hash":"...","kind":"step","prev_hash":"...","seq":7,
//    "time":"2024-05-01T12:00:00.000Z","time_ms":1714564800000}
// Keys are sorted and the line is compact JSON with non-ASCII escaped (the canonical form).
// hash = SHA-256 hex over prev_hash followed by the canonical JSON of the record without its
// "hash" key; the first record's prev_hash is 64 zeros. Editing, removing or reordering records
// breaks the chain at the first changed record, and verify_audit_log() names its line.
//
// Next to the log, <path>.head contains {"hash":...,"seq":...} of the last record, replaced
// atomically after each append. verify_audit_log() compares it with the log's end, which
// detects whole records cut from the end. The head sits next to the log, so anyone with write
// access to the log can rewrite the head too. For tamper evidence against root, copy the head
// elsewhere (the daemon can log it, or ship it to another host).
//
// Durability: every append writes its line with one write(2) and fsyncs the file, then
// replaces the head file (written, fsynced, renamed). A crash can leave the head one record
// behind the log; verify accepts that. A crash in the middle of a write can leave a last line
// without its newline: audit_log::open() cuts it and appends a "log_repaired" record that
// says how many bytes it dropped.

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rules/clock.hpp"

namespace tocsin::runbooks {

struct audit_record {
    std::uint64_t seq = 0; // 1, 2, 3, ... without gaps
    time_ms time = 0;
    std::string kind;      // run_started, step, approval, override, notification, skipped, run_finished,
                           // recovered, log_repaired; tocsind adds threshold_override and acknowledgement
    std::string actor;     // "tocsin" for the engine, or the person (approve, reject, cancel)
    nlohmann::json details = nlohmann::json::object(); // run_id, runbook, step, outcome, ...
    std::string prev_hash;
    std::string hash;

    // The record as a JSON object, with or without its "hash" key.
    nlohmann::json to_json(bool with_hash = true) const;
};

// Compact JSON with sorted keys and non-ASCII escaped; invalid UTF-8 is replaced by U+FFFD.
std::string canonical_json(const nlohmann::json& value);

// The hash a record must carry, from its prev_hash and content.
std::string audit_hash(const audit_record& record);

// 64 zeros: the prev_hash of record 1.
const std::string& audit_genesis_hash();

class audit_log {
public:
    // Opens or creates the log and reads where its chain ends. Fails, with `error` naming the
    // line and the problem, when the existing file does not verify (apart from a cut last line,
    // which it repairs as described above): a broken log must be moved aside by a person, not
    // extended.
    static std::unique_ptr<audit_log> open(const std::string& path, const clock& clk, std::string& error);
    ~audit_log();
    audit_log(const audit_log&) = delete;
    audit_log& operator=(const audit_log&) = delete;

    // Appends one record and makes it durable before returning. Throws std::runtime_error when
    // the write or the fsync fails. Safe to call from several threads.
    audit_record append(std::string kind, std::string actor, nlohmann::json details);

    std::uint64_t last_seq() const;
    std::string last_hash() const;
    const std::string& path() const { return path_; }

private:
    audit_log(std::string path, const clock& clk, int fd);
    void write_head();

    std::string path_;
    const clock& clock_;
    int fd_ = -1;
    mutable std::mutex mutex_;
    std::uint64_t seq_ = 0;
    std::string hash_;
};

struct audit_verify_result {
    bool ok = false;
    std::uint64_t records = 0; // records that verified before the first problem
    std::size_t line = 0;      // 1-based line of the first broken record; 0 when ok
    std::string problem;       // "line 3: record was edited: ..."
};

// Checks the whole chain and the head file (when present). Reports the first problem only.
audit_verify_result verify_audit_log(const std::string& path);

// Reads the records of a log without verifying it (verify first). Returns false and sets
// `error` when the file cannot be read or a line is not a record.
bool read_audit_log(const std::string& path, std::vector<audit_record>& out, std::string& error);

// Selection for a future `tocsinctl runbooks audit show`. Empty fields do not filter.
struct audit_filter {
    std::set<std::string> kinds;
    std::string run_id;             // details.run_id
    std::optional<time_ms> from;    // inclusive
    std::optional<time_ms> to;      // exclusive
};

bool audit_matches(const audit_record& record, const audit_filter& filter);
std::vector<audit_record> filter_audit(const std::vector<audit_record>& records, const audit_filter& filter);

} // namespace tocsin::runbooks
