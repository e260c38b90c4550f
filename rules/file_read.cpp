#include "rules/file_read.hpp"

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

namespace tocsin {

namespace {

const char* describe_file_type(mode_t mode)
{
    if (S_ISDIR(mode)) {
        return "a folder";
    }
    if (S_ISFIFO(mode)) {
        return "a FIFO";
    }
    if (S_ISCHR(mode)) {
        return "a character device";
    }
    if (S_ISBLK(mode)) {
        return "a block device";
    }
    if (S_ISSOCK(mode)) {
        return "a socket";
    }
    return "not a regular file";
}

// Closes the descriptor on every return path.
struct fd_guard {
    int fd;
    ~fd_guard()
    {
        if (fd >= 0) {
            ::close(fd);
        }
    }
};

} // namespace

bool read_regular_file(const std::string& path, std::size_t max_bytes, std::string& content, std::string& error)
{
    // O_NONBLOCK keeps open() from waiting for a writer when the path is a FIFO.
    fd_guard file{::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC)};
    if (file.fd < 0) {
        error = std::strerror(errno);
        return false;
    }
    struct stat info{};
    if (::fstat(file.fd, &info) != 0) {
        error = std::strerror(errno);
        return false;
    }
    if (!S_ISREG(info.st_mode)) {
        error = fmt::format("is {}, not a regular file", describe_file_type(info.st_mode));
        return false;
    }
    if (static_cast<std::size_t>(info.st_size) > max_bytes) {
        error = fmt::format("is {} bytes, more than the {} bytes a configuration file may have", info.st_size,
                            max_bytes);
        return false;
    }

    content.clear();
    content.reserve(static_cast<std::size_t>(info.st_size));
    char buffer[65536];
    for (;;) {
        ssize_t n = ::read(file.fd, buffer, sizeof buffer);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            error = std::strerror(errno);
            return false;
        }
        if (n == 0) {
            break;
        }
        content.append(buffer, static_cast<std::size_t>(n));
        // The file may grow while it is read.
        if (content.size() > max_bytes) {
            error = fmt::format("grew past the {} bytes a configuration file may have while being read", max_bytes);
            return false;
        }
    }
    return true;
}

} // namespace tocsin
