#include "server/status_page.h"

namespace derp::server {

// Element ids and data-value attributes are what tests read (the exact figure, whatever the
// display rounds it to); data-updates on <body> counts the JSON documents shown.
const std::string_view kStatusSection = R"PAGE(<title>DERP relay status</title>
<style>
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
color:#1f2328;background:#f6f8fa;max-width:1000px;margin:0 auto;padding:24px 20px 40px}
h1{margin:0 0 4px;font-size:28px}
a{color:#0969da}
h2{font-size:20px;margin:26px 0 2px}
.ds-sub{color:#59636e;font-size:13px;margin:0 0 14px}
.ds-live{display:inline-block;width:8px;height:8px;border-radius:50%;background:#8c959f;
margin-right:6px;vertical-align:1px}
.ds-live.ok{background:#1a7f37}.ds-live.bad{background:#cf222e}
.ds-row{display:grid;grid-template-columns:repeat(auto-fit,minmax(200px,1fr));gap:12px;
margin-top:12px}
.ds-wide{grid-template-columns:repeat(auto-fit,minmax(300px,1fr));align-items:start}
.ds-col{display:grid;gap:12px}
.ds-card{background:#fff;border:1px solid #d1d9e0;border-radius:8px;padding:12px 14px}
.ds-k{font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:#59636e;
display:flex;justify-content:space-between}
.ds-v{font-size:26px;font-weight:600;font-variant-numeric:tabular-nums;margin-top:2px}
.ds-s{font-size:13px;color:#59636e}
.ds-chart svg{width:100%;height:130px;display:block;margin:6px 0 2px}
.ds-grid{stroke:#eaeef2;stroke-width:1;vector-effect:non-scaling-stroke}
.ds-line{fill:none;stroke-width:2;vector-effect:non-scaling-stroke;stroke-linejoin:round}
.ds-area{stroke:none;opacity:.14}
.ds-p .ds-line{stroke:#0969da}.ds-p .ds-area{fill:#0969da}
.ds-b .ds-line{stroke:#8250df}.ds-b .ds-area{fill:#8250df}
.ds-axis{display:flex;justify-content:space-between;font-size:12px;color:#8c959f}
.ds-card table{border-collapse:collapse;width:100%;margin-top:4px}
.ds-card td,.ds-card th{padding:4px 0;border-bottom:1px solid #eef1f4;text-align:left;
font-size:14px;font-weight:normal}
.ds-card th{color:#59636e;font-size:12px}
.ds-card td:first-child{white-space:nowrap;padding-right:12px}
.ds-card tr:last-child td{border-bottom:none}
.ds-n{text-align:right!important;font-variant-numeric:tabular-nums;white-space:nowrap}
.ds-zero{color:#8c959f}
.ds-url{display:block;font-size:12px;color:#8c959f;word-break:break-all}
.ds-badge{display:inline-block;padding:0 8px;border-radius:10px;font-size:12px;font-weight:600}
.ds-up{background:#dafbe1;color:#1a7f37}.ds-down{background:#ffebe9;color:#cf222e}
.ds-key{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px;
word-break:break-all;margin-top:4px}
</style>
<h2>Status</h2>
<p class="ds-sub"><span id="ds_live" class="ds-live"></span><span id="ds_state">Loading</span>
&middot; updated every second from <a href="/status.json">/status.json</a></p>
<div class="ds-row">
<div class="ds-card"><div class="ds-k">Clients</div><div class="ds-v" id="clients_total">&ndash;</div>
<div class="ds-s"><span id="clients_home">&ndash;</span> with this relay as home</div></div>
<div class="ds-card"><div class="ds-k">Delivered</div><div class="ds-v" id="rate_pps">&ndash;</div>
<div class="ds-s">packets/s &middot; <span id="rate_bps">&ndash;</span></div></div>
<div class="ds-card"><div class="ds-k">Dropped</div><div class="ds-v" id="packets_dropped">&ndash;</div>
<div class="ds-s">packets since start</div></div>
<div class="ds-card"><div class="ds-k">Uptime</div><div class="ds-v" id="uptime">&ndash;</div>
<div class="ds-s">libderp <span id="version">&ndash;</span></div></div>
</div>
<div class="ds-row ds-wide">
<div class="ds-card ds-chart ds-p" id="card_pps"><div class="ds-k"><span>Packets/s delivered</span>
<span id="chart_pps_max"></span></div></div>
<div class="ds-card ds-chart ds-b" id="card_bps"><div class="ds-k"><span>Bytes/s delivered</span>
<span id="chart_bps_max"></span></div></div>
</div>
<div class="ds-row ds-wide">
<div class="ds-col"><div class="ds-card"><div class="ds-k">Traffic since start</div><table>
<tr><th></th><th class="ds-n">packets</th><th class="ds-n">bytes</th></tr>
<tr><td>Received</td><td class="ds-n" id="packets_received"></td><td class="ds-n" id="bytes_received"></td></tr>
<tr><td>Sent</td><td class="ds-n" id="packets_sent"></td><td class="ds-n" id="bytes_sent"></td></tr>
</table></div>
<div class="ds-card"><div class="ds-k">Relay</div><table>
<tr><td>STUN requests</td><td class="ds-n" id="stun"></td></tr>
<tr><td>TLS certificate expiry</td><td class="ds-n" id="tls"></td></tr>
</table><div class="ds-k" style="margin-top:10px">Public key</div>
<div class="ds-key" id="server_key"></div></div></div>
<div class="ds-card"><div class="ds-k">Drops by reason</div><table id="drops"></table></div>
<div class="ds-card"><div class="ds-k"><span>Mesh peers</span><span id="mesh_count"></span></div>
<table id="mesh"></table></div>
</div>
<script>
(function () {
  "use strict";
  var W = 600, H = 120, updates = 0;
  function $(id) { return document.getElementById(id); }
  function num(n) { return Math.round(n).toLocaleString("en-US"); }
  function si(n, unit) {
    var p = ["", "k", "M", "G", "T"], i = 0;
    while (n >= 1000 && i < p.length - 1) { n /= 1000; i++; }
    return n.toFixed(i === 0 ? 0 : n < 10 ? 2 : n < 100 ? 1 : 0) + " " + p[i] + unit;
  }
  function rate(n) { return n > 0 && n < 10 ? n.toFixed(1) : num(n); }
  function bps(n) { return si(n, "B/s"); }
  function ago(s) {
    var d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
    if (d) return d + "d " + h + "h";
    return h ? h + "h " + m + "m" : m + "m " + (s % 60) + "s";
  }
  function put(id, value, text) {
    var e = $(id);
    e.setAttribute("data-value", value);
    e.textContent = text === undefined ? num(value) : text;
  }
  function cell(tr, text, cls) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }
  function top(series) {  // a round upper bound: 1, 2 or 5 times a power of ten
    var max = 1;
    series.forEach(function (v) { if (v > max) max = v; });
    var p = Math.pow(10, Math.floor(Math.log10(max))), f = max / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
  }
  function chart(id, series, cap, label) {
    var n = series.length, max = top(series), pts = [], svg = $(id);
    series.forEach(function (v, i) {
      var x = cap > 1 ? W * (cap - n + i) / (cap - 1) : W;
      pts.push(x.toFixed(1) + "," + (H - 1 - (H - 2) * v / max).toFixed(1));
    });
    svg.querySelector(".ds-line").setAttribute("points", pts.join(" "));
    svg.querySelector(".ds-area").setAttribute("points", n < 2 ? "" :
        pts[0].split(",")[0] + "," + H + " " + pts.join(" ") + " " + W + "," + H);
    svg.setAttribute("data-points", n);
    $(id + "_max").textContent = "scale " + label(max);
  }
  ["pps", "bps"].forEach(function (k) {  // both charts: an SVG with three grid lines
    var grid = [1, 60, 119].map(function (y) {
      return '<line class="ds-grid" x1="0" y1="' + y + '" x2="600" y2="' + y + '"/>';
    });
    $("card_" + k).insertAdjacentHTML("beforeend", '<svg id="chart_' + k +
        '" viewBox="0 0 600 120" preserveAspectRatio="none" data-points="0">' + grid.join("") +
        '<polygon class="ds-area" points=""/><polyline class="ds-line" points=""/></svg>' +
        '<div class="ds-axis"><span>5 min ago</span><span>now</span></div>');
  });
  function show(s) {
    put("clients_total", s.clients.total);
    put("clients_home", s.clients.home);
    put("rate_pps", s.rate.packets_per_second, rate(s.rate.packets_per_second));
    put("rate_bps", s.rate.bytes_per_second, bps(s.rate.bytes_per_second));
    put("packets_dropped", s.dropped.packets);
    put("uptime", s.uptime_seconds, ago(s.uptime_seconds));
    $("version").textContent = s.version;
    put("packets_received", s.received.packets);
    put("bytes_received", s.received.bytes, si(s.received.bytes, "B"));
    put("packets_sent", s.sent.packets);
    put("bytes_sent", s.sent.bytes, si(s.sent.bytes, "B"));
    chart("chart_pps", s.history.packets_per_second, s.history.capacity, rate);
    chart("chart_bps", s.history.bytes_per_second, s.history.capacity, bps);
    var rows = Object.keys(s.dropped.reasons).map(function (k) {
      var v = s.dropped.reasons[k], tr = document.createElement("tr");
      cell(tr, k.replace(/_/g, " "), v ? "" : "ds-zero");
      cell(tr, num(v), v ? "ds-n" : "ds-n ds-zero");
      return tr;
    });
    $("drops").replaceChildren.apply($("drops"), rows);
    rows = s.mesh.links.map(function (l, i) {
      var tr = document.createElement("tr"), name = cell(tr, l.name || "peer " + (i + 1));
      if (l.url && l.url !== l.name) {
        var u = document.createElement("span");
        u.className = "ds-url";
        u.textContent = l.url;
        name.appendChild(u);
      }
      var b = document.createElement("span");
      b.className = "ds-badge " + (l.up ? "ds-up" : "ds-down");
      b.textContent = l.up ? "up" : "down";
      cell(tr, "", "ds-n").appendChild(b);
      return tr;
    });
    if (!rows.length) {
      rows = [document.createElement("tr")];
      cell(rows[0], "none configured", "ds-zero");
    }
    $("mesh").replaceChildren.apply($("mesh"), rows);
    $("mesh_count").textContent = s.mesh.peers ? s.mesh.up + " of " + s.mesh.peers + " up" : "";
    put("stun", s.stun.requests, s.stun.enabled ? num(s.stun.requests) : "off");
    $("tls").textContent = !s.tls ? "no TLS" : s.tls.not_after.slice(0, 10) + " (" +
        Math.floor(s.tls.expires_in_seconds / 86400) + " days)";
    $("server_key").textContent = s.server_key;
  }
  function state(ok, text) {
    $("ds_live").className = "ds-live " + (ok ? "ok" : "bad");
    $("ds_state").textContent = text;
  }
  function tick() {
    var got = null;
    fetch("/status.json", {cache: "no-store"})
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (s) { got = s; },
            function (e) { state(false, "Relay unreachable (" + e.message + "), retrying"); })
      .then(function () {
        setTimeout(tick, 1000);
        if (!got) return;
        show(got);
        document.body.setAttribute("data-updates", ++updates);
        state(true, "Live");
        document.dispatchEvent(new Event("derp-status"));
      });
  }
  tick();
})();
</script>
)PAGE";

}  // namespace derp::server
