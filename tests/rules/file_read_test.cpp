// Reading configuration files that are not what they seem.

#include <catch2/catch.hpp>

#include <sys/stat.h>

#include "rules/file_read.hpp"
#include "rules/rule_loader.hpp"
#include "support/test_support.hpp"

using namespace tocsin;

TEST_CASE("file read returns a regular file's content")
{
    test::temp_dir dir;
    auto path = dir.write("a.yaml", "groups: []\n");
    std::string content;
    std::string error;
    REQUIRE(read_regular_file(path, 1024, content, error));
    CHECK(content == "groups: []\n");
}

TEST_CASE("file read rejects a FIFO without waiting for a writer")
{
    test::temp_dir dir;
    auto path = (dir.path() / "fifo.yaml").string();
    REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
    std::string content;
    std::string error;
    CHECK_FALSE(read_regular_file(path, 1024, content, error));
    CHECK_THAT(error, Catch::Contains("FIFO"));

    diagnostics diags;
    auto groups = load_rule_file(path, diags);
    CHECK(groups.empty());
    REQUIRE(diags.size() == 1);
    CHECK_THAT(diags.items()[0].to_string(), Catch::Contains("fifo.yaml") && Catch::Contains("not a regular file"));
}

TEST_CASE("file read rejects a device")
{
    std::string content;
    std::string error;
    CHECK_FALSE(read_regular_file("/dev/zero", 1024, content, error));
    CHECK_THAT(error, Catch::Contains("character device"));
    CHECK(content.empty());
}

TEST_CASE("file read rejects a folder")
{
    test::temp_dir dir;
    std::string content;
    std::string error;
    CHECK_FALSE(read_regular_file(dir.path().string(), 1024, content, error));
    CHECK_THAT(error, Catch::Contains("folder"));
}

TEST_CASE("file read rejects a file over the size limit")
{
    test::temp_dir dir;
    auto path = dir.write("big.yaml", std::string(2048, '#'));
    std::string content;
    std::string error;
    CHECK_FALSE(read_regular_file(path, 1024, content, error));
    CHECK_THAT(error, Catch::Contains("2048 bytes") && Catch::Contains("1024"));
}

TEST_CASE("file read reports a missing file")
{
    std::string content;
    std::string error;
    CHECK_FALSE(read_regular_file("/nonexistent/tocsin.yaml", 1024, content, error));
    CHECK_THAT(error, Catch::Contains("No such file"));
}
