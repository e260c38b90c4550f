#pragma once
// Lexing helpers for the PromQL subset that rule expressions and matchers use. Shared by
// label_matcher::parse and the rule expression parser so that both accept the same strings.
//
// Every function reads from `text` at `pos`. On success it advances `pos` past what it read.
// On failure it sets `error` and leaves `pos` at the offending byte, so callers can report a
// column.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "rules/matcher.hpp"

namespace tocsin::promql {

void skip_spaces(std::string_view text, std::size_t& pos);

// True for the bytes that may start or continue a legacy identifier ([a-zA-Z_][a-zA-Z0-9_]*).
bool is_identifier_start(char c);
bool is_identifier_char(char c);

// Reads [a-zA-Z_][a-zA-Z0-9_:]* when `allow_colon`, else [a-zA-Z_][a-zA-Z0-9_]*.
bool read_identifier(std::string_view text, std::size_t& pos, std::string& out, bool allow_colon);

// Reads a string literal in double quotes, single quotes or backticks. Double- and
// single-quoted strings take Go escapes (\n, \t, \\, \", \', \xHH, \uHHHH, \UHHHHHHHH,
// octal \NNN); backtick strings are raw. The result must be valid UTF-8.
bool read_string(std::string_view text, std::size_t& pos, std::string& out, std::string& error);

// Reads one matcher: NAME OP VALUE, where NAME is a legacy identifier or a string literal and
// VALUE is a string literal. With `allow_unquoted_value`, a bare word is accepted as the value
// of = and != (severity=critical).
std::optional<label_matcher> read_matcher(std::string_view text, std::size_t& pos,
                                          bool allow_unquoted_value, std::string& error);

// Quotes `value` as a PromQL double-quoted string literal.
std::string quote(std::string_view value);

// Returns `name` as is when it is a legacy label name, else quoted.
std::string format_label_name(std::string_view name);

} // namespace tocsin::promql
