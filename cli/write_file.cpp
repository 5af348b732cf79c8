#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "cli/command.hpp"
#include "topology/error.hpp"

namespace paratwin::cli {

void write_file_atomically(const std::string& path, const std::string& text) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  if (path.empty()) fail("output path is empty: name a file to write");
  std::error_code ec;
  if (fs::is_directory(target, ec)) fail("cannot write '{}': it is a directory", path);
  const fs::path temp = target.string() + ".paratwin-tmp";
  {
    std::ofstream file(temp, std::ios::binary | std::ios::trunc);
    if (!file) fail("cannot write '{}': the folder does not exist or is not writable", path);
    file << text;
    file.flush();
    if (!file) {
      file.close();
      fs::remove(temp, ec);
      fail("cannot write '{}': writing failed (disk full?)", path);
    }
  }
  fs::rename(temp, target, ec);
  if (ec) {
    fs::remove(temp, ec);
    fail("cannot write '{}': {}", path, ec.message());
  }
}

void check_output_path(std::string_view flag, const std::string& path) {
  namespace fs = std::filesystem;
  if (path.empty()) return;
  std::error_code ec;
  if (fs::is_directory(path, ec)) fail("{} {}: it is a directory; name a file to write", flag, path);
  const fs::path parent = fs::path(path).parent_path();
  const fs::path folder = parent.empty() ? fs::path(".") : parent;
  if (!fs::is_directory(folder, ec)) fail("{} {}: the folder '{}' does not exist", flag, path, folder.string());
  if (::access(folder.c_str(), W_OK) != 0) fail("{} {}: the folder '{}' is not writable", flag, path, folder.string());
}

}  // namespace paratwin::cli
