// What the tools do with a terminal: whether a stream gets colour or a live progress line, the
// colours of verdict words, and the progress line itself (redrawn in place on stderr). Piped or
// with --json, nothing here writes a byte: the output stays exactly what scripts parse.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <ostream>
#include <string>
#include <string_view>
#include <thread>

namespace derp::tools {

// What decides the decoration of one output stream.
struct TermFacts {
  bool is_tty = false;
  bool json = false;              // --json: machine output, never decorated
  bool no_color_flag = false;     // --no-color
  std::string_view no_color_env;  // $NO_COLOR; any non-empty value turns colour off
  std::string_view term_env;      // $TERM; "dumb" has no colour and no cursor control
};

// Colour on the stream: a TTY, no --json, no --no-color, NO_COLOR unset or empty, TERM not dumb.
bool colour_allowed(const TermFacts& facts);
// A live progress line on the stream: a TTY, no --json, TERM not dumb (redraws need ESC[K).
// NO_COLOR and --no-color do not turn it off: it has no colour.
bool progress_allowed(const TermFacts& facts);

// The facts of a real file descriptor (isatty) and of this process's environment.
TermFacts term_facts(int fd, bool json, bool no_color_flag);

// The terminal's width in columns (TIOCGWINSZ), 0 when fd is no terminal or does not say.
int terminal_columns(int fd);

enum class Tone { kGood, kBad, kWarn };

// Colours verdict words with SGR sequences, or (disabled) returns them as they are. Pad a
// column before painting it: the escape bytes have no width on screen.
class Palette {
 public:
  explicit Palette(bool enabled = false) : enabled_(enabled) {}
  bool enabled() const { return enabled_; }
  std::string paint(std::string_view text, Tone tone) const;
  std::string good(std::string_view text) const { return paint(text, Tone::kGood); }
  std::string bad(std::string_view text) const { return paint(text, Tone::kBad); }

 private:
  bool enabled_;
};

// The palette for a real stream (colour_allowed(term_facts(fd, ...))).
Palette palette_for(int fd, bool json, bool no_color_flag);

// One line of live progress, "<prefix>: <text>  <elapsed>[/<expected>]", redrawn in place
// ("\r" + ESC[K) at most every kMinRedraw, erased by finish() so the output that follows
// starts on a clean line. Disabled, every call is a no-op. Thread-safe: update() may come
// from any thread.
//
// With the default clock (steady_clock) start() also runs a ticker thread that redraws every
// kMinRedraw, so the elapsed time moves while nothing else happens; given a clock, the caller
// drives the redraws with tick() (tests).
class ProgressLine {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;
  static constexpr std::chrono::milliseconds kMinRedraw{100};

  // columns: the line is cut to columns - 1 so it never wraps (0 = no limit).
  ProgressLine(std::ostream& out, bool enabled, std::string prefix, int columns = 0,
               Clock clock = {});
  // On stderr (std::cerr) when progress_allowed(term_facts(2, json, false)), its width.
  static ProgressLine for_stderr(std::string prefix, bool json);
  ~ProgressLine();  // finish()
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;

  bool enabled() const { return enabled_; }
  // Starts the clock and draws `text`. expected > 0: how long the run should take, shown
  // after the elapsed time ("2.1s/5.5s").
  void start(std::string text, std::chrono::nanoseconds expected = {});
  // New text: drawn now when the last draw is kMinRedraw old, else by the next tick.
  void update(std::string text);
  // Redraws when due (kMinRedraw since the last draw), so the elapsed time moves.
  void tick();
  // Erases the line, runs `print` (which writes whole lines of its own to the same terminal,
  // e.g. a note on stderr) with no redraw in between, and lets the next update() or tick() draw
  // the line again below them (`print` must not call this line). Disabled, just runs `print`.
  void print_above(const std::function<void()>& print);
  // Stops the ticker and erases the line; later calls do nothing. Idempotent.
  void finish();

 private:
  std::string render_locked(std::chrono::steady_clock::time_point now) const;
  void draw_locked(std::chrono::steady_clock::time_point now, bool force);
  void erase_locked();

  std::ostream& out_;
  const bool enabled_;
  const std::string prefix_;
  const int columns_;
  const bool own_clock_;
  Clock clock_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool running_ = false;
  bool shown_ = false;  // a line is on the screen
  std::string text_;
  std::chrono::steady_clock::time_point started_{}, last_draw_{};
  std::chrono::nanoseconds expected_{0};
  std::thread ticker_;
};

}  // namespace derp::tools
