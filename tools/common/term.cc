#include "common/term.h"

#include <fmt/format.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>

namespace derp::tools {

namespace {

constexpr std::string_view kErase = "\r\x1b[K";

std::string_view env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string_view(v) : std::string_view();
}

std::string seconds_text(std::chrono::nanoseconds d) {
  return fmt::format("{:.1f}s", std::chrono::duration<double>(d).count());
}

// Cuts to at most `max` bytes without splitting a UTF-8 sequence.
void cut(std::string& s, size_t max) {
  if (s.size() <= max) return;
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  s.resize(n);
}

}  // namespace

bool colour_allowed(const TermFacts& f) {
  return f.is_tty && !f.json && !f.no_color_flag && f.no_color_env.empty() && f.term_env != "dumb";
}

bool progress_allowed(const TermFacts& f) { return f.is_tty && !f.json && f.term_env != "dumb"; }

TermFacts term_facts(int fd, bool json, bool no_color_flag) {
  TermFacts f;
  f.is_tty = ::isatty(fd) == 1;
  f.json = json;
  f.no_color_flag = no_color_flag;
  f.no_color_env = env("NO_COLOR");
  f.term_env = env("TERM");
  return f;
}

int terminal_columns(int fd) {
  winsize ws{};
  if (::ioctl(fd, TIOCGWINSZ, &ws) != 0) return 0;
  return ws.ws_col;
}

std::string Palette::paint(std::string_view text, Tone tone) const {
  if (!enabled_) return std::string(text);
  std::string_view sgr = tone == Tone::kGood ? "32" : tone == Tone::kBad ? "1;31" : "33";
  return fmt::format("\x1b[{}m{}\x1b[0m", sgr, text);
}

Palette palette_for(int fd, bool json, bool no_color_flag) {
  return Palette(colour_allowed(term_facts(fd, json, no_color_flag)));
}

ProgressLine::ProgressLine(std::ostream& out, bool enabled, std::string prefix, int columns,
                           Clock clock)
    : out_(out),
      enabled_(enabled),
      prefix_(std::move(prefix)),
      columns_(columns),
      own_clock_(!clock),
      clock_(clock ? std::move(clock) : Clock([] { return std::chrono::steady_clock::now(); })) {}

ProgressLine ProgressLine::for_stderr(std::string prefix, bool json) {
  const bool on = progress_allowed(term_facts(STDERR_FILENO, json, false));
  return ProgressLine(std::cerr, on, std::move(prefix), on ? terminal_columns(STDERR_FILENO) : 0);
}

ProgressLine::~ProgressLine() { finish(); }

void ProgressLine::start(std::string text, std::chrono::nanoseconds expected) {
  if (!enabled_) return;
  {
    std::lock_guard lk(mu_);
    if (running_) return;
    running_ = true;
    text_ = std::move(text);
    expected_ = expected;
    started_ = clock_();
    draw_locked(started_, true);
  }
  if (!own_clock_) return;
  ticker_ = std::thread([this] {
    std::unique_lock lk(mu_);
    while (running_) {
      cv_.wait_for(lk, kMinRedraw);
      if (running_) draw_locked(clock_(), false);
    }
  });
}

void ProgressLine::update(std::string text) {
  if (!enabled_) return;
  std::lock_guard lk(mu_);
  if (!running_) return;
  text_ = std::move(text);
  draw_locked(clock_(), false);
}

void ProgressLine::tick() {
  if (!enabled_) return;
  std::lock_guard lk(mu_);
  if (running_) draw_locked(clock_(), false);
}

void ProgressLine::print_above(const std::function<void()>& print) {
  std::lock_guard lk(mu_);
  if (enabled_) erase_locked();
  if (print) print();
}

void ProgressLine::finish() {
  if (!enabled_) return;
  {
    std::lock_guard lk(mu_);
    if (!running_) return;
    running_ = false;
    erase_locked();
  }
  cv_.notify_all();
  if (ticker_.joinable()) ticker_.join();
}

std::string ProgressLine::render_locked(std::chrono::steady_clock::time_point now) const {
  std::string time = seconds_text(now - started_);
  if (expected_.count() > 0) time += "/" + seconds_text(expected_);
  std::string line = fmt::format("{}: {}  {}", prefix_, text_, time);
  if (columns_ > 1) cut(line, static_cast<size_t>(columns_ - 1));
  return line;
}

void ProgressLine::draw_locked(std::chrono::steady_clock::time_point now, bool force) {
  if (!force && shown_ && now - last_draw_ < kMinRedraw) return;
  out_ << kErase << render_locked(now) << std::flush;
  shown_ = true;
  last_draw_ = now;
}

void ProgressLine::erase_locked() {
  if (!shown_) return;
  out_ << kErase << std::flush;
  shown_ = false;
}

}  // namespace derp::tools
