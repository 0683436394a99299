// derp-ping: DERP Ping/Pong round trips to a relay, printed like ping(8).
//   derp-ping SERVER [--count N] [--interval 1s] [--timeout 5s] [--json]
// Exit 0 when every ping was answered, 1 when some were lost, the layered code (3..9) when the
// connection could not be made.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <thread>

#include "common/cli.h"
#include "common/client_setup.h"
#include "common/duration.h"
#include "common/exit_codes.h"
#include "common/json_output.h"

namespace {

double percentile(std::vector<double> sorted, double p) {
  if (sorted.empty()) return 0;
  // Nearest rank: the smallest value with at least p% of samples at or below it.
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

}  // namespace

int main(int argc, char** argv) {
  using namespace derp;
  using namespace derp::tools;

  ToolCli cli("derp-ping", "Measure DERP Ping/Pong round trips to a relay");
  cli.add_server();
  cli.add_server_key();
  cli.add_key_file("Our key (derper's JSON key file); default: a fresh ephemeral key");
  cli.add_json();
  cli.add_timeout("5s", "Wait this long for each pong (and for the connect)");
  int64_t count = 4;
  std::string interval_text = "1s";
  cli.app().add_option("--count,-c", count, "Number of pings")->check(CLI::PositiveNumber);
  cli.app().add_option("--interval,-i", interval_text, "Time between pings")->default_str("1s");
  if (auto code = cli.parse(argc, argv)) return *code;
  auto interval = parse_duration(interval_text);
  if (!interval) return cli.fail(interval.error().wrap("--interval"));

  auto tc = make_client(cli, /*connect=*/true);
  if (!tc) return cli.fail(tc.error());
  Client& c = *tc->client;

  const std::string where = c.server_url();
  if (!cli.json()) {
    std::cout << "PING " << where << " (" << c.server_public_key().to_string() << ")\n"
              << std::flush;
  }
  std::vector<double> rtts;
  int64_t sent = 0;
  std::optional<Error> last_error;
  for (int64_t seq = 1; seq <= count; ++seq) {
    if (seq > 1) std::this_thread::sleep_for(*interval);  // pacing, not waiting for an event
    ++sent;
    auto rtt = c.ping(cli.timeout());
    if (!rtt) {
      last_error = rtt.error();
      if (!cli.json()) std::cout << "no pong seq=" << seq << ": " << rtt.error().message << "\n";
      continue;
    }
    double ms = static_cast<double>(rtt->count()) / 1e6;
    rtts.push_back(ms);
    if (!cli.json()) {
      std::printf("pong from %s seq=%lld time=%.3f ms\n", where.c_str(),
                  static_cast<long long>(seq), ms);
      std::fflush(stdout);
    }
  }
  const int64_t received = static_cast<int64_t>(rtts.size());
  const double loss =
      sent == 0 ? 0 : 100.0 * static_cast<double>(sent - received) / static_cast<double>(sent);
  std::vector<double> sorted = rtts;
  std::sort(sorted.begin(), sorted.end());
  double sum = 0;
  for (double r : rtts) sum += r;
  const double min = sorted.empty() ? 0 : sorted.front();
  const double max = sorted.empty() ? 0 : sorted.back();
  const double avg = sorted.empty() ? 0 : sum / static_cast<double>(sorted.size());
  const bool all = received == sent;

  if (cli.json()) {
    nlohmann::json j =
        all ? json_ok() : json_error(last_error.value_or(Error(ErrorKind::kTimeout, "pings lost")));
    j["server"] = where;
    j["server_key"] = c.server_public_key().to_string();
    j["sent"] = sent;
    j["received"] = received;
    j["loss"] = loss;
    j["rtt_ms"] = {{"min", min},
                   {"avg", avg},
                   {"max", max},
                   {"p50", percentile(sorted, 50)},
                   {"p99", percentile(sorted, 99)}};
    j["samples_ms"] = rtts;
    print_json_line(j);
  } else {
    std::printf("--- %s ping statistics ---\n", where.c_str());
    std::printf("%lld sent, %lld received, %.1f%% loss\n", static_cast<long long>(sent),
                static_cast<long long>(received), loss);
    if (received > 0) {
      std::printf("rtt min/avg/max/p50/p99 = %.3f/%.3f/%.3f/%.3f/%.3f ms\n", min, avg, max,
                  percentile(sorted, 50), percentile(sorted, 99));
    }
  }
  c.close();
  return all ? kExitOk : kExitCheckFailed;
}
