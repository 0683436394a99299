#include "support/chromium.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace derp::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

// One WebSocket to the browser endpoint, read with deadlines on a private io_context (the
// test thread runs it only while it waits for a message).
struct Chromium::Cdp {
  asio::io_context io;
  beast::websocket::stream<asio::ip::tcp::socket> ws{io};
  bool broken = false;

  bool connect(uint16_t port, const std::string& path, std::string* why) {
    boost::system::error_code ec;
    ws.next_layer().connect({asio::ip::make_address("127.0.0.1"), port}, ec);
    if (!ec) ws.handshake("127.0.0.1:" + std::to_string(port), path, ec);
    if (ec) {
      *why = "DevTools WebSocket on 127.0.0.1:" + std::to_string(port) + ": " + ec.message();
      return false;
    }
    ws.text(true);
    return true;
  }

  bool send(const json& msg) {
    boost::system::error_code ec;
    ws.write(asio::buffer(msg.dump()), ec);
    return !ec;
  }

  // The next message, or nullopt at the deadline (the stream is then unusable) or on error.
  std::optional<json> read(Clock::time_point deadline) {
    if (broken) return std::nullopt;
    beast::flat_buffer buf;
    bool done = false;
    boost::system::error_code err;
    ws.async_read(buf, [&](boost::system::error_code ec, size_t) {
      err = ec;
      done = true;
    });
    io.restart();
    io.run_until(deadline);
    if (!done) {
      boost::system::error_code ignored;
      ws.next_layer().cancel(ignored);
      io.restart();
      io.run();
      broken = true;
      return std::nullopt;
    }
    if (err) {
      broken = true;
      return std::nullopt;
    }
    auto j = json::parse(beast::buffers_to_string(buf.data()), nullptr, false);
    if (j.is_discarded()) return std::nullopt;
    return j;
  }
};

namespace {

// Waits (inotify, with a deadline) until Chromium has written DIR/DevToolsActivePort: its
// port on the first line, the browser endpoint's path on the second.
bool read_devtools_port(const std::string& dir, pid_t pid, uint16_t* port, std::string* path,
                        std::string* why) {
  const std::string file = dir + "/DevToolsActivePort";
  const int fd = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (fd < 0) {
    *why = std::string("inotify: ") + std::strerror(errno);
    return false;
  }
  ::inotify_add_watch(fd, dir.c_str(), IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE);
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  bool ok = false;
  for (;;) {
    std::ifstream in(file);
    std::string port_line;
    if (in && std::getline(in, port_line) && std::getline(in, *path) && !path->empty()) {
      *port = static_cast<uint16_t>(std::stoi(port_line));
      ok = true;
      break;
    }
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      *why = "chromium exited before opening its DevTools port";
      break;
    }
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      *why = "chromium wrote no DevToolsActivePort within 30 s";
      break;
    }
    // Wake on any change in the directory, or every 100 ms to notice an exit.
    pollfd p{fd, POLLIN, 0};
    ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 100)));
    char drain[4096];
    while (::read(fd, drain, sizeof drain) > 0) {
    }
  }
  ::close(fd);
  return ok;
}

std::string log_tail(const std::string& dir) {
  std::ifstream in(dir + "/chromium.log");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  return s.size() > 2000 ? s.substr(s.size() - 2000) : s;
}

std::optional<std::string> base64_decode(const std::string& text) {
  std::string out(text.size() / 4 * 3 + 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(text.data()),
                                static_cast<int>(text.size()));
  if (n < 0) return std::nullopt;
  size_t len = static_cast<size_t>(n);
  for (size_t i = text.size(); i > 0 && text[i - 1] == '='; --i) --len;  // padding
  out.resize(len);
  return out;
}

}  // namespace

std::unique_ptr<Chromium> Chromium::launch(std::string* why) {
  auto c = std::unique_ptr<Chromium>(new Chromium());
  char tmpl[] = "/tmp/derp-chromium-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    *why = std::string("mkdtemp: ") + std::strerror(errno);
    return nullptr;
  }
  c->dir_ = tmpl;
  const std::string profile = c->dir_;
  std::vector<std::string> args = {
      kBinary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--user-data-dir=" + profile,
      // Beyond the required set: nothing else that could phone out or pop up, and no host
      // name resolves, so only IP-literal loopback URLs can load.
      "--no-default-browser-check", "--disable-default-apps", "--disable-extensions",
      "--disable-breakpad", "--disable-domain-reliability",
      "--disable-client-side-phishing-detection",
      "--disable-features=Translate,MediaRouter,OptimizationHints,AutofillServerCommunication",
      "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--disable-dev-shm-usage",
      "--hide-scrollbars", "--mute-audio", "--window-size=1100,900",
      "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "about:blank"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string log = c->dir_ + "/chromium.log";
  c->pid_ = ::fork();
  if (c->pid_ < 0) {
    *why = std::string("fork: ") + std::strerror(errno);
    return nullptr;
  }
  if (c->pid_ == 0) {
    ::setpgid(0, 0);  // one group: the destructor ends the browser and all its helpers
    const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int in = ::open("/dev/null", O_RDONLY);
    if (out >= 0) {
      ::dup2(out, 1);
      ::dup2(out, 2);
    }
    if (in >= 0) ::dup2(in, 0);
    ::execv(kBinary, argv.data());
    ::_exit(127);
  }
  ::setpgid(c->pid_, c->pid_);  // also from here, so the group exists before any kill
  uint16_t port = 0;
  std::string path;
  if (!read_devtools_port(c->dir_, c->pid_, &port, &path, why)) {
    *why += "; its log: " + log_tail(c->dir_);
    return nullptr;
  }
  c->cdp_ = std::make_unique<Cdp>();
  if (!c->cdp_->connect(port, path, why)) return nullptr;
  auto target = c->call("Target.createTarget", {{"url", "about:blank"}}, std::chrono::seconds(10),
                        why, false);
  if (!target) return nullptr;
  auto attached =
      c->call("Target.attachToTarget", {{"targetId", (*target)["targetId"]}, {"flatten", true}},
              std::chrono::seconds(10), why, false);
  if (!attached) return nullptr;
  c->session_ = (*attached)["sessionId"].get<std::string>();
  for (const char* domain : {"Runtime.enable", "Log.enable", "Page.enable"}) {
    if (!c->call(domain, json::object(), std::chrono::seconds(10), why)) return nullptr;
  }
  return c;
}

Chromium::~Chromium() {
  cdp_.reset();
  if (pid_ > 0) {
    ::kill(-pid_, SIGKILL);
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

void Chromium::note_event(const json& msg) {
  const std::string method = msg.value("method", "");
  const json& p = msg.contains("params") ? msg["params"] : json::object();
  if (method == "Runtime.exceptionThrown") {
    const json& d = p.value("exceptionDetails", json::object());
    std::string line = "exception: " + d.value("text", std::string());
    if (d.contains("exception")) line += " " + d["exception"].value("description", std::string());
    errors_.push_back(line);
  } else if (method == "Runtime.consoleAPICalled" &&
             (p.value("type", "") == "error" || p.value("type", "") == "assert")) {
    std::string line = "console." + p.value("type", std::string()) + ":";
    for (const auto& a : p.value("args", json::array())) {
      line += " " + (a.contains("value") ? a["value"].dump() : a.value("description", ""));
    }
    errors_.push_back(line);
  } else if (method == "Log.entryAdded" &&
             p.value("entry", json::object()).value("level", "") == "error") {
    errors_.push_back("log: " + p["entry"].value("text", std::string()) + " " +
                      p["entry"].value("url", std::string()));
  }
  events_.push_back(msg);
}

std::optional<json> Chromium::call(const std::string& method, json params,
                                   std::chrono::milliseconds timeout, std::string* why,
                                   bool on_page) {
  const int id = next_id_++;
  json msg = {{"id", id}, {"method", method}, {"params", std::move(params)}};
  if (on_page) msg["sessionId"] = session_;
  if (!cdp_->send(msg)) {
    *why = method + ": the DevTools connection is closed";
    return std::nullopt;
  }
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    auto got = cdp_->read(deadline);
    if (!got) {
      *why = method + ": no answer within " + std::to_string(timeout.count()) + " ms";
      return std::nullopt;
    }
    if (!got->contains("id")) {
      note_event(*got);
      continue;
    }
    if ((*got)["id"] != id) continue;
    if (got->contains("error")) {
      *why = method + ": " + (*got)["error"].dump();
      return std::nullopt;
    }
    return got->value("result", json::object());
  }
}

bool Chromium::wait_event(const std::string& method, std::chrono::milliseconds timeout,
                          std::string* why) {
  auto seen = [&] {
    for (auto it = events_.begin(); it != events_.end(); ++it) {
      if ((*it)["method"] == method) {
        events_.erase(events_.begin(), it + 1);
        return true;
      }
    }
    return false;
  };
  const auto deadline = Clock::now() + timeout;
  while (!seen()) {
    auto got = cdp_->read(deadline);
    if (!got) {
      *why = "no " + method + " within " + std::to_string(timeout.count()) + " ms";
      return false;
    }
    if (!got->contains("id")) note_event(*got);
  }
  return true;
}

bool Chromium::navigate(const std::string& url, std::chrono::milliseconds timeout,
                        std::string* why) {
  if (url.rfind("http://127.0.0.1:", 0) != 0) {
    *why = "refusing to point chromium at " + url + " (only http://127.0.0.1:… URLs)";
    return false;
  }
  events_.clear();
  auto r = call("Page.navigate", {{"url", url}}, timeout, why);
  if (!r) return false;
  if (r->contains("errorText")) {
    *why = "navigate to " + url + ": " + (*r)["errorText"].get<std::string>();
    return false;
  }
  return wait_event("Page.loadEventFired", timeout, why);
}

std::optional<json> Chromium::evaluate(const std::string& expression,
                                       std::chrono::milliseconds timeout, std::string* why) {
  auto r = call("Runtime.evaluate",
                {{"expression", expression}, {"awaitPromise", true}, {"returnByValue", true}},
                timeout, why);
  if (!r) return std::nullopt;
  if (r->contains("exceptionDetails")) {
    const json& d = (*r)["exceptionDetails"];
    *why = "evaluate threw: " + d.value("text", std::string()) + " " +
           d.value("exception", json::object()).value("description", std::string());
    return std::nullopt;
  }
  return (*r)["result"].value("value", json());
}

std::optional<std::string> Chromium::screenshot_png(std::string* why) {
  auto metrics = call("Page.getLayoutMetrics", json::object(), std::chrono::seconds(10), why);
  if (!metrics) return std::nullopt;
  const json size = metrics->value("cssContentSize", json::object());
  json params = {{"format", "png"}, {"captureBeyondViewport", true}};
  if (size.contains("width") && size.contains("height")) {
    params["clip"] = {
        {"x", 0}, {"y", 0}, {"width", size["width"]}, {"height", size["height"]}, {"scale", 1}};
  }
  auto r = call("Page.captureScreenshot", params, std::chrono::seconds(20), why);
  if (!r) return std::nullopt;
  auto png = base64_decode(r->value("data", std::string()));
  if (!png || png->size() < 8 || png->compare(1, 3, "PNG") != 0) {
    *why = "Page.captureScreenshot: not a PNG";
    return std::nullopt;
  }
  return png;
}

}  // namespace derp::test
