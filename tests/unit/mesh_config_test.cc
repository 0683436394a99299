// How --mesh-with entries become URLs (derper's startMeshWithHost).
#include <gtest/gtest.h>

#include "server/mesh.h"

namespace derp {
namespace mesh_config {

struct Want {
  std::string entry, url, cert_name;
};

TEST(MeshTarget, EntriesBecomeUrlsAsDerperDialsThem) {
  const std::vector<Want> cases = {
      // Bare entries are https, with or without a port (derper: "https://" + host + "/derp").
      {"127.0.0.1:3341", "https://127.0.0.1:3341/derp", ""},
      {"derp1.example.invalid", "https://derp1.example.invalid/derp", ""},
      {"[::1]:8443", "https://[::1]:8443/derp", ""},
      // host/dialhost: dial the second part on the first part's port, verify the first part.
      {"derp1.example.invalid/10.0.0.1", "https://10.0.0.1/derp", "derp1.example.invalid"},
      {"derp1.example.invalid:8443/10.0.0.1", "https://10.0.0.1:8443/derp",
       "derp1.example.invalid"},
      {"[::1]:8443/127.0.0.1", "https://127.0.0.1:8443/derp", "::1"},
      // URLs are taken as written, plain http:// included (test relays).
      {"http://127.0.0.1:3341/derp", "http://127.0.0.1:3341/derp", ""},
      {"https://127.0.0.1:3341", "https://127.0.0.1:3341", ""},
  };
  for (const Want& w : cases) {
    auto t = server::parse_mesh_target(w.entry);
    ASSERT_TRUE(t) << w.entry << ": " << t.error().message;
    EXPECT_EQ(t->url, w.url) << w.entry;
    EXPECT_EQ(t->cert_name, w.cert_name) << w.entry;
  }
  for (const std::string bad : {"", "a/b/c", "/x", "a b"}) {
    auto t = server::parse_mesh_target(bad);
    EXPECT_FALSE(t) << bad;
  }
}

}  // namespace mesh_config
}  // namespace derp
