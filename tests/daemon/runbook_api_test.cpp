// The runbook API: JSON views of a real engine's runs, request parsers, the audit query, and
// the pure parts of `tocsinctl runbooks`.

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "daemon/ctl_runbooks.hpp"
#include "daemon/runbook_api.hpp"
#include "runbooks/audit.hpp"
#include "runbooks/engine.hpp"
#include "runbooks/loader.hpp"
#include "support/test_support.hpp"

using namespace tocsin;
using namespace tocsin::runbooks;
using json = nlohmann::json;

namespace {

constexpr time_ms minute = 60'000;
constexpr time_ms t0 = 1'714'564'800'000; // 2024-05-01T12:00:00Z

class fake_executor final : public step_executor {
public:
    step_result execute(const step_job& job) override
    {
        std::lock_guard lock(mutex_);
        auto it = results.find(job.step_name);
        if (it != results.end()) {
            return it->second;
        }
        return {step_outcome::succeeded, "ok", "line one\nline two\n"};
    }
    std::map<std::string, step_result> results;

private:
    std::mutex mutex_;
};

const char* const gated_runbook = "runbooks:\n"
                                  "  - name: rollback\n"
                                  "    trigger:\n"
                                  "      matchers: ['alertname=~\"ModelAucDrift|ModelLatencyHigh\"', 'team=\"ml\"']\n"
                                  "      min_severity: warning\n"
                                  "    params: {model: '^[a-z0-9][a-z0-9-]{0,62}$'}\n"
                                  "    escalate_to: ml-oncall\n"
                                  "    cooldown: {per_alert: 1h, per_runbook: 1m}\n"
                                  "    max_runs: {count: 3, window: 24h}\n"
                                  "    concurrency: 2\n"
                                  "    approval: {required_before: roll-back, timeout: 15m}\n"
                                  "    steps:\n"
                                  "      - name: stop-canary\n"
                                  "        stop: {pid_file: /run/canary.pid}\n"
                                  "        timeout: 30s\n"
                                  "      - name: roll-back\n"
                                  "        rollback: {exec: {argv: [/opt/rollback, '{{ $labels.model }}']}}\n"
                                  "        on_failure: escalate\n"
                                  "  - name: page-on-escalation\n"
                                  "    trigger: {matchers: ['alertname=\"DiskFull\"'], on: escalation, level: 2}\n"
                                  "    dry_run: true\n"
                                  "    steps:\n"
                                  "      - name: tell\n"
                                  "        notify: {receiver: ops, text: 'disk full'}\n";

std::vector<runbook> load(std::string_view text)
{
    diagnostics diags;
    auto books = load_runbook_text(text, "rb.yaml", diags);
    INFO(diags.to_string());
    REQUIRE(diags.empty());
    return books;
}

alert_event firing(std::string model, time_ms episode)
{
    alert_event e;
    e.kind = trigger_on::firing;
    e.labels = label_set({{"alertname", "ModelAucDrift"}, {"model", std::move(model)}, {"team", "ml"},
                          {"severity", "critical"}});
    e.fingerprint = e.labels.fingerprint();
    e.episode_start = episode;
    return e;
}

struct harness {
    manual_clock clock{t0};
    memory_journal journal;
    fake_executor exec;
    std::unique_ptr<audit_log> audit;
    std::unique_ptr<engine> eng;

    explicit harness(const std::string& audit_path = "")
    {
        engine_options options;
        if (!audit_path.empty()) {
            std::string error;
            audit = audit_log::open(audit_path, clock, error);
            REQUIRE(audit);
            options.audit = audit.get();
        }
        engine_hooks hooks;
        hooks.notify = [](const notification&) { return notify_result{true, ""}; };
        eng = std::make_unique<engine>(load(gated_runbook), clock, journal, exec, hooks, options);
    }

    std::string fire(const alert_event& e)
    {
        auto d = eng->on_alert(e);
        REQUIRE(d.size() == 1);
        eng->tick();
        return d[0].run_id;
    }
};

query_params params(std::initializer_list<std::pair<std::string, std::string>> items) { return query_params(items); }

std::string runs_error(query_params p)
{
    std::string error;
    parse_runs_query(p, error);
    return error;
}

json body_of(const tocsin::http_response& r)
{
    INFO(r.body);
    REQUIRE(r.status == 200);
    return json::parse(r.body);
}

// A transport that returns a scripted reply and records each request.
class fake_transport final : public silence_transport {
public:
    transport_reply send(const std::string& method, const std::string& target, const std::string& body) override
    {
        requests.push_back({method, target, body});
        return reply;
    }
    struct request {
        std::string method, target, body;
    };
    std::vector<request> requests;
    transport_reply reply{200, "", ""};
};

} // namespace

TEST_CASE("runbook list JSON")
{
    const json list = runbook_list_json(load(gated_runbook));
    REQUIRE(list.size() == 2);
    const json& rb = list[0];
    CHECK(rb["name"] == "rollback");
    CHECK(rb["file"] == "rb.yaml");
    CHECK(rb["line"] == 2);
    CHECK(rb["trigger"] == json{{"matchers", {"alertname=~\"ModelAucDrift|ModelLatencyHigh\"", "team=\"ml\""}},
                                {"min_severity", "warning"},
                                {"on", "firing"},
                                {"level", nullptr}});
    CHECK(rb["dry_run"] == false);
    CHECK(rb["cooldown"] == json{{"per_alert_ms", 3'600'000}, {"per_runbook_ms", 60'000}});
    CHECK(rb["max_runs"] == json{{"count", 3}, {"window_ms", 86'400'000}});
    CHECK(rb["concurrency"] == 2);
    CHECK(rb["approval"] == json{{"before_step", "roll-back"}, {"timeout_ms", 900'000}});
    CHECK(rb["on_interrupt"] == "abort_and_escalate");
    CHECK(rb["escalate_to"] == "ml-oncall");
    CHECK(rb["steps"] ==
          json{{{"name", "stop-canary"}, {"kind", "stop"}, {"timeout_ms", 30'000}, {"on_failure", "abort"}},
               {{"name", "roll-back"}, {"kind", "rollback"}, {"timeout_ms", 60'000}, {"on_failure", "escalate"}}});

    const json& other = list[1];
    CHECK(other["trigger"]["on"] == "escalation");
    CHECK(other["trigger"]["level"] == 2);
    CHECK(other["trigger"]["min_severity"] == nullptr);
    CHECK(other["approval"] == nullptr);
    CHECK(other["dry_run"] == true);
    CHECK(other["max_runs"] == json{{"count", 0}, {"window_ms", 0}});
}

TEST_CASE("run JSON of a real engine")
{
    harness h;
    const auto e = firing("fraud-v2", t0);
    const std::string id = h.fire(e);
    REQUIRE(valid_run_id(id));

    const json waiting = run_json(*h.eng->find(id));
    CHECK(waiting["id"] == id);
    CHECK(waiting["runbook"] == "rollback");
    CHECK(waiting["fingerprint"] == fmt::format("{:016x}", e.fingerprint));
    CHECK(waiting["fingerprint"].get<std::string>().size() == 16);
    CHECK(waiting["episode_start"] == "2024-05-01T12:00:00.000Z");
    CHECK(waiting["labels"] ==
          json{{"alertname", "ModelAucDrift"}, {"model", "fraud-v2"}, {"severity", "critical"}, {"team", "ml"}});
    CHECK(waiting["created_at"] == "2024-05-01T12:00:00.000Z");
    CHECK(waiting["dry_run"] == false);
    CHECK(waiting["phase"] == "waiting_approval");
    CHECK(waiting["approval"] == json{{"state", "waiting"}, {"by", nullptr}, {"reason", nullptr}});
    CHECK(waiting["outcome"] == nullptr);
    CHECK(waiting["outcome_detail"] == "");
    CHECK(waiting["finished_at"] == nullptr);
    REQUIRE(waiting["steps"].size() == 2);
    CHECK(waiting["steps"][0] == json{{"name", "stop-canary"},
                                      {"kind", "stop"},
                                      {"state", "finished"},
                                      {"outcome", "succeeded"},
                                      {"detail", "ok"},
                                      {"output", "line one\nline two\n"},
                                      {"started_at", "2024-05-01T12:00:00.000Z"},
                                      {"finished_at", "2024-05-01T12:00:00.000Z"}});
    CHECK(waiting["steps"][1] == json{{"name", "roll-back"},
                                      {"kind", "rollback"},
                                      {"state", "pending"},
                                      {"outcome", nullptr},
                                      {"detail", ""},
                                      {"output", ""},
                                      {"started_at", nullptr},
                                      {"finished_at", nullptr}});

    h.clock.advance_ms(2 * minute + 5);
    std::string error;
    REQUIRE(h.eng->approve(id, "alice", error));
    h.eng->tick();
    const json done = run_json(*h.eng->find(id));
    CHECK(done["phase"] == "finished");
    CHECK(done["approval"] == json{{"state", "approved"}, {"by", "alice"}, {"reason", nullptr}});
    CHECK(done["outcome"] == "succeeded");
    CHECK(done["finished_at"] == "2024-05-01T12:02:00.005Z");
    CHECK(done["steps"][1]["outcome"] == "succeeded");
    CHECK(done["steps"][1]["started_at"] == "2024-05-01T12:02:00.005Z");
}

TEST_CASE("skip JSON and runs list filters")
{
    harness h;
    const auto a = firing("fraud-v2", t0);
    const std::string first = h.fire(a);
    h.clock.advance_ms(2 * minute);
    const auto b = firing("churn", t0 + 2 * minute);
    const std::string second = h.fire(b);
    h.clock.advance_ms(2 * minute);
    auto silenced = firing("ranker", t0 + 4 * minute);
    silenced.silenced = true;
    silenced.silenced_by = "silence-42";
    REQUIRE(h.eng->on_alert(silenced)[0].kind == decision_kind::skipped_silenced);
    std::string error;
    REQUIRE(h.eng->reject(first, "bob", "not this one", error));

    REQUIRE(h.eng->skips().size() == 1);
    const json skip = skip_json(h.eng->skips()[0]);
    CHECK(skip["runbook"] == "rollback");
    CHECK(skip["fingerprint"] == fmt::format("{:016x}", silenced.fingerprint));
    CHECK(skip["episode_start"] == "2024-05-01T12:04:00.000Z");
    CHECK(skip["reason"] == "silenced");
    CHECK(skip["at"] == "2024-05-01T12:04:00.000Z");
    CHECK(skip["detail"].get<std::string>().find("silence-42") != std::string::npos);

    const json all = runs_response(h.eng->runs(), h.eng->skips(), runs_query{});
    REQUIRE(all["runs"].size() == 2);
    CHECK(all["runs"][0]["id"] == second); // newest first
    CHECK(all["runs"][1]["id"] == first);
    CHECK(all["runs"][1]["outcome"] == "rejected");
    CHECK(all["skips"].size() == 1);

    runs_query waiting;
    waiting.phase = run_phase::waiting_approval;
    const json w = runs_response(h.eng->runs(), h.eng->skips(), waiting);
    REQUIRE(w["runs"].size() == 1);
    CHECK(w["runs"][0]["id"] == second);

    runs_query one;
    one.limit = 1;
    CHECK(runs_response(h.eng->runs(), h.eng->skips(), one)["runs"].size() == 1);

    runs_query by_alert;
    by_alert.alert = a.fingerprint;
    const json alert_only = runs_response(h.eng->runs(), h.eng->skips(), by_alert);
    REQUIRE(alert_only["runs"].size() == 1);
    CHECK(alert_only["runs"][0]["id"] == first);
    CHECK(alert_only["skips"].empty());

    runs_query other_book;
    other_book.runbook = "page-on-escalation";
    const json none = runs_response(h.eng->runs(), h.eng->skips(), other_book);
    CHECK(none == json{{"runs", json::array()}, {"skips", json::array()}});
}

TEST_CASE("runs query parameters")
{
    std::string error;
    const runs_query q = parse_runs_query(
        params({{"runbook", "rollback"}, {"phase", "finished"}, {"alert", "8F3A0C1D2E4B5A69"}, {"limit", "7"}}),
        error);
    CHECK(error.empty());
    CHECK(q.runbook == "rollback");
    CHECK(q.phase == run_phase::finished);
    CHECK(q.alert == 0x8f3a0c1d2e4b5a69ULL);
    CHECK(q.limit == 7);

    const runs_query defaults = parse_runs_query({}, error);
    CHECK(error.empty());
    CHECK(defaults.limit == 100);
    CHECK_FALSE(defaults.phase);

    CHECK(runs_error(params({{"limit", "0"}})) == "invalid limit \"0\"; expected a whole number from 1 to 1000");
    CHECK(runs_error(params({{"limit", "1001"}})).starts_with("invalid limit \"1001\""));
    CHECK(runs_error(params({{"limit", "ten"}})).starts_with("invalid limit \"ten\""));
    CHECK(runs_error(params({{"limit", "10x"}})).starts_with("invalid limit \"10x\""));
    CHECK(runs_error(params({{"limit", ""}})).starts_with("invalid limit \"\""));
    CHECK(runs_error(params({{"limit", "-1"}})).starts_with("invalid limit \"-1\""));
    CHECK(runs_error(params({{"phase", "done"}})) ==
          "invalid phase \"done\"; expected queued, running, waiting_approval or finished");
    CHECK(runs_error(params({{"alert", "123"}})).starts_with("invalid alert \"123\"; expected the alert's fingerprint"));
    CHECK(runs_error(params({{"alert", "zz3a0c1d2e4b5a69"}})).starts_with("invalid alert"));
    CHECK(runs_error(params({{"runbook", "a b"}})).starts_with("invalid runbook \"a b\""));
    CHECK(runs_error(params({{"runbook", ""}})).starts_with("invalid runbook \"\""));
    CHECK(runs_error(params({{"state", "finished"}})) ==
          "unknown query parameter \"state\"; expected runbook, phase, alert or limit");
    CHECK(runs_error(params({{"limit", "5"}, {"limit", "6"}})) ==
          "limit is given more than once; give it once, for example limit=100");

    parse_runs_query_string("phase=%zz", error);
    CHECK(error.starts_with("the query string has a malformed %XX escape"));
    const runs_query decoded = parse_runs_query_string("runbook=model-rollback&phase=waiting_approval", error);
    CHECK(error.empty());
    CHECK(decoded.runbook == "model-rollback");
    CHECK(decoded.phase == run_phase::waiting_approval);
}

TEST_CASE("run paths with id and action")
{
    const run_path get = parse_run_path("/api/v1/runbooks/runs/r0123456789abcdef");
    CHECK(get.matched);
    CHECK(get.status == 200);
    CHECK(get.run_id == "r0123456789abcdef");
    CHECK(get.action == run_action::none);

    CHECK(parse_run_path("/api/v1/runbooks/runs/r0123456789abcdef/approve").action == run_action::approve);
    CHECK(parse_run_path("/api/v1/runbooks/runs/r0123456789abcdef/reject").action == run_action::reject);
    CHECK(parse_run_path("/api/v1/runbooks/runs/r0123456789abcdef/cancel").action == run_action::cancel);

    for (const char* path : {"/api/v1/runbooks/runs", "/api/v1/runbooks", "/api/v1/runbooks/runsx/r1",
                             "/api/v1/alerts/r0123456789abcdef"}) {
        INFO(path);
        CHECK_FALSE(parse_run_path(path).matched);
    }

    const run_path bad = parse_run_path("/api/v1/runbooks/runs/R0123456789ABCDEF/approve");
    CHECK(bad.matched);
    CHECK(bad.status == 400);
    CHECK(bad.error == "invalid run id \"R0123456789ABCDEF\"; expected \"r\" and 16 lowercase hex digits, such as "
                       "r0123456789abcdef, as GET /api/v1/runbooks/runs lists them");
    for (const char* path : {"/api/v1/runbooks/runs/", "/api/v1/runbooks/runs//approve",
                             "/api/v1/runbooks/runs/r0123", "/api/v1/runbooks/runs/r0123456789abcdef0",
                             "/api/v1/runbooks/runs/x0123456789abcdef", "/api/v1/runbooks/runs/r0123456789abcdeg",
                             "/api/v1/runbooks/runs/r0123456789abcde%20"}) {
        INFO(path);
        const run_path p = parse_run_path(path);
        CHECK(p.matched);
        CHECK(p.status == 400);
        CHECK(p.error.starts_with("invalid run id"));
    }
    const run_path long_id = parse_run_path("/api/v1/runbooks/runs/" + std::string(5000, 'a'));
    CHECK(long_id.status == 400);
    CHECK(long_id.error.size() < 250); // the value is cut in the message

    const run_path action = parse_run_path("/api/v1/runbooks/runs/r0123456789abcdef/retry");
    CHECK(action.status == 404);
    CHECK(action.error == "unknown run action \"retry\"; expected "
                          "/api/v1/runbooks/runs/r0123456789abcdef/approve, reject or cancel");
    CHECK(parse_run_path("/api/v1/runbooks/runs/r0123456789abcdef/").status == 404);
    CHECK(parse_run_path("/api/v1/runbooks/runs/r0123456789abcdef/approve/x").status == 404);
}

TEST_CASE("run action request bodies")
{
    auto ok = parse_run_action_request(run_action::approve, R"({"by": "alice"})");
    CHECK(ok.error.empty());
    CHECK(ok.status == 200);
    CHECK(ok.by == "alice");
    CHECK(ok.reason.empty());
    auto with_reason = parse_run_action_request(run_action::reject, R"({"by": "bob", "reason": "too risky now"})");
    CHECK(with_reason.error.empty());
    CHECK(with_reason.reason == "too risky now");
    CHECK(parse_run_action_request(run_action::approve, R"({"by": "alice", "reason": null})").error.empty());

    auto err = [](run_action a, std::string_view body) { return parse_run_action_request(a, body).error; };
    CHECK(err(run_action::approve, "") ==
          R"(the request body is not a JSON object; expected {"by": "<name>", "reason": "<optional>"})");
    CHECK(err(run_action::reject, "{\"by\": ") ==
          R"(the request body is not a JSON object; expected {"by": "<name>", "reason": "<why>"})");
    CHECK(err(run_action::approve, "[]").starts_with("the request body is not a JSON object"));
    CHECK(err(run_action::approve, R"({"reason": "x"})") ==
          R"("by" is missing or empty; name who approves the run, such as {"by": "alice"})");
    CHECK(err(run_action::cancel, R"({"by": "   "})").starts_with("\"by\" is missing or empty; name who cancels"));
    CHECK(err(run_action::approve, R"({"by": 7})") == "\"by\" is 7; expected a string");
    CHECK(err(run_action::approve, R"({"by": "a", "comment": "b"})") ==
          "unknown field \"comment\"; expected by and reason");
    CHECK(err(run_action::approve, "{\"by\": \"eve\\ninjected\"}") ==
          "\"by\" contains the control character 0x0a; write it on one line without control characters");
    CHECK(err(run_action::reject, "{\"by\": \"eve\", \"reason\": \"a\\u001b[31m\"}") ==
          "\"reason\" contains the control character 0x1b; write it on one line without control characters");
    CHECK(err(run_action::approve, R"({"by": ")" + std::string(257, 'x') + R"("})") ==
          "\"by\" has 257 bytes; at most 256 are allowed");
    CHECK(err(run_action::approve, R"({"by": ")" + std::string(256, 'x') + R"("})").empty());
    CHECK(err(run_action::approve, R"({"by": "a", "reason": ")" + std::string(4097, 'x') + R"("})") ==
          "\"reason\" has 4097 bytes; at most 4096 are allowed");
    CHECK(err(run_action::reject, R"({"by": "bob"})") ==
          R"("reason" is missing or empty; say why you reject the run, such as {"by": "alice", "reason": "the canary is healthy"})");
    CHECK(err(run_action::cancel, R"({"by": "bob", "reason": ""})").starts_with(
        "\"reason\" is missing or empty; say why you cancel the run"));
    CHECK(err(run_action::approve, R"({"by": "Tocsin"})") ==
          "\"by\" is \"Tocsin\", the name the audit log gives tocsin's own actions; use the name of the person");
    CHECK(err(run_action::approve, std::string(200, '[') + std::string(200, ']'))
              .starts_with("the request body nests too deeply"));

    const auto big = parse_run_action_request(run_action::approve, std::string(16 * 1024 + 1, ' '));
    CHECK(big.status == 413);
    CHECK(big.error == "the request body has 16385 bytes; at most 16384 are allowed");
    CHECK(parse_run_action_request(run_action::approve, R"({"by": 1})").status == 400);
}

TEST_CASE("status of a rejected action")
{
    harness h;
    const std::string id = h.fire(firing("fraud-v2", t0));
    CHECK(run_action_error_status(std::nullopt, run_action::approve) == 404);
    auto waiting = h.eng->find(id);
    CHECK(run_action_error_status(waiting, run_action::approve) == 500); // a rejection for another reason, such as the journal failing
    std::string error;
    REQUIRE(h.eng->approve(id, "alice", error));
    auto running = h.eng->find(id);
    CHECK(running->phase == run_phase::running);
    CHECK(run_action_error_status(running, run_action::approve) == 409);
    CHECK(run_action_error_status(running, run_action::reject) == 409);
    CHECK(run_action_error_status(running, run_action::cancel) == 500);
    h.eng->tick();
    auto finished = h.eng->find(id);
    REQUIRE(finished->phase == run_phase::finished);
    CHECK(run_action_error_status(finished, run_action::cancel) == 409);
}

TEST_CASE("audit query filters a real log")
{
    test::temp_dir dir;
    const std::string path = (dir.path() / "audit.jsonl").string();
    harness h(path);
    const std::string first = h.fire(firing("fraud-v2", t0));
    h.clock.advance_ms(10 * minute);
    const std::string second = h.fire(firing("churn", t0 + 10 * minute));
    std::string error;
    REQUIRE(h.eng->approve(first, "alice", error));
    h.eng->tick();
    const time_ms now = h.clock.now_ms();

    const json all = body_of(audit_response(path, "", now));
    CHECK(all["chain"] == json{{"ok", true}, {"records", h.audit->last_seq()}, {"problem", nullptr}});
    REQUIRE(all["records"].size() == h.audit->last_seq());
    CHECK(all["records"][0]["seq"] == 1);
    CHECK(all["records"][0]["prev_hash"] == audit_genesis_hash());
    // Each record as stored: its canonical form hashes to its hash.
    for (const json& r : all["records"]) {
        std::vector<audit_record> stored;
        REQUIRE(read_audit_log(path, stored, error));
        CHECK(canonical_json(r) == canonical_json(stored[r["seq"].get<std::size_t>() - 1].to_json()));
    }

    // Two requests for approval (by tocsin) and alice's approval.
    const json approvals = body_of(audit_response(path, "kind=approval", now));
    REQUIRE(approvals["records"].size() == 3);
    CHECK(approvals["records"][0]["details"]["state"] == "waiting");
    CHECK(approvals["records"][2]["actor"] == "alice");
    CHECK(approvals["records"][2]["details"]["state"] == "approved");

    const json three_kinds = body_of(audit_response(path, "kind=approval,run_finished&kind=run_started", now));
    for (const json& r : three_kinds["records"]) {
        CHECK((r["kind"] == "approval" || r["kind"] == "run_finished" || r["kind"] == "run_started"));
    }
    CHECK(three_kinds["records"].size() == 6); // two starts, three approvals, one finish

    const json of_second = body_of(audit_response(path, "run=" + second, now));
    REQUIRE_FALSE(of_second["records"].empty());
    for (const json& r : of_second["records"]) {
        CHECK(r["details"]["run_id"] == second);
    }

    const json recent = body_of(audit_response(path, "since=5m", now));
    REQUIRE_FALSE(recent["records"].empty());
    for (const json& r : recent["records"]) {
        CHECK(r["time_ms"].get<time_ms>() >= now - 5 * minute);
    }
    CHECK(body_of(audit_response(path, "since=2024-05-01T12:05:00Z", now))["records"] == recent["records"]);

    const json last_two = body_of(audit_response(path, "limit=2", now));
    REQUIRE(last_two["records"].size() == 2);
    CHECK(last_two["records"][1]["seq"] == h.audit->last_seq()); // newest last
    CHECK(last_two["records"][0]["seq"] == h.audit->last_seq() - 1);

    const auto bad = [&](std::string_view query) {
        const tocsin::http_response r = audit_response(path, query, now);
        CHECK(r.status == 400);
        return r.body;
    };
    CHECK(bad("kind=steps").starts_with("unknown kind \"steps\"; expected one of acknowledgement, approval, log_repaired"));
    CHECK(bad("kind=step,").starts_with("unknown kind \"\""));
    CHECK(bad("run=r1").starts_with("invalid run \"r1\""));
    CHECK(bad("since=yesterday").starts_with("invalid since \"yesterday\""));
    CHECK(bad("since=0s").starts_with("invalid since \"0s\": it must be greater than 0"));
    CHECK(bad("limit=0") == "invalid limit \"0\"; expected a whole number from 1 to 10000\n");
    CHECK(bad("limit=10001").starts_with("invalid limit \"10001\""));
    CHECK(bad("limit=1&limit=2").starts_with("limit is given more than once"));
    CHECK(bad("seq=3").starts_with("unknown query parameter \"seq\""));
    CHECK(bad("kind=%zz").starts_with("the query string has a malformed %XX escape"));
}

TEST_CASE("audit query with broken or missing log")
{
    test::temp_dir dir;
    const std::string path = (dir.path() / "audit.jsonl").string();

    const json missing = body_of(audit_response(path, "", t0));
    CHECK(missing == json{{"chain", {{"ok", true}, {"records", 0}, {"problem", nullptr}}}, {"records", json::array()}});

    {
        harness h(path);
        h.fire(firing("fraud-v2", t0));
    }
    std::string text;
    {
        std::ifstream in(path);
        text.assign(std::istreambuf_iterator<char>(in), {});
    }
    const auto pos = text.find("stop-canary");
    REQUIRE(pos != std::string::npos);
    text.replace(pos, 11, "stop-server");
    std::ofstream(path, std::ios::trunc) << text;

    const json broken = body_of(audit_response(path, "", t0));
    CHECK(broken["chain"]["ok"] == false);
    CHECK(broken["chain"]["problem"].get<std::string>().find("was edited") != std::string::npos);
    CHECK(broken["records"].empty());

    // The head file without its log: every record was removed, not "no run yet".
    std::filesystem::remove(path);
    const json removed = body_of(audit_response(path, "", t0));
    CHECK(removed["chain"]["ok"] == false);
    CHECK(removed["chain"]["problem"].get<std::string>().find("the log is missing but its head file") !=
          std::string::npos);
    CHECK(removed["records"].empty());
}

TEST_CASE("tocsinctl runbooks argument checks")
{
    using action = runbooks_command::action;
    runbooks_command cmd;
    std::string error;

    cmd.subcommand = action::list;
    CHECK(check_runbooks_args(cmd, error));
    CHECK(runbooks_target(cmd) == "/api/v1/runbooks");

    cmd.subcommand = action::runs;
    CHECK(runbooks_target(cmd) == "/api/v1/runbooks/runs");
    cmd.runbook = "model rollback";
    cmd.phase = "waiting_approval";
    CHECK(check_runbooks_args(cmd, error));
    CHECK(runbooks_target(cmd) == "/api/v1/runbooks/runs?runbook=model%20rollback&phase=waiting_approval");
    cmd.phase = "done";
    CHECK_FALSE(check_runbooks_args(cmd, error));
    CHECK(error == "--phase \"done\" is not a run phase; expected queued, running, waiting_approval or finished");

    runbooks_command show;
    show.subcommand = action::show;
    show.run_id = "r0123";
    CHECK_FALSE(check_runbooks_args(show, error));
    CHECK(error.starts_with("\"r0123\" is not a run id"));
    show.run_id = "r0123456789abcdef";
    CHECK(check_runbooks_args(show, error));
    CHECK(runbooks_target(show) == "/api/v1/runbooks/runs/r0123456789abcdef");

    runbooks_command act;
    act.subcommand = action::reject;
    act.run_id = "r0123456789abcdef";
    act.by = "alice";
    CHECK_FALSE(check_runbooks_args(act, error));
    CHECK(error.starts_with("--reason is required to reject a run"));
    act.reason = "not now";
    CHECK(check_runbooks_args(act, error));
    CHECK(runbooks_target(act) == "/api/v1/runbooks/runs/r0123456789abcdef/reject");
    CHECK(run_action_body(act) == json{{"by", "alice"}, {"reason", "not now"}});
    act.reason = "line\nbreak";
    CHECK_FALSE(check_runbooks_args(act, error));
    act.by = "";
    act.reason = "x";
    CHECK_FALSE(check_runbooks_args(act, error));
    CHECK(error.starts_with("--by is empty"));

    runbooks_command approve;
    approve.subcommand = action::approve;
    approve.run_id = "r0123456789abcdef";
    approve.by = "alice";
    CHECK(check_runbooks_args(approve, error));
    CHECK(run_action_body(approve) == json{{"by", "alice"}});
}

TEST_CASE("tocsinctl runbooks with scripted server")
{
    using action = runbooks_command::action;
    harness h;
    const std::string id = h.fire(firing("fraud-v2", t0));

    fake_transport api;
    std::ostringstream out;
    std::ostringstream err;

    runbooks_command runs;
    runs.subcommand = action::runs;
    api.reply.body = runs_response(h.eng->runs(), h.eng->skips(), runs_query{}).dump();
    CHECK(runbooks_run(runs, api, out, err) == 0);
    CHECK(api.requests.back().method == "GET");
    CHECK(out.str().starts_with("ID "));
    CHECK(out.str().find(id) != std::string::npos);
    CHECK(out.str().find("waiting_approval") != std::string::npos);

    out.str("");
    runbooks_command list;
    api.reply.body = runbook_list_json(h.eng->runbooks()).dump();
    CHECK(runbooks_run(list, api, out, err) == 0);
    CHECK(out.str().find("alertname=~\"ModelAucDrift|ModelLatencyHigh\" team=\"ml\" severity>=warning") !=
          std::string::npos);
    CHECK(out.str().find("stop-canary,roll-back") != std::string::npos);

    out.str("");
    runbooks_command show;
    show.subcommand = action::show;
    show.run_id = id;
    api.reply.body = run_json(*h.eng->find(id)).dump();
    CHECK(runbooks_run(show, api, out, err) == 0);
    CHECK(out.str().find("Phase:          waiting_approval") != std::string::npos);
    CHECK(out.str().find("Output of stop-canary:\n  line one\n  line two\n") != std::string::npos);

    out.str("");
    runbooks_command approve;
    approve.subcommand = action::approve;
    approve.run_id = id;
    approve.by = "alice";
    std::string error;
    REQUIRE(h.eng->approve(id, "alice", error));
    api.reply.body = run_json(*h.eng->find(id)).dump();
    CHECK(runbooks_run(approve, api, out, err) == 0);
    CHECK(api.requests.back().method == "POST");
    CHECK(api.requests.back().target == "/api/v1/runbooks/runs/" + id + "/approve");
    CHECK(json::parse(api.requests.back().body) == json{{"by", "alice"}});
    CHECK(out.str() == "run " + id + ": running\n");

    api.reply = {409, "run " + id + " is finished, not waiting for approval\n", ""};
    std::ostringstream err2;
    CHECK(runbooks_run(approve, api, out, err2) == 1);
    CHECK(err2.str() == "tocsinctl: 409: run " + id + " is finished, not waiting for approval\n");

    api.reply = {0, "", "cannot connect"};
    std::ostringstream err3;
    CHECK(runbooks_run(show, api, out, err3) == 1);
    CHECK(err3.str() == "tocsinctl: cannot connect\n");

    api.reply = {200, "<html>", ""};
    std::ostringstream err4;
    CHECK(runbooks_run(show, api, out, err4) == 1);
    CHECK(err4.str().starts_with("tocsinctl: the server's answer is not a run"));

    const std::size_t asked = api.requests.size();
    runbooks_command bad = approve;
    bad.run_id = "nope";
    std::ostringstream err5;
    CHECK(runbooks_run(bad, api, out, err5) == 2);
    CHECK(api.requests.size() == asked); // nothing sent
}
