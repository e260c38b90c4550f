#pragma once
// Helpers shared by the unit tests.

#include <filesystem>
#include <string>
#include <string_view>

namespace tocsin::test {

// A fresh folder under the system temporary folder, removed when the object goes away.
class temp_dir {
public:
    temp_dir();
    ~temp_dir();
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;

    const std::filesystem::path& path() const { return path_; }
    // Writes `content` to `name` inside the folder and returns the full path.
    std::string write(std::string_view name, std::string_view content) const;

private:
    std::filesystem::path path_;
};

} // namespace tocsin::test
