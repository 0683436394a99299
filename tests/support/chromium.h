// Headless Chromium driven over the DevTools protocol (CDP), for tests of the pages the relay
// serves. It runs with a fresh profile in a temporary directory and with every
// background-networking feature off, and no host name resolves, so it talks only to the
// http://127.0.0.1 URLs a test opens. The destructor kills its whole process group and
// removes the profile, whatever the test's outcome.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace derp::test {

class Chromium {
 public:
  static constexpr const char* kBinary = "/usr/bin/chromium";

  // Starts the browser and opens a blank page to drive; nullptr with *why set when it cannot.
  static std::unique_ptr<Chromium> launch(std::string* why);
  ~Chromium();
  Chromium(const Chromium&) = delete;
  Chromium& operator=(const Chromium&) = delete;

  // Navigates the page to `url` (only http://127.0.0.1:… is accepted) and waits for its load
  // event.
  bool navigate(const std::string& url, std::chrono::milliseconds timeout, std::string* why);
  // Runtime.evaluate: awaits a promise result, returns the value as JSON; nullopt (why set)
  // when it threw or the deadline passed.
  std::optional<nlohmann::json> evaluate(const std::string& expression,
                                         std::chrono::milliseconds timeout, std::string* why);
  // A PNG of the whole page (Page.captureScreenshot, beyond the viewport).
  std::optional<std::string> screenshot_png(std::string* why);
  // Uncaught exceptions, console.error calls and error log entries seen so far, one line each.
  const std::vector<std::string>& errors() const { return errors_; }

 private:
  struct Cdp;
  Chromium() = default;
  std::optional<nlohmann::json> call(const std::string& method, nlohmann::json params,
                                     std::chrono::milliseconds timeout, std::string* why,
                                     bool on_page = true);
  bool wait_event(const std::string& method, std::chrono::milliseconds timeout, std::string* why);
  void note_event(const nlohmann::json& msg);

  pid_t pid_ = -1;
  std::string dir_;
  std::unique_ptr<Cdp> cdp_;
  std::string session_;
  int next_id_ = 1;
  std::vector<nlohmann::json> events_;  // not yet waited for
  std::vector<std::string> errors_;
};

}  // namespace derp::test
