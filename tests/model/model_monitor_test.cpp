#include "model/model_monitor.hpp"

#include <catch2/catch.hpp>

#include <memory>
#include <stdexcept>
#include <vector>

#include "model/model_test_data.hpp"

using namespace tocsin::model;
using namespace tocsin::model::testing;

namespace {

model_monitor make_monitor()
{
    std::vector<feature_spec> features = {
        {"age", feature_type::numeric, 0.0, 120.0},
        {"country", feature_type::categorical, {}, {}},
        {"vip", feature_type::boolean, {}, {}},
    };
    std::vector<std::shared_ptr<const reference>> references = {
        std::make_shared<const reference>(build_numeric_reference(reference_values)),
        std::make_shared<const reference>(build_categorical_reference(category_reference_values)),
        nullptr,
    };
    window_options options;
    options.duration_ms = 60'000;
    options.bucket_count = 6;
    return model_monitor("churn", "v3", std::move(features), std::move(references), options);
}

} // namespace

TEST_CASE("model monitor routes features by name")
{
    model_monitor monitor = make_monitor();
    CHECK(monitor.feature_count() == 3);
    CHECK(monitor.find_feature("country") == 1);
    CHECK_FALSE(monitor.find_feature("zip").has_value());

    // In schema order.
    const named_feature_value in_order[] = {
        {"age", feature_value::number(40)},
        {"country", feature_value::text("a")},
        {"vip", feature_value::boolean(true)},
    };
    CHECK(monitor.add_record(1000, in_order));

    // Out of order, with an unknown name, a repeated name and "vip" absent.
    const named_feature_value shuffled[] = {
        {"country", feature_value::text("zz")},
        {"zip", feature_value::text("12345")},
        {"age", feature_value::number(130)},
        {"age", feature_value::number(20)},
    };
    CHECK(monitor.add_record(2000, shuffled));

    CHECK(monitor.records() == 2);
    CHECK(monitor.unknown_feature_values() == 1);
    CHECK(monitor.repeated_feature_values() == 1);

    const quality_summary age = monitor.feature(0).quality();
    CHECK(age.values == 2);
    CHECK(age.valid == 2);
    CHECK(age.out_of_range == 1);  // 130, the first of the repeated values

    const quality_summary country = monitor.feature(1).quality();
    CHECK(country.values == 2);
    CHECK(country.unseen == 1);

    const quality_summary vip = monitor.feature(2).quality();
    CHECK(vip.values == 2);
    CHECK(vip.missing == 1);
    CHECK(vip.missing_rate == 0.5);
    CHECK_FALSE(vip.unseen_rate.has_value());
}

TEST_CASE("model monitor rejects late records")
{
    model_monitor monitor = make_monitor();
    const named_feature_value record[] = {{"age", feature_value::number(40)}};
    CHECK(monitor.add_record(100'000, record));
    CHECK_FALSE(monitor.add_record(49'999, record));
    CHECK(monitor.late_records() == 1);
    CHECK(monitor.add_record(50'000, record));
    CHECK(monitor.feature(0).quality().values == 2);
    CHECK(monitor.feature(1).quality().missing == 2);

    monitor.advance_to(200'000);
    CHECK(monitor.feature(0).quality().values == 0);
}

TEST_CASE("model monitor rejects bad schemas")
{
    std::vector<feature_spec> twice = {{"a", feature_type::numeric, {}, {}}, {"a", feature_type::numeric, {}, {}}};
    CHECK_THROWS_WITH(model_monitor("m", "v", twice, {}), Catch::Contains("\"a\" is declared twice"));
    std::vector<feature_spec> unnamed = {{"", feature_type::numeric, {}, {}}};
    CHECK_THROWS_AS(model_monitor("m", "v", unnamed, {}), std::invalid_argument);
    std::vector<feature_spec> one = {{"a", feature_type::numeric, {}, {}}};
    CHECK_THROWS_WITH(model_monitor("m", "v", one, {nullptr, nullptr}), Catch::Contains("2 references for 1 features"));
}

TEST_CASE("model monitor memory is fixed")
{
    model_monitor monitor = make_monitor();
    const std::size_t before = monitor.memory_bytes();
    CHECK(before > 0);
    const named_feature_value record[] = {{"age", feature_value::number(40)}, {"country", feature_value::text("b")}};
    for (int i = 0; i < 10'000; ++i) {
        monitor.add_record(i * 10, record);
    }
    CHECK(monitor.memory_bytes() == before);
}
