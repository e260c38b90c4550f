#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <snappy.h>

#include "daemon/api.hpp"
#include "daemon/engine_fixture.hpp"
#include "daemon/ingest.hpp"
#include "proto/remote.pb.h"

using namespace tocsin;
using tocsin::test::engine_fixture;

namespace {

using label_list = std::vector<std::pair<std::string, std::string>>;

constexpr time_ms t0 = engine_fixture::start_ms;
constexpr std::string_view protobuf_type = "application/x-protobuf";

void add_series(prometheus::WriteRequest& request, const label_list& labels,
                std::vector<std::pair<double, time_ms>> samples)
{
    prometheus::TimeSeries* series = request.add_timeseries();
    for (const auto& [name, value] : labels) {
        prometheus::Label* l = series->add_labels();
        l->set_name(name);
        l->set_value(value);
    }
    for (const auto& [value, timestamp] : samples) {
        prometheus::Sample* s = series->add_samples();
        s->set_value(value);
        s->set_timestamp(timestamp);
    }
}

std::string compress(const std::string& raw)
{
    std::string out;
    snappy::Compress(raw.data(), raw.size(), &out);
    return out;
}

std::string body_of(const prometheus::WriteRequest& request)
{
    return compress(request.SerializeAsString());
}

// Raw protobuf encoding, for fields the generated classes do not have.
void put_varint(std::string& out, std::uint64_t value)
{
    while (value >= 0x80) {
        out.push_back(static_cast<char>((value & 0x7f) | 0x80));
        value >>= 7;
    }
    out.push_back(static_cast<char>(value));
}

void put_tag(std::string& out, std::uint32_t field, std::uint32_t wire_type)
{
    put_varint(out, (static_cast<std::uint64_t>(field) << 3) | wire_type);
}

void put_bytes(std::string& out, std::uint32_t field, const std::string& bytes)
{
    put_tag(out, field, 2);
    put_varint(out, bytes.size());
    out += bytes;
}

void put_fixed64(std::string& out, std::uint32_t field, std::uint64_t value)
{
    put_tag(out, field, 1);
    for (int i = 0; i < 8; ++i) {
        out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
    }
}

struct rw_fixture : engine_fixture {
    using engine_fixture::engine_fixture;

    ingest_outcome send(const std::string& body, std::string_view content_type = protobuf_type,
                        std::string_view encoding = "snappy")
    {
        return ingest_remote_write(body, content_type, encoding, eng, limits, counters);
    }

    ingest_outcome send(const prometheus::WriteRequest& request)
    {
        return send(body_of(request));
    }
};

const label_list cpu_a{{"__name__", "cpu"}, {"host", "a"}};
const label_list cpu_b{{"__name__", "cpu"}, {"host", "b"}};

} // namespace

TEST_CASE("remote_write: valid request gives 204")
{
    rw_fixture f;
    prometheus::WriteRequest request;
    add_series(request, cpu_a, {{95.0, t0}});
    add_series(request, cpu_b, {{10.0, t0}});

    ingest_outcome out = f.send(request);

    CHECK(out.http_status == 204);
    CHECK(out.body.empty());
    CHECK(out.accepted == 2);
    CHECK(out.rejected == 0);
    CHECK(f.counters.samples_accepted == 2);
    CHECK(f.eng.stats().series == 2);
    auto alert = f.find_alert("HighCpu", "host", "a");
    REQUIRE(alert);
    CHECK(alert->value == 95.0);
    CHECK(alert->state != alert_state::inactive);
    CHECK_FALSE(f.find_alert("HighCpu", "host", "b"));
}

TEST_CASE("remote_write: repeated series in one request")
{
    rw_fixture f;
    prometheus::WriteRequest request;
    // Prometheus sends one sample per entry and repeats the series.
    add_series(request, cpu_a, {{91.0, t0}});
    add_series(request, cpu_a, {{92.0, t0 + 1000}});
    add_series(request, cpu_a, {{93.0, t0 + 2000}});

    ingest_outcome out = f.send(request);

    CHECK(out.http_status == 204);
    CHECK(out.accepted == 3);
    CHECK(f.counters.samples_accepted == 3);
    CHECK(f.eng.stats().series == 1);
    auto alert = f.find_alert("HighCpu", "host", "a");
    REQUIRE(alert);
    CHECK(alert->value == 93.0);
}

TEST_CASE("remote_write: metadata-only request accepted")
{
    rw_fixture f;
    prometheus::WriteRequest request;
    prometheus::MetricMetadata* metadata = request.add_metadata();
    metadata->set_type(2);
    metadata->set_metric_family_name("cpu");
    metadata->set_help("CPU use in percent");

    ingest_outcome out = f.send(request);

    CHECK(out.http_status == 204);
    CHECK(out.accepted == 0);
    CHECK(f.eng.stats().series == 0);
}

TEST_CASE("remote_write: empty request accepted")
{
    rw_fixture f;
    CHECK(f.send(compress("")).http_status == 204);
}

TEST_CASE("remote_write: unknown fields are skipped")
{
    rw_fixture f;

    std::string label_name;
    put_bytes(label_name, 1, "__name__");
    put_bytes(label_name, 2, "cpu");
    put_tag(label_name, 9, 0); // unknown varint inside a Label
    put_varint(label_name, 7);
    std::string label_host;
    put_bytes(label_host, 1, "host");
    put_bytes(label_host, 2, "a");

    std::string sample;
    put_fixed64(sample, 1, std::bit_cast<std::uint64_t>(97.5));
    put_tag(sample, 2, 0);
    put_varint(sample, static_cast<std::uint64_t>(t0));
    put_tag(sample, 5, 5); // unknown fixed32 inside a Sample
    sample += std::string(4, '\x01');

    std::string exemplar;
    put_bytes(exemplar, 1, label_host);
    put_fixed64(exemplar, 2, std::bit_cast<std::uint64_t>(1.0));
    std::string histogram;
    put_tag(histogram, 1, 0);
    put_varint(histogram, 5);
    put_fixed64(histogram, 3, std::bit_cast<std::uint64_t>(12.5));

    std::string series;
    put_bytes(series, 1, label_name);
    put_bytes(series, 3, exemplar);  // exemplars
    put_bytes(series, 1, label_host);
    put_bytes(series, 2, sample);
    put_bytes(series, 4, histogram); // native histograms
    put_tag(series, 12, 3);          // a deprecated group holding a varint
    put_tag(series, 1, 0);
    put_varint(series, 1);
    put_tag(series, 12, 4);
    put_fixed64(series, 13, 0);

    std::string request;
    put_tag(request, 7, 0); // unknown top-level field
    put_varint(request, 1);
    put_bytes(request, 1, series);
    std::string metadata;
    put_bytes(metadata, 2, "cpu");
    put_bytes(request, 3, metadata);

    ingest_outcome out = f.send(compress(request));

    CHECK(out.http_status == 204);
    CHECK(out.accepted == 1);
    auto alert = f.find_alert("HighCpu", "host", "a");
    REQUIRE(alert);
    CHECK(alert->value == 97.5);
}

TEST_CASE("remote_write: histogram-only series skipped")
{
    rw_fixture f;
    std::string series;
    std::string label;
    put_bytes(label, 1, "__name__");
    put_bytes(label, 2, "request_duration_seconds");
    put_bytes(series, 1, label);
    put_bytes(series, 4, std::string("\x08\x03", 2));
    std::string request;
    put_bytes(request, 1, series);

    ingest_outcome out = f.send(compress(request));

    CHECK(out.http_status == 204);
    CHECK(f.eng.stats().series == 0);
}

TEST_CASE("remote_write: stale marker counted")
{
    rw_fixture f;
    prometheus::WriteRequest first;
    add_series(first, cpu_a, {{95.0, t0}});
    REQUIRE(f.send(first).http_status == 204);

    prometheus::WriteRequest stale;
    add_series(stale, cpu_a, {{std::bit_cast<double>(std::uint64_t{0x7ff0000000000002}), t0 + 1000}});
    ingest_outcome out = f.send(stale);

    CHECK(out.http_status == 204);
    CHECK(f.counters.stale_markers == 1);
    CHECK(f.counters.samples_accepted == 1);
}

TEST_CASE("remote_write: ordinary NaN is a sample")
{
    rw_fixture f;
    prometheus::WriteRequest request;
    add_series(request, cpu_a, {{std::nan(""), t0}});

    CHECK(f.send(request).http_status == 204);
    CHECK(f.counters.stale_markers == 0);
    CHECK(f.counters.samples_accepted == 1);
}

TEST_CASE("remote_write: framed snappy gives 400")
{
    rw_fixture f;
    prometheus::WriteRequest request;
    add_series(request, cpu_a, {{95.0, t0}});
    std::string framed("\xff\x06\x00\x00sNaPpY", 10);
    framed += body_of(request);

    ingest_outcome out = f.send(framed);

    CHECK(out.http_status == 400);
    CHECK_THAT(out.body, Catch::Contains("framed"));
    CHECK_THAT(out.body, Catch::Contains("block format"));
    CHECK(f.eng.stats().series == 0);
    CHECK(f.rejected(reject_reason::malformed) == 1);
}

TEST_CASE("remote_write: gzip encoding gives 415")
{
    rw_fixture f;
    prometheus::WriteRequest request;
    add_series(request, cpu_a, {{95.0, t0}});

    ingest_outcome out = f.send(body_of(request), protobuf_type, "gzip");

    CHECK(out.http_status == 415);
    CHECK_THAT(out.body, Catch::Contains("\"gzip\""));
    CHECK_THAT(out.body, Catch::Contains("snappy"));
    CHECK(f.eng.stats().series == 0);
}

TEST_CASE("remote_write: missing encoding means snappy")
{
    rw_fixture f;
    prometheus::WriteRequest request;
    add_series(request, cpu_a, {{95.0, t0}});

    CHECK(f.send(body_of(request), protobuf_type, "").http_status == 204);
    CHECK(f.send(body_of(request), "", "SNAPPY").http_status == 204); // header values are case-insensitive
}

TEST_CASE("remote_write: version 2 type gives 415")
{
    rw_fixture f;
    prometheus::WriteRequest request;
    add_series(request, cpu_a, {{95.0, t0}});
    std::string body = body_of(request);

    ingest_outcome v2 = f.send(body, "application/x-protobuf;proto=io.prometheus.write.v2.Request");
    CHECK(v2.http_status == 415);
    CHECK_THAT(v2.body, Catch::Contains("io.prometheus.write.v2.Request"));
    CHECK_THAT(v2.body, Catch::Contains("prometheus.WriteRequest"));

    CHECK(f.send(body, "application/json").http_status == 415);
    CHECK(f.eng.stats().series == 0);

    ingest_outcome v1 = f.send(body, "application/x-protobuf; proto=prometheus.WriteRequest");
    CHECK(v1.http_status == 204);
}

TEST_CASE("remote_write: decoded size over limit")
{
    rw_fixture f;
    f.limits.max_decoded_bytes = 100;
    prometheus::WriteRequest request;
    add_series(request, {{"__name__", "cpu"}, {"host", std::string(200, 'x')}}, {{95.0, t0}});
    std::string raw = request.SerializeAsString();

    ingest_outcome out = f.send(compress(raw));

    CHECK(out.http_status == 400);
    CHECK_THAT(out.body, Catch::Contains(std::to_string(raw.size())));
    CHECK_THAT(out.body, Catch::Contains("limits.max_decoded_bytes (100)"));
    CHECK(f.eng.stats().series == 0);
}

TEST_CASE("remote_write: huge announced size rejected")
{
    rw_fixture f;
    // A snappy header announcing 4294967295 bytes followed by nothing: the limit check must
    // come before any buffer of that size is allocated or any data is read.
    std::string body;
    put_varint(body, 0xffffffffu);

    ingest_outcome out = f.send(body);

    CHECK(out.http_status == 400);
    CHECK_THAT(out.body, Catch::Contains("4294967295"));
    CHECK_THAT(out.body, Catch::Contains(std::to_string(f.limits.max_decoded_bytes)));
}

TEST_CASE("remote_write: corrupt snappy gives 400")
{
    rw_fixture f;
    ingest_outcome out = f.send(std::string("\x0a\xff\xff\xff\xff\xff", 6));
    CHECK(out.http_status == 400);
    CHECK_THAT(out.body, Catch::Contains("snappy"));
}

TEST_CASE("remote_write: truncated protobuf gives 400")
{
    rw_fixture f;
    prometheus::WriteRequest request;
    add_series(request, cpu_a, {{95.0, t0}});
    add_series(request, cpu_b, {{95.0, t0}});
    std::string raw = request.SerializeAsString();
    raw.resize(raw.size() - 3);

    ingest_outcome out = f.send(compress(raw));

    CHECK(out.http_status == 400);
    CHECK_THAT(out.body, Catch::StartsWith("malformed protobuf at byte "));
    // Nothing is ingested, not even the complete first series.
    CHECK(f.eng.stats().series == 0);
    CHECK(f.counters.samples_accepted == 0);
}

TEST_CASE("remote_write: invalid wire type gives 400")
{
    rw_fixture f;
    std::string raw;
    put_tag(raw, 1, 7);

    ingest_outcome out = f.send(compress(raw));

    CHECK(out.http_status == 400);
    CHECK_THAT(out.body, Catch::Contains("malformed protobuf at byte 0: invalid wire type 7"));
}

TEST_CASE("remote_write: too many samples rejected")
{
    rw_fixture f;
    f.limits.max_samples_per_request = 3;
    prometheus::WriteRequest request;
    add_series(request, cpu_a, {{95.0, t0}, {96.0, t0 + 1000}});
    add_series(request, cpu_b, {{95.0, t0}, {96.0, t0 + 1000}});

    ingest_outcome out = f.send(request);

    CHECK(out.http_status == 400);
    CHECK_THAT(out.body, Catch::Contains("4 samples"));
    CHECK_THAT(out.body, Catch::Contains("limits.max_samples_per_request (3)"));
    CHECK(f.eng.stats().series == 0);
    CHECK(f.rejected(reject_reason::too_many_samples) == 4);
}

namespace {

// Sends one bad series next to a good one and checks that only the bad one is rejected.
void check_rejected_next_to_valid(const label_list& bad, reject_reason reason,
                                  std::vector<std::string> expected_parts,
                                  ingest_limits limits = {})
{
    rw_fixture f;
    f.limits = limits;
    prometheus::WriteRequest request;
    add_series(request, bad, {{95.0, t0}});
    add_series(request, cpu_a, {{95.0, t0}});

    ingest_outcome out = f.send(request);

    CHECK(out.http_status == 400);
    CHECK(out.accepted == 1);
    CHECK(out.rejected == 1);
    CHECK(out.content_type.starts_with("text/plain"));
    for (const std::string& part : expected_parts) {
        CHECK_THAT(out.body, Catch::Contains(part));
    }
    CHECK(f.rejected(reason) == 1);
    CHECK(f.counters.samples_accepted == 1);
    CHECK(f.eng.stats().series == 1);
    CHECK(f.find_alert("HighCpu", "host", "a"));
}

} // namespace

TEST_CASE("remote_write: too many labels")
{
    ingest_limits limits;
    limits.max_labels_per_series = 3;
    check_rejected_next_to_valid(
        {{"__name__", "cpu"}, {"a", "1"}, {"b", "2"}, {"c", "3"}, {"d", "4"}},
        reject_reason::too_many_labels,
        {"has 5 labels", "limits.max_labels_per_series (3)",
         "raise limits.max_labels_per_series or drop labels", "__name__=\"cpu\""},
        limits);
}

TEST_CASE("remote_write: label name too long")
{
    ingest_limits limits;
    limits.max_label_name_bytes = 8;
    check_rejected_next_to_valid({{"__name__", "cpu"}, {"a_long_name", "1"}},
                                 reject_reason::label_name_too_long,
                                 {"\"a_long_name\"", "is 11 bytes", "limits.max_label_name_bytes (8)"},
                                 limits);
}

TEST_CASE("remote_write: label value too long")
{
    ingest_limits limits;
    limits.max_label_value_bytes = 16;
    check_rejected_next_to_valid({{"__name__", "cpu"}, {"host", std::string(40, 'v')}},
                                 reject_reason::label_value_too_long,
                                 {"value of label \"host\"", "is 40 bytes", "limits.max_label_value_bytes (16)"},
                                 limits);
}

TEST_CASE("remote_write: invalid UTF-8 value")
{
    check_rejected_next_to_valid({{"__name__", "cpu"}, {"zone", std::string("\xc3\x28", 2)}},
                                 reject_reason::invalid_utf8,
                                 {"value of label \"zone\"", "not valid UTF-8", "0xC3", "\\xC3("});
}

TEST_CASE("remote_write: invalid UTF-8 name")
{
    check_rejected_next_to_valid({{"__name__", "cpu"}, {std::string("z\xff", 2), "x"}},
                                 reject_reason::invalid_utf8,
                                 {"label name \"z\\xFF\"", "not valid UTF-8", "0xFF at offset 1"});
}

TEST_CASE("remote_write: blank label name")
{
    check_rejected_next_to_valid({{" ", "x"}, {"__name__", "cpu"}}, reject_reason::invalid_label_name,
                                 {"label name \" \"", "empty or only white space"});
    check_rejected_next_to_valid({{"\xc2\xa0\xe3\x80\x80", "x"}, {"__name__", "cpu"}},
                                 reject_reason::invalid_label_name, {"empty or only white space"});
    check_rejected_next_to_valid({{"", "x"}, {"__name__", "cpu"}}, reject_reason::invalid_label_name,
                                 {"label name \"\""});
}

TEST_CASE("remote_write: control character in label name")
{
    check_rejected_next_to_valid({{"__name__", "cpu"}, {std::string("a\0b", 3), "x"}},
                                 reject_reason::invalid_label_name,
                                 {"control character 0x00", "printable characters"});
    check_rejected_next_to_valid({{"__name__", "cpu"}, {"line\nbreak", "x"}}, reject_reason::invalid_label_name,
                                 {"control character 0x0A"});
}

TEST_CASE("remote_write: all samples rejected says so")
{
    rw_fixture f;
    prometheus::WriteRequest request;
    add_series(request, {{"__name__", "cpu"}, {" ", "x"}}, {{95.0, t0}});
    ingest_outcome out = f.send(request);
    CHECK(out.http_status == 400);
    CHECK_THAT(out.body, Catch::StartsWith("rejected all 1 samples"));
    CHECK_THAT(out.body, !Catch::Contains("were ingested"));
}

TEST_CASE("remote_write: duplicate label name")
{
    check_rejected_next_to_valid({{"__name__", "cpu"}, {"host", "a"}, {"host", "b"}},
                                 reject_reason::duplicate_label_name,
                                 {"label name \"host\" appears more than once"});
}

TEST_CASE("remote_write: unsorted labels")
{
    check_rejected_next_to_valid({{"host", "a"}, {"__name__", "cpu"}}, reject_reason::unsorted_labels,
                                 {"label \"__name__\" comes after \"host\"", "sorted by name"});
}

TEST_CASE("remote_write: missing metric name")
{
    check_rejected_next_to_valid({{"host", "a"}, {"job", "node"}}, reject_reason::missing_metric_name,
                                 {"{host=\"a\", job=\"node\"} has no __name__ label"});
}

TEST_CASE("remote_write: UTF-8 dotted names accepted")
{
    rw_fixture f;
    prometheus::WriteRequest request;
    add_series(request,
               {{"__name__", "latency_seconds"}, {"host.name", "web-01"}, {"k8s.namespace", "prod"},
                {"service.name", "checkout"}, {"zone", "Zürich"}},
               {{2.5, t0}});
    add_series(request,
               {{"__name__", "latency_seconds"}, {"host.name", "web-02"}, {"k8s.namespace", "prod"},
                {"service.name", "checkout"}, {"zone", "東京"}},
               {{3.5, t0}});

    ingest_outcome out = f.send(request);

    CHECK(out.http_status == 204);
    CHECK(out.accepted == 2);
    auto zurich = f.find_alert("CheckoutLatency", "host.name", "web-01");
    REQUIRE(zurich);
    CHECK(zurich->labels.get("zone") == "Zürich");
    CHECK(zurich->labels.get("service.name") == "checkout");
    auto tokyo = f.find_alert("CheckoutLatency", "host.name", "web-02");
    REQUIRE(tokyo);
    CHECK(tokyo->labels.get("zone") == "東京");
}

TEST_CASE("remote_write: empty value means absent")
{
    rw_fixture f;
    prometheus::WriteRequest request;
    add_series(request, {{"__name__", "cpu"}, {"host", "a"}, {"zone", ""}}, {{95.0, t0}});
    add_series(request, cpu_a, {{96.0, t0 + 1000}});

    ingest_outcome out = f.send(request);

    CHECK(out.http_status == 204);
    CHECK(f.eng.stats().series == 1);
    auto alert = f.find_alert("HighCpu", "host", "a");
    REQUIRE(alert);
    CHECK(alert->value == 96.0);
}

TEST_CASE("remote_write: series limit keeps existing series")
{
    engine_limits engine_config;
    engine_config.max_series = 1;
    rw_fixture f(engine_config);
    prometheus::WriteRequest first;
    add_series(first, cpu_a, {{50.0, t0}});
    REQUIRE(f.send(first).http_status == 204);

    prometheus::WriteRequest second;
    add_series(second, cpu_b, {{95.0, t0 + 1000}});
    add_series(second, cpu_a, {{95.0, t0 + 1000}});
    ingest_outcome out = f.send(second);

    CHECK(out.http_status == 400);
    CHECK(out.accepted == 1);
    CHECK_THAT(out.body, Catch::Contains("host=\"b\""));
    CHECK_THAT(out.body, Catch::Contains("limits.max_series"));
    CHECK(f.rejected(reject_reason::series_limit) == 1);
    CHECK(f.eng.stats().series == 1);
    auto alert = f.find_alert("HighCpu", "host", "a");
    REQUIRE(alert);
    CHECK(alert->value == 95.0);
}

TEST_CASE("remote_write: out-of-order sample reported")
{
    rw_fixture f;
    prometheus::WriteRequest first;
    add_series(first, cpu_a, {{50.0, t0 + 5000}});
    REQUIRE(f.send(first).http_status == 204);

    prometheus::WriteRequest older;
    add_series(older, cpu_a, {{95.0, t0}});
    ingest_outcome out = f.send(older);

    CHECK(out.http_status == 400);
    CHECK_THAT(out.body, Catch::Contains("older than the series' last sample"));
    CHECK_THAT(out.body, Catch::Contains(std::to_string(t0)));
    CHECK(f.rejected(reject_reason::out_of_order) == 1);
    CHECK_FALSE(f.find_alert("HighCpu", "host", "a"));
}

TEST_CASE("remote_write: resent duplicate is no error")
{
    rw_fixture f;
    prometheus::WriteRequest request;
    add_series(request, cpu_a, {{95.0, t0}});
    REQUIRE(f.send(request).http_status == 204);

    ingest_outcome retry = f.send(request);

    CHECK(retry.http_status == 204);
    CHECK(f.rejected(reject_reason::duplicate_sample) == 1);
    CHECK(f.counters.samples_accepted == 1);
}

TEST_CASE("remote_write: negative timestamps decode")
{
    rw_fixture f;
    prometheus::WriteRequest request;
    add_series(request, cpu_a, {{1.0, -5000}, {2.0, -1000}});

    ingest_outcome out = f.send(request);

    CHECK(out.http_status == 204);
    CHECK(out.accepted == 2);
}

TEST_CASE("remote_write: problem list is capped")
{
    rw_fixture f;
    prometheus::WriteRequest request;
    for (int i = 0; i < 15; ++i) {
        add_series(request, {{"host", "h" + std::to_string(i)}}, {{1.0, t0}});
    }
    add_series(request, cpu_a, {{95.0, t0}});

    ingest_outcome out = f.send(request);

    CHECK(out.http_status == 400);
    CHECK(out.rejected == 15);
    CHECK(out.accepted == 1);
    CHECK_THAT(out.body, Catch::StartsWith("rejected 15 of 16 samples"));
    CHECK_THAT(out.body, Catch::Contains("h9"));
    CHECK_THAT(out.body, !Catch::Contains("h10"));
    CHECK_THAT(out.body, Catch::Contains("and 5 more"));
}

TEST_CASE("remote_write: series text cut on UTF-8")
{
    rw_fixture f;
    std::string value;
    for (int i = 0; i < 200; ++i) {
        value += "é";
    }
    prometheus::WriteRequest request;
    add_series(request, {{"host", value}}, {{1.0, t0}});

    ingest_outcome out = f.send(request);

    REQUIRE(out.http_status == 400);
    CHECK(is_valid_utf8(out.body));
    CHECK_THAT(out.body, Catch::Contains("..."));
    CHECK(out.body.size() < 600);
}

TEST_CASE("remote_write: damaged bodies never crash")
{
    prometheus::WriteRequest request;
    add_series(request, cpu_a, {{95.0, t0}, {96.0, t0 + 1000}});
    add_series(request, {{"__name__", "latency_seconds"}, {"service.name", "checkout"}, {"zone", "Zürich"}},
               {{2.0, t0}});
    request.add_metadata()->set_metric_family_name("cpu");
    const std::string raw = request.SerializeAsString();
    const std::string compressed = compress(raw);

    rw_fixture f;
    std::mt19937 random(20241130);
    auto accepted_status = [](int status) { return status == 204 || status == 400; };

    for (std::size_t length = 0; length < raw.size(); ++length) {
        ingest_outcome out = f.send(compress(raw.substr(0, length)));
        INFO("protobuf prefix of " << length << " bytes");
        CHECK(accepted_status(out.http_status));
    }
    for (std::size_t length = 0; length < compressed.size(); ++length) {
        ingest_outcome out = f.send(compressed.substr(0, length));
        INFO("snappy prefix of " << length << " bytes");
        CHECK(out.http_status == 400);
    }
    for (int round = 0; round < 3000; ++round) {
        bool flip_compressed = round % 2 == 0;
        std::string mutated = flip_compressed ? compressed : raw;
        int flips = 1 + static_cast<int>(random() % 4);
        for (int i = 0; i < flips; ++i) {
            std::size_t at = random() % mutated.size();
            mutated[at] = static_cast<char>(mutated[at] ^ (1u << (random() % 8)));
        }
        ingest_outcome out = f.send(flip_compressed ? mutated : compress(mutated));
        INFO("round " << round);
        CHECK(accepted_status(out.http_status));
    }
}

namespace {

engine_limits daemon_time_limits()
{
    engine_limits limits;
    limits.max_future_skew = std::chrono::minutes(10);
    limits.max_sample_age = std::chrono::hours(24);
    return limits;
}

} // namespace

TEST_CASE("remote_write: timestamp far in the future reported")
{
    rw_fixture f(daemon_time_limits());
    const time_ms year_ahead = t0 + 365LL * 24 * 3'600'000;
    prometheus::WriteRequest future;
    add_series(future, cpu_a, {{95.0, year_ahead}});
    ingest_outcome out = f.send(future);

    CHECK(out.http_status == 400);
    CHECK(out.accepted == 0);
    CHECK_THAT(out.body, Catch::Contains("host=\"a\""));
    CHECK_THAT(out.body, Catch::Contains("sample timestamp " + format_rfc3339_ms(year_ahead)));
    CHECK_THAT(out.body, Catch::Contains("1y ahead of the server time " + format_rfc3339_ms(t0)));
    CHECK_THAT(out.body, Catch::Contains("limits.max_future_skew (10m)"));
    CHECK_THAT(out.body, Catch::Contains("send timestamps in milliseconds since the Unix epoch"));
    CHECK_THAT(out.body, Catch::Contains("check the sender's clock"));
    CHECK(f.rejected(reject_reason::too_far_in_future) == 1);
    CHECK(std::string(to_string(reject_reason::too_far_in_future)) == "too_far_in_future");

    // The rejected sample left no trace, so the real one is not out of order.
    prometheus::WriteRequest real;
    add_series(real, cpu_a, {{95.0, t0}});
    CHECK(f.send(real).http_status == 204);
    CHECK(f.find_alert("HighCpu", "host", "a"));
}

TEST_CASE("remote_write: timestamp in seconds reported as too old")
{
    rw_fixture f(daemon_time_limits());
    const time_ms seconds = t0 / 1000;
    prometheus::WriteRequest request;
    add_series(request, cpu_a, {{95.0, seconds}});
    add_series(request, cpu_b, {{95.0, t0}});
    ingest_outcome out = f.send(request);

    CHECK(out.http_status == 400);
    CHECK(out.accepted == 1);
    CHECK_THAT(out.body, Catch::Contains("sample timestamp " + format_rfc3339_ms(seconds)));
    CHECK_THAT(out.body, Catch::Contains("1970-01-21T"));
    CHECK_THAT(out.body, Catch::Contains("older than the server time " + format_rfc3339_ms(t0)));
    CHECK_THAT(out.body, Catch::Contains("limits.max_sample_age (1d)"));
    CHECK_THAT(out.body, Catch::Contains("send timestamps in milliseconds since the Unix epoch"));
    CHECK(f.rejected(reject_reason::too_old) == 1);
    CHECK(std::string(to_string(reject_reason::too_old)) == "too_old");
    CHECK_FALSE(f.find_alert("HighCpu", "host", "a"));
    CHECK(f.find_alert("HighCpu", "host", "b"));
}
