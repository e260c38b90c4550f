#pragma once
// Internals of the Go text/template engine: the syntax tree the parser builds, the limits that
// keep hostile templates bounded, and the evaluator's entry points. Only go_template*.cpp and
// default_templates.cpp include this header.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace tocsin::gotmpl::detail {

// Limits. A template that exceeds one fails with an error that names the limit.
inline constexpr int max_nesting_depth = 100;            // control structures and parentheses
inline constexpr int max_call_depth = 100;               // nested {{ template }} calls at run time
inline constexpr std::size_t max_output_bytes = 4u << 20; // rendered text, and any one string value
inline constexpr std::uint64_t max_range_iterations = 1'000'000; // all range loops of one render
inline constexpr std::uint64_t max_steps = 2'000'000;     // executed nodes and commands of one render; about a second

struct position {
    int line = 0;
    int column = 0;
};

std::string to_string(position pos);

struct pipeline;

enum class operand_kind {
    dot,      // .
    field,    // .A.B (the chain is in `fields`)
    variable, // $x or $x.A.B
    function, // a function name
    string,
    integer,
    floating,
    boolean,
    nil,
    pipeline, // ( ... ), optionally followed by .A.B
};

struct operand {
    operand_kind kind = operand_kind::nil;
    position pos;
    std::string text; // variable name with its '$', function name, or string value
    std::vector<std::string> fields;
    std::int64_t integer = 0;
    double floating = 0;
    bool boolean = false;
    std::shared_ptr<const pipeline> sub;
};

struct command {
    position pos;
    std::vector<operand> args;
};

struct pipeline {
    position pos;
    std::vector<std::string> declarations; // variable names with their '$'
    bool is_assignment = false;            // `$x = ...` rather than `$x := ...`
    std::vector<command> commands;
};

enum class node_kind { text, action, if_, range, with, template_call, break_, continue_ };

struct node;
using node_list = std::vector<node>;

struct node {
    node_kind kind = node_kind::text;
    position pos;
    std::string text;                        // text, or the called template's name
    std::shared_ptr<const pipeline> pipe;    // may be null for template_call
    node_list list;
    node_list else_list;
};

// One named or inline template. `file` is the template file it came from, empty for the
// built-in defaults and for inline templates.
struct tree {
    std::string name;
    std::string file;
    node_list root;
};

using tree_map = std::map<std::string, std::shared_ptr<const tree>, std::less<>>;

struct parse_result {
    std::shared_ptr<tree> root;
    tree_map defines; // {{ define }} and {{ block }} of the source, in source order of replacement
};

struct parse_error {
    position pos;
    std::string message;
};

// Parses `source`. Returns false and sets `error` on the first syntax error. `name` names the
// top-level tree and `file` is recorded in each tree for messages.
bool parse(std::string_view source, const std::string& name, const std::string& file,
           parse_result& out, parse_error& error);

// True when `name` is a function templates may call.
bool is_function(std::string_view name);

// Checks the number of arguments of a call of function `name` (including a piped-in value).
// Returns an empty string when it is acceptable, otherwise the message.
std::string check_arity(std::string_view name, std::size_t count);

// Runs `root` against `data`. `locals` are the defines of an inline template, looked up before
// the set's named templates. Returns false with `error` set on a runtime failure.
bool execute(const tree& root, const tree_map& locals, const tree_map& named, const nlohmann::json& data,
             std::string& out, std::string& error);

// Appends code point `cp` as UTF-8; surrogates and values past U+10FFFF become U+FFFD.
void append_utf8(std::string& out, std::uint32_t cp);

// Length of the UTF-8 sequence that starts with byte `lead`, or 0 when `lead` cannot start one.
std::size_t utf8_sequence_length(unsigned char lead);

// Source text of the built-in templates (default_templates.cpp).
std::string_view default_templates_source();

} // namespace tocsin::gotmpl::detail
