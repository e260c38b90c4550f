#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "routing/config.hpp"

using namespace tocsin;

namespace {

label_matcher matcher(std::string_view text)
{
    std::string error;
    auto m = label_matcher::parse(text, error);
    INFO(text << " -> " << error);
    REQUIRE(m.has_value());
    return *m;
}

route_config route(std::string key, std::string receiver, std::vector<std::string> matchers, bool continue_matching = false)
{
    route_config r;
    r.key = std::move(key);
    r.receiver = std::move(receiver);
    for (const auto& text : matchers) {
        r.matchers.push_back(matcher(text));
    }
    r.continue_matching = continue_matching;
    return r;
}

std::vector<std::string> receivers_of(const std::vector<const route_config*>& routes)
{
    std::vector<std::string> out;
    for (const auto* r : routes) {
        out.push_back(r->receiver);
    }
    return out;
}

// The tree, with receivers as names:
//   default
//     db         team="db"
//       db-page  severity="page"
//     web        team="web", continue
//     web-all    team=~"web|api"
//     never      team=~"web|api" (shadowed by web-all)
route_config sample_tree()
{
    route_config root = route("{}", "default", {});
    route_config db = route(R"({}/{team="db"})", "db", {R"(team="db")"});
    db.routes.push_back(route(R"({}/{team="db"}/{severity="page"})", "db-page", {R"(severity="page")"}));
    root.routes.push_back(std::move(db));
    root.routes.push_back(route(R"({}/{team="web"})", "web", {R"(team="web")"}, true));
    root.routes.push_back(route(R"({}/{team=~"web|api"})", "web-all", {R"(team=~"web|api")"}));
    root.routes.push_back(route(R"({}/{team=~"web|api"}#3)", "never", {R"(team=~"web|api")"}));
    return root;
}

} // namespace

TEST_CASE("match_routes sends unmatched alerts to the root")
{
    const auto root = sample_tree();
    CHECK(receivers_of(match_routes(root, label_set{{"team", "ml"}})) == std::vector<std::string>{"default"});
    CHECK(receivers_of(match_routes(root, label_set{})) == std::vector<std::string>{"default"});
}

TEST_CASE("match_routes takes the deepest matching child")
{
    const auto root = sample_tree();
    CHECK(receivers_of(match_routes(root, label_set{{"team", "db"}, {"severity", "page"}})) ==
          std::vector<std::string>{"db-page"});
}

TEST_CASE("match_routes stays on a parent when no child matches")
{
    const auto root = sample_tree();
    CHECK(receivers_of(match_routes(root, label_set{{"team", "db"}, {"severity", "warning"}})) ==
          std::vector<std::string>{"db"});
}

TEST_CASE("match_routes stops at the first match without continue")
{
    const auto root = sample_tree();
    CHECK(receivers_of(match_routes(root, label_set{{"team", "api"}})) == std::vector<std::string>{"web-all"});
}

TEST_CASE("match_routes goes on after a continue route")
{
    const auto root = sample_tree();
    const auto routes = match_routes(root, label_set{{"team", "web"}});
    CHECK(receivers_of(routes) == std::vector<std::string>{"web", "web-all"});
    REQUIRE(routes.size() == 2);
    CHECK(routes[0]->key == R"({}/{team="web"})");
}

TEST_CASE("match_routes continue flag of a non-matching child is ignored")
{
    route_config root = route("{}", "default", {});
    root.routes.push_back(route("{}/a", "a", {R"(x="1")"}, true));
    root.routes.push_back(route("{}/b", "b", {R"(y="1")"}));
    root.routes.push_back(route("{}/c", "c", {R"(y=~".+")"}));
    CHECK(receivers_of(match_routes(root, label_set{{"y", "1"}})) == std::vector<std::string>{"b"});
}

TEST_CASE("match_routes continue on a nested route")
{
    route_config root = route("{}", "default", {});
    route_config team = route("{}/team", "team", {R"(team="db")"});
    team.routes.push_back(route("{}/team/a", "team-a", {R"(env="prod")"}, true));
    team.routes.push_back(route("{}/team/b", "team-b", {}));
    root.routes.push_back(std::move(team));
    root.routes.push_back(route("{}/other", "other", {}));
    CHECK(receivers_of(match_routes(root, label_set{{"team", "db"}, {"env", "prod"}})) ==
          std::vector<std::string>{"team-a", "team-b"});
    CHECK(receivers_of(match_routes(root, label_set{{"team", "db"}})) == std::vector<std::string>{"team-b"});
}

TEST_CASE("match_routes returns nothing when the root does not match")
{
    route_config root = route("{}", "default", {R"(env="prod")"});
    CHECK(match_routes(root, label_set{{"env", "dev"}}).empty());
    CHECK(receivers_of(match_routes(root, label_set{{"env", "prod"}})) == std::vector<std::string>{"default"});
}

TEST_CASE("match_routes treats an absent label as empty")
{
    route_config root = route("{}", "default", {});
    root.routes.push_back(route("{}/no-team", "no-team", {R"(team="")"}));
    CHECK(receivers_of(match_routes(root, label_set{{"alertname", "X"}})) == std::vector<std::string>{"no-team"});
    CHECK(receivers_of(match_routes(root, label_set{{"team", "db"}})) == std::vector<std::string>{"default"});
}
