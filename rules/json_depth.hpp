#pragma once
// A scan of JSON text before it is parsed: how deeply its arrays and objects nest.

#include <string_view>

namespace tocsin {

// Returns the deepest nesting of arrays and objects in a JSON text, skipping strings, so a
// handler can reject a hostile body before a parser or a printer recurses into it. The text
// need not be valid JSON: unbalanced brackets give the depth reached.
int json_nesting_depth(std::string_view text);

} // namespace tocsin
