#include "runbooks/audit.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include "runbooks/arg_template.hpp"
#include "runbooks/hash.hpp"

namespace tocsin::runbooks {

namespace {

std::string head_path(const std::string& path)
{
    return path + ".head";
}

bool write_all(int fd, std::string_view data)
{
    while (!data.empty()) {
        const ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return false;
        }
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

bool read_whole(const std::string& path, std::string& out, std::string& error)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        error = fmt::format("cannot open {}: {}", quote_value(path), std::strerror(errno));
        return false;
    }
    std::ostringstream buffer;
    buffer << in.rdbuf();
    out = buffer.str();
    return true;
}

// Parses one line into a record. Returns false with `problem` when it is not one.
bool parse_record(std::string_view line, audit_record& out, std::string& problem)
{
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
        problem = "not a JSON object";
        return false;
    }
    const auto field = [&](const char* name, nlohmann::json::value_t a, nlohmann::json::value_t b) {
        auto it = j.find(name);
        return it != j.end() && (it->type() == a || it->type() == b);
    };
    using vt = nlohmann::json::value_t;
    if (!field("seq", vt::number_unsigned, vt::number_unsigned) || !field("time_ms", vt::number_integer, vt::number_unsigned) ||
        !field("kind", vt::string, vt::string) || !field("actor", vt::string, vt::string) ||
        !field("details", vt::object, vt::object) || !field("prev_hash", vt::string, vt::string) ||
        !field("hash", vt::string, vt::string) || !field("time", vt::string, vt::string)) {
        problem = "a field is missing or has the wrong type (expected seq, time, time_ms, kind, actor, details, "
                  "prev_hash, hash)";
        return false;
    }
    if (j.size() != 8) {
        problem = "unexpected fields in the record";
        return false;
    }
    out.seq = j["seq"].get<std::uint64_t>();
    out.time = j["time_ms"].get<time_ms>();
    out.kind = j["kind"].get<std::string>();
    out.actor = j["actor"].get<std::string>();
    out.details = j["details"];
    out.prev_hash = j["prev_hash"].get<std::string>();
    out.hash = j["hash"].get<std::string>();
    if (j["time"].get<std::string>() != format_rfc3339(out.time)) {
        problem = "time and time_ms disagree";
        return false;
    }
    return true;
}

struct scan_result {
    audit_verify_result verify;
    std::uint64_t last_seq = 0;
    std::string last_hash;
    std::size_t valid_bytes = 0;   // bytes up to the end of the last complete, valid line
    bool only_cut_tail = false;    // the single problem is a last line without newline
};

scan_result scan(const std::string& text)
{
    scan_result r;
    r.last_hash = audit_genesis_hash();
    std::size_t pos = 0;
    std::size_t line_no = 0;
    while (pos < text.size()) {
        ++line_no;
        const auto end = text.find('\n', pos);
        if (end == std::string::npos) {
            r.verify.line = line_no;
            r.verify.problem = fmt::format("line {}: incomplete record without a newline ({} bytes): the file was "
                                           "cut in the middle of a record",
                                           line_no, text.size() - pos);
            r.only_cut_tail = true;
            return r;
        }
        const std::string_view line(text.data() + pos, end - pos);
        audit_record rec;
        std::string problem;
        if (!parse_record(line, rec, problem)) {
            r.verify.line = line_no;
            r.verify.problem = fmt::format("line {}: {}", line_no, problem);
            return r;
        }
        if (rec.seq != r.last_seq + 1) {
            r.verify.line = line_no;
            r.verify.problem = fmt::format("line {}: record seq {} where seq {} was expected: records were removed "
                                           "or reordered",
                                           line_no, rec.seq, r.last_seq + 1);
            return r;
        }
        if (rec.prev_hash != r.last_hash) {
            r.verify.line = line_no;
            r.verify.problem = fmt::format("line {}: prev_hash does not match the hash of the record before it: "
                                           "a record before it was removed or replaced",
                                           line_no);
            return r;
        }
        if (audit_hash(rec) != rec.hash) {
            r.verify.line = line_no;
            r.verify.problem = fmt::format("line {}: record {} was edited: its hash does not match its content",
                                           line_no, rec.seq);
            return r;
        }
        r.last_seq = rec.seq;
        r.last_hash = rec.hash;
        r.verify.records = rec.seq;
        pos = end + 1;
        r.valid_bytes = pos;
    }
    r.verify.ok = true;
    return r;
}

} // namespace

const std::string& audit_genesis_hash()
{
    static const std::string zeros(64, '0');
    return zeros;
}

nlohmann::json audit_record::to_json(bool with_hash) const
{
    nlohmann::json j = nlohmann::json::object();
    j["seq"] = seq;
    j["time_ms"] = time;
    j["time"] = format_rfc3339(time);
    j["kind"] = kind;
    j["actor"] = actor;
    j["details"] = details.is_object() ? details : nlohmann::json::object();
    j["prev_hash"] = prev_hash;
    if (with_hash) {
        j["hash"] = hash;
    }
    return j;
}

std::string canonical_json(const nlohmann::json& value)
{
    return value.dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
}

std::string audit_hash(const audit_record& record)
{
    return sha256_hex(record.prev_hash + canonical_json(record.to_json(false)));
}

audit_log::audit_log(std::string path, const clock& clk, int fd) : path_(std::move(path)), clock_(clk), fd_(fd)
{
    hash_ = audit_genesis_hash();
}

audit_log::~audit_log()
{
    if (fd_ >= 0) {
        ::close(fd_);
    }
}

namespace {

// Compares the end of a chain that verified with the head file next to the log. No head file
// leaves the chain alone to decide. A head one record behind is the window of a crash between
// the append and the head's replacement.
audit_verify_result check_head(const std::string& path, const scan_result& r)
{
    audit_verify_result out;
    out.ok = true;
    out.records = r.last_seq;
    std::string head_text;
    std::string ignored;
    if (!read_whole(head_path(path), head_text, ignored)) {
        return out;
    }
    nlohmann::json head = nlohmann::json::parse(head_text, nullptr, false);
    if (head.is_discarded() || !head.is_object() || !head.contains("seq") || !head["seq"].is_number_unsigned() ||
        !head.contains("hash") || !head["hash"].is_string()) {
        out.ok = false;
        out.problem = fmt::format("the head file {} is not {{\"hash\":...,\"seq\":...}}", quote_value(head_path(path)));
        return out;
    }
    const auto head_seq = head["seq"].get<std::uint64_t>();
    const auto head_hash = head["hash"].get<std::string>();
    if (r.last_seq < head_seq) {
        out.ok = false;
        out.line = static_cast<std::size_t>(r.last_seq + 1);
        out.problem = fmt::format("line {}: the log ends after record {} but its head file says {} records "
                                  "were written: records were removed from the end",
                                  r.last_seq + 1, r.last_seq, head_seq);
        return out;
    }
    if (r.last_seq == head_seq && r.last_hash != head_hash) {
        out.ok = false;
        out.line = static_cast<std::size_t>(r.last_seq);
        out.problem = fmt::format("line {}: record {} differs from the one the head file recorded: the end "
                                  "of the log was rewritten",
                                  r.last_seq, r.last_seq);
        return out;
    }
    if (r.last_seq > head_seq + 1) {
        out.ok = false;
        out.line = static_cast<std::size_t>(head_seq + 2);
        out.problem = fmt::format("line {}: the head file says {} records, the log has {}: the head file is "
                                  "stale or was replaced",
                                  head_seq + 2, head_seq, r.last_seq);
        return out;
    }
    return out;
}

} // namespace

std::unique_ptr<audit_log> audit_log::open(const std::string& path, const clock& clk, std::string& error)
{
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) {
        error = fmt::format("cannot open the audit log {}: {}", quote_value(path), std::strerror(errno));
        return nullptr;
    }
    std::unique_ptr<audit_log> log(new audit_log(path, clk, fd));
    std::string text;
    if (!read_whole(path, text, error)) {
        return nullptr;
    }
    scan_result r = scan(text);
    std::size_t cut = 0;
    if (!r.verify.ok && !r.only_cut_tail) {
        error = fmt::format("the audit log {} does not verify: {}", quote_value(path), r.verify.problem);
        return nullptr;
    }
    // The records that are complete must also end where the head file records: extending a log
    // cut at its end or rewritten there would make the tampering verify. An incomplete last
    // line is a crash's only when the head does not list it yet.
    if (auto head = check_head(path, r); !head.ok) {
        error = fmt::format("the audit log {} does not verify: {}", quote_value(path), head.problem);
        return nullptr;
    }
    if (!r.verify.ok) {
        cut = text.size() - r.valid_bytes;
        if (::ftruncate(fd, static_cast<off_t>(r.valid_bytes)) != 0 || ::fsync(fd) != 0) {
            error = fmt::format("cannot cut the incomplete last line of {}: {}", quote_value(path),
                                std::strerror(errno));
            return nullptr;
        }
    }
    log->seq_ = r.last_seq;
    log->hash_ = r.last_hash;
    if (cut > 0) {
        try {
            log->append("log_repaired", "tocsin",
                        {{"dropped_bytes", cut}, {"reason", "the last line had no newline after a crash"}});
        } catch (const std::exception& e) {
            error = e.what();
            return nullptr;
        }
    }
    return log;
}

audit_record audit_log::append(std::string kind, std::string actor, nlohmann::json details)
{
    std::lock_guard lock(mutex_);
    audit_record rec;
    rec.seq = seq_ + 1;
    rec.time = clock_.now_ms();
    rec.kind = std::move(kind);
    rec.actor = std::move(actor);
    rec.details = details.is_object() ? std::move(details) : nlohmann::json::object();
    rec.prev_hash = hash_;
    rec.hash = audit_hash(rec);
    const std::string line = canonical_json(rec.to_json(true)) + "\n";
    if (!write_all(fd_, line) || ::fsync(fd_) != 0) {
        throw std::runtime_error(fmt::format("cannot append to the audit log {}: {}", quote_value(path_),
                                             std::strerror(errno)));
    }
    seq_ = rec.seq;
    hash_ = rec.hash;
    write_head();
    return rec;
}

void audit_log::write_head()
{
    const std::string head = head_path(path_);
    const std::string tmp = head + ".tmp";
    const std::string body = canonical_json({{"seq", seq_}, {"hash", hash_}}) + "\n";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) {
        throw std::runtime_error(fmt::format("cannot write {}: {}", quote_value(tmp), std::strerror(errno)));
    }
    const bool ok = write_all(fd, body) && ::fsync(fd) == 0;
    ::close(fd);
    if (!ok || ::rename(tmp.c_str(), head.c_str()) != 0) {
        throw std::runtime_error(fmt::format("cannot replace {}: {}", quote_value(head), std::strerror(errno)));
    }
}

std::uint64_t audit_log::last_seq() const
{
    std::lock_guard lock(mutex_);
    return seq_;
}

std::string audit_log::last_hash() const
{
    std::lock_guard lock(mutex_);
    return hash_;
}


audit_verify_result verify_audit_log(const std::string& path)
{
    std::string text;
    audit_verify_result result;
    if (!read_whole(path, text, result.problem)) {
        return result;
    }
    scan_result r = scan(text);
    if (!r.verify.ok) {
        return r.verify;
    }
    return check_head(path, r);
}

bool read_audit_log(const std::string& path, std::vector<audit_record>& out, std::string& error)
{
    std::string text;
    if (!read_whole(path, text, error)) {
        return false;
    }
    std::istringstream in(text);
    std::string line;
    std::size_t line_no = 0;
    while (std::getline(in, line)) {
        ++line_no;
        audit_record rec;
        std::string problem;
        if (!parse_record(line, rec, problem)) {
            error = fmt::format("line {}: {}", line_no, problem);
            return false;
        }
        out.push_back(std::move(rec));
    }
    return true;
}

bool audit_matches(const audit_record& record, const audit_filter& filter)
{
    if (!filter.kinds.empty() && filter.kinds.count(record.kind) == 0) {
        return false;
    }
    if (!filter.run_id.empty()) {
        auto it = record.details.find("run_id");
        if (it == record.details.end() || !it->is_string() || it->get<std::string>() != filter.run_id) {
            return false;
        }
    }
    if (filter.from && record.time < *filter.from) {
        return false;
    }
    if (filter.to && record.time >= *filter.to) {
        return false;
    }
    return true;
}

std::vector<audit_record> filter_audit(const std::vector<audit_record>& records, const audit_filter& filter)
{
    std::vector<audit_record> out;
    for (const auto& r : records) {
        if (audit_matches(r, filter)) {
            out.push_back(r);
        }
    }
    return out;
}

} // namespace tocsin::runbooks
