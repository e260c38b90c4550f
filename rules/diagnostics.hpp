#pragma once
// Configuration errors with their position, reported all at once.

#include <string>
#include <vector>

namespace tocsin {

// One problem in a configuration or rule file. Lines and columns are 1-based; 0 means the
// position is unknown (for example a file that could not be opened).
struct diagnostic {
    std::string file;
    int line = 0;
    int column = 0;
    std::string message; // "what is wrong; what was expected"

    // file:line:column: message
    std::string to_string() const;
};

class diagnostics {
public:
    void add(std::string file, int line, int column, std::string message);
    void add(diagnostic d) { items_.push_back(std::move(d)); }
    void append(const diagnostics& other);

    bool empty() const { return items_.empty(); }
    std::size_t size() const { return items_.size(); }
    const std::vector<diagnostic>& items() const { return items_; }

    // One diagnostic per line.
    std::string to_string() const;

private:
    std::vector<diagnostic> items_;
};

} // namespace tocsin
