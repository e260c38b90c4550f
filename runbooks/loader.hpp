#pragma once
// Loads runbook files (YAML) into the model of runbooks/model.hpp. Every problem is reported
// as `file:line:column: what is wrong; what was expected`. As for rule files, all problems of
// a file are collected in one pass. The format is in docs/RUNBOOKS.md.

#include <string>
#include <string_view>
#include <vector>

#include "rules/diagnostics.hpp"
#include "runbooks/model.hpp"

namespace tocsin::runbooks {

// Reads and loads one runbook file. Returns the runbooks that loaded without error; callers
// must treat the file as invalid when `diags` received any entry.
std::vector<runbook> load_runbook_file(const std::string& path, diagnostics& diags);

// Loads runbook text; `file_name` is used in the diagnostics and in runbook::file.
std::vector<runbook> load_runbook_text(std::string_view text, const std::string& file_name, diagnostics& diags);

// Checks the programs of exec and rollback steps against the allowlist of the executor
// (realpath of each side, so a symlink cannot smuggle another program in). Reports each
// program that is not allowed. The executor checks again before every start.
void check_programs(const std::vector<runbook>& books, const std::vector<std::string>& allowed_programs,
                    diagnostics& diags);

} // namespace tocsin::runbooks
