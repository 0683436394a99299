// The live status section of "/" (after derper's home text): one HTML fragment with its CSS,
// an inline SVG chart and a few lines of plain JS that redraw it from /status.json every
// second. No external assets: no CDN, no fonts, no images.
#pragma once

#include <string_view>

namespace derp::server {

// Starts with "<h2>Status</h2>"-carrying markup; ends before derper's closing </body>.
extern const std::string_view kStatusSection;

}  // namespace derp::server
