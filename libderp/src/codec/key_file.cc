// derper's key file and the mesh PSK file. PROTOCOL.md §1.1, §1.3.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <system_error>

#include "codec/text.h"
#include "derp/key.h"

namespace derp {
namespace {

std::error_code errno_code(int e) { return {e, std::generic_category()}; }

Error file_error(std::string what, int e) {
  return Error(ErrorKind::kUsage, fmt::format("{}: {}", what, std::strerror(e)), errno_code(e));
}

// Reads a whole (small) file. Key files are tiny; refuse anything big rather than read a
// device or a log file someone pointed us at by mistake.
Result<std::string> read_small_file(int fd, const std::string& what) {
  constexpr size_t kMaxSize = 64 * 1024;
  std::string data;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return file_error(fmt::format("cannot read {}", what), errno);
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
    if (data.size() > kMaxSize) {
      return Error(ErrorKind::kUsage, fmt::format("{} is larger than {} bytes", what, kMaxSize));
    }
  }
  return data;
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

// Opens `path` for reading; *missing is set when it does not exist (so the caller can create it).
// Opens `path` (a "key file" or "mesh key file": `what`) and reads it, refusing anything but a
// regular file that only its owner may access: the node key is the relay's identity, and the
// mesh key lets its holder see every client of the mesh and forward as any of them.
// *missing is set when it does not exist (so the caller can create it).
Result<std::string> read_private_file(const std::string& path, std::string_view what,
                                      bool* missing) {
  if (missing) *missing = false;
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    int e = errno;
    if (e == ENOENT && missing) *missing = true;
    return file_error(fmt::format("cannot open {} {}", what, path), e);
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) {
    return file_error(fmt::format("cannot stat {} {}", what, path), errno);
  }
  if (!S_ISREG(st.st_mode)) {
    return Error(ErrorKind::kUsage, fmt::format("{} {} is not a regular file", what, path));
  }
  if ((st.st_mode & 077) != 0) {
    return Error(ErrorKind::kUsage,
                 fmt::format("{} {} has mode {:04o}; it must not be accessible by group or "
                             "others (chmod 600 {})",
                             what, path, st.st_mode & 07777, path));
  }
  return read_small_file(fd.get(), fmt::format("{} {}", what, path));
}

Result<std::string> read_key_file(const std::string& path, bool* missing) {
  return read_private_file(path, "key file", missing);
}

Result<NodePrivate> parse_key_file(const std::string& path, const std::string& text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    return Error(ErrorKind::kUsage,
                 fmt::format("key file {} is not valid JSON (error at byte {})", path, e.byte));
  } catch (const nlohmann::json::exception&) {
    // A number too large for a double (e.g. 1e400) is reported as out_of_range.
    return Error(ErrorKind::kUsage,
                 fmt::format("key file {} is not valid JSON (a number is out of range)", path));
  }
  if (!j.is_object()) {
    return Error(ErrorKind::kUsage,
                 fmt::format("key file {} is not a JSON object with a \"PrivateKey\"", path));
  }
  // Go's encoding/json matches field names case-insensitively; so do we.
  const nlohmann::json* value = nullptr;
  for (const auto& [name, v] : j.items()) {
    if (codec::iequals_ascii(name, "PrivateKey")) value = &v;
  }
  if (value == nullptr) {
    return Error(ErrorKind::kUsage, fmt::format("key file {} has no \"PrivateKey\"", path));
  }
  if (!value->is_string()) {
    return Error(ErrorKind::kUsage,
                 fmt::format("key file {}: \"PrivateKey\" is not a string", path));
  }
  auto key = NodePrivate::parse(value->get_ref<const std::string&>());
  if (!key) return key.error().wrap(fmt::format("key file {}", path));
  return key;
}

// derper's MkdirAll before it writes a new key file, but private: every directory it has to
// create is 0700 (whatever the umask); directories that exist are left as they are.
Result<void> create_parent_directories(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos || slash == 0) return {};
  const std::string parent = path.substr(0, slash);
  struct stat st;
  if (::stat(parent.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return {};
    return Error(ErrorKind::kUsage, fmt::format("cannot create key file {}: {} is not a directory",
                                                path, parent));
  }
  if (errno != ENOENT) {
    return file_error(fmt::format("cannot create key file {}: {}", path, parent), errno);
  }
  if (auto up = create_parent_directories(parent); !up) return up;
  if (::mkdir(parent.c_str(), 0700) != 0 && errno != EEXIST) {
    return file_error(fmt::format("cannot create directory {} for key file {}", parent, path),
                      errno);
  }
  if (::chmod(parent.c_str(), 0700) != 0) {
    return file_error(fmt::format("cannot chmod directory {}", parent), errno);
  }
  return {};
}

}  // namespace

Result<NodePrivate> load_key_file(const std::string& path) {
  auto text = read_key_file(path, nullptr);
  if (!text) return std::move(text).error();
  return parse_key_file(path, *text);
}

Result<void> save_key_file(const std::string& path, const NodePrivate& key) {
  // derper writes json.MarshalIndent(cfg, "", "\t"): tab-indented, no trailing newline.
  nlohmann::json j = {{"PrivateKey", key.to_string()}};
  const std::string text = j.dump(1, '\t');

  // Write a temporary file next to the target and rename it over, so a crash never leaves a
  // half-written identity behind. mkstemp creates it 0600.
  std::string tmp = path + ".tmp.XXXXXX";
  Fd fd(::mkstemp(tmp.data()));
  if (fd.get() < 0) return file_error(fmt::format("cannot create key file {}", path), errno);
  auto fail = [&](const std::string& what, int e) {
    ::unlink(tmp.c_str());
    return file_error(what, e);
  };
  // Explicit, whatever the umask or mkstemp's libc: the key must be private.
  if (::fchmod(fd.get(), 0600) != 0) {
    return fail(fmt::format("cannot chmod {}", tmp), errno);
  }
  size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::write(fd.get(), text.data() + off, text.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(fmt::format("cannot write key file {}", tmp), errno);
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) return fail(fmt::format("cannot sync key file {}", tmp), errno);
  if (::close(fd.release()) != 0) return fail(fmt::format("cannot write key file {}", tmp), errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return fail(fmt::format("cannot rename {} to {}", tmp, path), errno);
  }
  return {};
}

Result<NodePrivate> load_or_create_key_file(const std::string& path, bool* created) {
  if (created) *created = false;
  bool missing = false;
  auto text = read_key_file(path, &missing);
  if (text) return parse_key_file(path, *text);
  if (!missing) return std::move(text).error();
  if (auto dirs = create_parent_directories(path); !dirs) return std::move(dirs).error();
  NodePrivate key = NodePrivate::generate();
  auto saved = save_key_file(path, key);
  if (!saved) return std::move(saved).error();
  if (created) *created = true;
  return key;
}

Result<MeshKey> load_mesh_key_file(const std::string& path) {
  auto text = read_private_file(path, "mesh key file", nullptr);
  if (!text) return std::move(text).error();
  auto key = MeshKey::parse(*text);
  if (!key) return key.error().wrap(fmt::format("mesh key file {}", path));
  return key;
}

}  // namespace derp
