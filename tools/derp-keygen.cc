// derp-keygen: make a node key. Prints its public form (nodekey:...); with --out also writes
// derper's key file ({"PrivateKey": "privkey:..."}, mode 0600).
#include <sys/stat.h>

#include <iostream>

#include "common/cli.h"
#include "common/exit_codes.h"
#include "common/json_output.h"

int main(int argc, char** argv) {
  using namespace derp;
  using namespace derp::tools;

  ToolCli cli("derp-keygen", "Generate a DERP node key");
  std::string out;
  bool force = false;
  cli.app()
      .add_option("--out,-o", out, "Write derper's JSON key file (mode 0600) to FILE")
      ->type_name("FILE");
  cli.app().add_flag("--force", force, "Overwrite --out if it already exists");
  cli.set_manual({
      .description =
          "derp-keygen generates a new DERP node key and prints it: the private key "
          "(privkey:...) and then the public key (nodekey:...).\n\n"
          "With --out it writes derper's JSON key file ({\"PrivateKey\": \"privkey:...\"}, mode "
          "0600) instead and prints only the nodekey:. An existing file is kept unless --force "
          "is given. With --json no private key is printed when --out is given.",
      .examples = {{"Print a new key pair:", "derp-keygen"},
                   {"Write bob's key file, the one derp-recv --key-file reads:",
                    "derp-keygen --out bob.key"}},
  });
  cli.add_json();
  if (auto code = cli.parse(argc, argv)) return *code;

  if (!out.empty()) {
    struct stat st;
    if (!force && ::lstat(out.c_str(), &st) == 0) {
      return cli.fail(Error(ErrorKind::kUsage, "refusing to overwrite " + out + " (use --force)"));
    }
  }
  NodePrivate key = NodePrivate::generate();
  if (!out.empty()) {
    auto saved = save_key_file(out, key);
    if (!saved) return cli.fail(saved.error());
  }
  const std::string pub = key.public_key().to_string();
  if (cli.json()) {
    auto j = json_ok();
    j["public_key"] = pub;
    if (!out.empty()) {
      j["key_file"] = out;
    } else {
      // Without a file the private key must be shown, or the key is useless.
      j["private_key"] = key.to_string();
    }
    print_json_line(j);
  } else if (out.empty()) {
    std::cout << key.to_string() << "\n" << pub << "\n";
  } else {
    std::cout << pub << "\n";
  }
  return kExitOk;
}
