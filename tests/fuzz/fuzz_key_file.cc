// derper's node key file and the mesh key file on arbitrary contents: the input is written to a
// private (0600) temporary file, which both loaders read; a key that loads is saved and loaded
// again unchanged.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "derp/key.h"

namespace {

// A private directory for the run, removed at exit.
struct TempDir {
  std::string path;
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    path = std::string(base && *base ? base : "/tmp") + "/fuzz_key_file.XXXXXX";
    if (mkdtemp(path.data()) == nullptr) std::abort();
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

const std::string& temp_dir() {
  static const TempDir dir;
  return dir.path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = temp_dir() + "/key";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) std::abort();
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::write(fd, data + done, size - done);
    if (n <= 0) std::abort();
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  (void)derp::load_mesh_key_file(path);
  if (auto k = derp::load_key_file(path); k.ok()) {
    const std::string copy = temp_dir() + "/saved";
    if (!derp::save_key_file(copy, *k).ok()) std::abort();
    auto again = derp::load_key_file(copy);
    if (!again.ok() || !(*again == *k)) std::abort();
  }
  return 0;
}
