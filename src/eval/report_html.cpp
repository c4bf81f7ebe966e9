// report_html (stepaudio/eval.h): one self-contained page. The report JSON is embedded in a
// <script type="application/json"> block and inline script draws the tables and the SVG charts
// from it, so the page opens from disk with no network and shows exactly report.json's numbers.
// The JSON is embedded with '<', '>', '&' and '/' escaped (valid JSON escapes, all inside strings),
// so no text in it can close the script block and no URL appears literally in the page.
#include <string>

#include "stepaudio/eval.h"

namespace stepaudio::eval {
namespace {

constexpr const char* kHead = R"html(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>stepaudio eval report</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1180px;color:#1f2937;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}
h2{font-size:17px;margin-top:28px;border-bottom:1px solid #e5e7eb;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid #e5e7eb;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f9fafb} td.num{text-align:right;font-variant-numeric:tabular-nums}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:16px}
figure{margin:0;border:1px solid #e5e7eb;border-radius:6px;padding:8px}
figcaption{font-weight:600;margin-bottom:4px}
svg text{font:11px system-ui,sans-serif;fill:#374151}
#meta{overflow-wrap:anywhere} .err{color:#b91c1c} .muted{color:#6b7280} .small{font-size:12px}
</style></head><body>
<h1>stepaudio eval</h1>
<p id="meta" class="muted"></p>
<noscript><p>This page draws its tables and charts with inline JavaScript; the same numbers are in
report.json and report.md.</p></noscript>
<h2>Summary</h2><div id="summary"></div>
<h2>Cost</h2><div id="cost"></div>
<h2>Charts</h2>
<div class="charts">
<figure><figcaption>Latency distribution (wall time per request)</figcaption><div class="chart" id="chart-latency"></div></figure>
<figure><figcaption>Latency per stage (p50 and p95)</figcaption><div class="chart" id="chart-stages"></div></figure>
<figure><figcaption>Error rate per item</figcaption><div class="chart" id="chart-items"></div></figure>
<figure><figcaption>Emotion confusion matrix (rows: expected, columns: predicted)</figcaption><div class="chart" id="chart-confusion"></div></figure>
<figure><figcaption>Cost per audio hour</figcaption><div class="chart" id="chart-cost"></div></figure>
</div>
<h2>Items</h2><div id="items"></div>
<script type="application/json" id="report-data">)html";

constexpr const char* kScript = R"html(</script>
<script>
(function () {
"use strict";
var R = JSON.parse(document.getElementById("report-data").textContent);
var KEYS = Object.keys(R.systems);
var COLORS = ["#2563eb", "#f59e0b", "#10b981", "#ef4444"];
var ESC = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;"};
function esc(s) { return String(s).replace(/[&<>"']/g, function (c) { return ESC[c]; }); }
function pct(v) { return v == null ? "n/a" : (100 * v).toFixed(2) + "%"; }
function secs(ms) { return ms == null ? "n/a" : (ms / 1000).toFixed(2) + " s"; }
function fix(v, d) { return v == null ? "n/a" : Number(v).toFixed(d); }
function money(v) {
  if (v == null) return "n/a";
  if (!(v > 0)) return "$0";
  var d = Math.max(2, 2 - Math.floor(Math.log10(v)));
  return "$" + v.toFixed(Math.min(d, 12));
}
function table(head, rows) {
  var h = "<table><tr>" + head.map(function (c) { return "<th>" + esc(c) + "</th>"; }).join("") + "</tr>";
  rows.forEach(function (r) {
    h += "<tr>" + r.map(function (c) {
      var cls = typeof c === "number" ? " class=\"num\"" : "";
      return "<td" + cls + ">" + esc(c) + "</td>";
    }).join("") + "</tr>";
  });
  return h + "</table>";
}
function rateCell(a) {
  if (!a) return "n/a";
  return pct(a.rate) + " (S " + a.substitutions + ", D " + a.deletions + ", I " + a.insertions +
         " of " + a.reference_units + ")";
}

/* ---- tables ---- */
document.getElementById("meta").textContent = "Manifest " + R.manifest + " \u00b7 " + R.items_total +
    " items \u00b7 created " + R.created + " \u00b7 options " + JSON.stringify(R.options);
(function summary() {
  var rows = [];
  function row(name, f) { rows.push([name].concat(KEYS.map(function (k) { return f(R.systems[k]); }))); }
  row("items ok / failed", function (s) { return s.items_ok + " / " + s.items_failed; });
  ["cer", "wer", "mer"].forEach(function (u) {
    if (!KEYS.some(function (k) { return R.systems[k].accuracy[u]; })) return;
    row(u.toUpperCase() + " corpus (S, D, I of N)", function (s) { return rateCell(s.accuracy[u]); });
  });
  row("emotion accuracy", function (s) {
    return s.emotion ? s.emotion.correct + " / " + s.emotion.items + " (" + pct(s.emotion.accuracy) + ")" : "n/a";
  });
  row("summary ROUGE-L F1", function (s) { return s.summary ? fix(s.summary.rouge_l_f1_mean, 3) : "n/a"; });
  row("latency p50 / p95 (wall)", function (s) {
    var w = s.latency_ms.wall; return w ? secs(w.p50) + " / " + secs(w.p95) : "n/a";
  });
  row("real-time factor", function (s) { return fix(s.rtf, 3); });
  row("cost per audio hour", function (s) { return s.cost ? money(s.cost.per_audio_hour) : "n/a"; });
  document.getElementById("summary").innerHTML = table([""].concat(KEYS.map(function (k) {
    return k + ": " + R.systems[k].name; })), rows);
  document.getElementById("cost").innerHTML = R.cost_table.length ? table(
      ["system", "basis", "price", "per request", "per audio hour", "total"],
      R.cost_table.map(function (c) {
        var price = c.price_per_hour != null ? money(c.price_per_hour) + " / hour"
                                             : money(c.price_per_audio_minute) + " / audio minute";
        return [c.system + ": " + c.name, c.basis, price, money(c.per_request), money(c.per_audio_hour), money(c.total)];
      })) : "<p class=\"muted\">No prices given (--price-per-hour).</p>";
})();
(function items() {
  var head = ["#", "path", "lang", "reference"];
  KEYS.forEach(function (k) { head.push(k + " transcript", k + " rate", k + " wall"); });
  var rows = R.items.map(function (it) {
    var r = [it.index + 1, it.path, it.lang, it.reference == null ? "" : it.reference];
    KEYS.forEach(function (k) {
      var o = it[k];
      if (!o.ok) { r.push("error [" + o.error.code + "]: " + o.error.message, "n/a", "n/a"); return; }
      var t = o.transcript == null ? "" : o.transcript;
      if (t.length > 400) t = t.slice(0, 400) + "\u2026 (" + t.length + " characters: report.json has all)";
      if (o.emotion != null && it.emotion_label != null) t += " [emotion " + o.emotion + ", expected " + it.emotion_label + "]";
      r.push(t, o.score ? pct(o.score.rate) + " " + o.score.unit : "n/a", secs(o.wall_ms));
    });
    return r;
  });
  document.getElementById("items").innerHTML = "<div class=\"small\">" + table(head, rows) + "</div>";
})();

/* ---- charts: SVG markup from the data; data-marks counts the drawn bars and cells ---- */
var W = 520, H = 260, PAD = {l: 54, r: 12, t: 14, b: 44};
function svg(body, marks, h) {
  h = h || H;
  return "<svg width=\"" + W + "\" height=\"" + h + "\" viewBox=\"0 0 " + W + " " + h +
         "\" role=\"img\" data-marks=\"" + marks + "\">" + body + "</svg>";
}
function empty(id, why) {
  document.getElementById(id).innerHTML = svg("<text x=\"" + W / 2 + "\" y=\"" + H / 2 +
      "\" text-anchor=\"middle\">" + esc(why) + "</text>", 0);
}
function axes(yMax, yFmt) {
  var b = "", x0 = PAD.l, y0 = H - PAD.b, x1 = W - PAD.r;
  b += "<path d=\"M" + x0 + " " + PAD.t + "V" + y0 + "H" + x1 + "\" stroke=\"#9ca3af\" fill=\"none\"/>";
  for (var i = 0; i <= 4; i++) {
    var v = yMax * i / 4, y = y0 - (y0 - PAD.t) * i / 4;
    b += "<text x=\"" + (x0 - 4) + "\" y=\"" + (y + 4) + "\" text-anchor=\"end\">" + esc(yFmt(v)) + "</text>";
  }
  return b;
}
function legend(names) {
  return names.map(function (n, i) {
    var x = PAD.l + 8 + i * 150;
    return "<rect x=\"" + x + "\" y=\"2\" width=\"10\" height=\"10\" fill=\"" + COLORS[i % 4] +
           "\" class=\"legend\"/><text x=\"" + (x + 14) + "\" y=\"11\">" + esc(n) + "</text>";
  }).join("");
}
/* groups: [{label, values: [number|null per series]}] as grouped vertical bars */
function bars(id, groups, series, yFmt, extra) {
  var yMax = 0;
  groups.forEach(function (g) { g.values.forEach(function (v) { if (v != null && v > yMax) yMax = v; }); });
  if (!(yMax > 0)) yMax = 1;
  var x0 = PAD.l, y0 = H - PAD.b, plotW = W - PAD.l - PAD.r, plotH = y0 - PAD.t;
  var gw = plotW / groups.length, bw = Math.max(1, gw * 0.8 / series.length), marks = 0;
  var body = axes(yMax, yFmt) + legend(series);
  var every = Math.ceil(groups.length / 16);
  groups.forEach(function (g, gi) {
    g.values.forEach(function (v, si) {
      if (v == null) return;
      var h = plotH * v / yMax, x = x0 + gi * gw + gw * 0.1 + si * bw;
      body += "<rect x=\"" + x.toFixed(1) + "\" y=\"" + (y0 - h).toFixed(1) + "\" width=\"" +
              bw.toFixed(1) + "\" height=\"" + h.toFixed(1) + "\" fill=\"" + COLORS[si % 4] +
              "\"><title>" + esc(g.label + " " + series[si] + ": " + yFmt(v)) + "</title></rect>";
      marks++;
    });
    if (gi % every === 0)
      body += "<text x=\"" + (x0 + gi * gw + gw / 2).toFixed(1) + "\" y=\"" + (y0 + 14) +
              "\" text-anchor=\"middle\">" + esc(g.short != null ? g.short : g.label) + "</text>";
  });
  if (extra) body += extra(yMax, x0, y0, plotW, plotH);
  document.getElementById(id).innerHTML = svg(body, marks);
}

(function latency() {
  var lists = KEYS.map(function (k) {
    return R.items.filter(function (it) { return it[k].ok; }).map(function (it) { return it[k].wall_ms; });
  });
  var all = [].concat.apply([], lists);
  if (!all.length) return empty("chart-latency", "no successful requests");
  var lo = Math.min.apply(null, all), hi = Math.max.apply(null, all), nb = 12;
  if (hi <= lo) hi = lo + 1;
  var bw = (hi - lo) / nb, groups = [];
  for (var b = 0; b < nb; b++) {
    groups.push({label: secs(lo + b * bw) + "\u2013" + secs(lo + (b + 1) * bw),
                 short: b % 3 === 0 ? (lo + b * bw) / 1000 >= 10 ? ((lo + b * bw) / 1000).toFixed(0) + "s" : ((lo + b * bw) / 1000).toFixed(2) + "s" : "",
                 values: lists.map(function (l) {
                   return l.filter(function (v) { return Math.min(nb - 1, Math.floor((v - lo) / bw)) === b; }).length;
                 })});
  }
  bars("chart-latency", groups, KEYS, function (v) { return v.toFixed(v < 10 ? 1 : 0); },
       function (yMax, x0, y0, plotW, plotH) {
         var s = "";
         KEYS.forEach(function (k, si) {
           var w = R.systems[k].latency_ms.wall;
           if (!w || w.p50 == null) return;
           [["p50", w.p50, ""], ["p95", w.p95, "4 3"]].forEach(function (p) {
             var x = x0 + plotW * (p[1] - lo) / (hi - lo);
             s += "<path d=\"M" + x.toFixed(1) + " " + (y0 - plotH) + "V" + y0 + "\" stroke=\"#111827\" stroke-width=\"1.5\"" +
                  " stroke-dasharray=\"" + p[2] + "\" class=\"marker\"><title>" + esc(k + " " + p[0] + " " + secs(p[1])) +
                  "</title></path><text x=\"" + (x + 3).toFixed(1) + "\" y=\"" + (y0 - plotH + 10 + 12 * si) + "\">" +
                  esc((KEYS.length > 1 ? k + " " : "") + p[0]) + "</text>";
           });
         });
         return s + "<text x=\"" + (x0 + plotW / 2) + "\" y=\"" + (y0 + 32) + "\" text-anchor=\"middle\">" +
                "wall time per request (lines: p50 solid, p95 dashed); bars: requests</text>";
       });
})();

(function stages() {
  var k = KEYS.filter(function (k) { return Object.keys(R.systems[k].latency_ms).length > 1; })[0] || KEYS[0];
  var lat = k ? R.systems[k].latency_ms : {};
  var names = Object.keys(lat);
  if (!names.length) return empty("chart-stages", "no timings");
  bars("chart-stages", names.map(function (n) { return {label: n, values: [lat[n].p50, lat[n].p95]}; }),
       [k + " p50", k + " p95"], function (v) { return v >= 1000 ? (v / 1000).toFixed(1) + "s" : v.toFixed(0) + "ms"; });
})();

(function perItem() {
  var scored = R.items.filter(function (it) { return KEYS.some(function (k) { return it[k].ok && it[k].score; }); });
  if (!scored.length) return empty("chart-items", "no scored items (no references)");
  bars("chart-items", scored.map(function (it) {
    return {label: "#" + (it.index + 1) + " " + it.path, short: "#" + (it.index + 1),
            values: KEYS.map(function (k) { var o = it[k]; return o.ok && o.score && o.score.rate != null ? o.score.rate : null; })};
  }), KEYS.map(function (k) { return k + " (" + ["cer", "wer", "mer"].filter(function (u) {
    return R.systems[k].accuracy[u]; }).join("/") + ")"; }), function (v) { return (100 * v).toFixed(0) + "%"; });
})();

(function confusion() {
  var k = KEYS.filter(function (k) { return R.systems[k].emotion; })[0];
  if (!k) return empty("chart-confusion", "no emotion labels (or a system without emotion)");
  var e = R.systems[k].emotion, n = e.labels.length, max = 1, marks = 0;
  e.confusion.forEach(function (r) { r.forEach(function (v) { if (v > max) max = v; }); });
  var x0 = 110, y0 = 24, size = Math.min(44, (W - x0 - 10) / n), h = y0 + n * size + 90, body = "";
  for (var i = 0; i < n; i++) {
    body += "<text x=\"" + (x0 - 6) + "\" y=\"" + (y0 + i * size + size / 2 + 4) + "\" text-anchor=\"end\">" + esc(e.labels[i]) + "</text>";
    var cx = x0 + i * size + size / 2, cy = y0 + n * size + 8;
    body += "<text transform=\"translate(" + cx + "," + cy + ") rotate(45)\">" + esc(e.labels[i]) + "</text>";
    for (var j = 0; j < n; j++) {
      var v = e.confusion[i][j], a = v / max;
      body += "<rect x=\"" + (x0 + j * size) + "\" y=\"" + (y0 + i * size) + "\" width=\"" + size + "\" height=\"" + size +
              "\" fill=\"rgba(37,99,235," + (0.08 + 0.85 * a).toFixed(2) + ")\" stroke=\"" + (i === j ? "#111827" : "#e5e7eb") +
              "\"><title>" + esc("expected " + e.labels[i] + ", predicted " + e.labels[j] + ": " + v) + "</title></rect>" +
              "<text x=\"" + (x0 + j * size + size / 2) + "\" y=\"" + (y0 + i * size + size / 2 + 4) + "\" text-anchor=\"middle\">" + v + "</text>";
      marks++;
    }
  }
  body += "<text x=\"" + x0 + "\" y=\"14\">" + esc(k + ": accuracy " + pct(e.accuracy) + " over " + e.items + " items") + "</text>";
  document.getElementById("chart-confusion").innerHTML = svg(body, marks, h);
})();

(function cost() {
  var rows = R.cost_table.filter(function (c) { return c.per_audio_hour != null; });
  if (!rows.length) return empty("chart-cost", "no prices (give --price-per-hour)");
  var max = Math.max.apply(null, rows.map(function (c) { return c.per_audio_hour; })) || 1;
  var x0 = 90, bh = 28, body = "", marks = 0, h = 30 + rows.length * (bh + 12);
  rows.forEach(function (c, i) {
    var w = (W - x0 - 90) * c.per_audio_hour / max, y = 16 + i * (bh + 12);
    body += "<text x=\"" + (x0 - 6) + "\" y=\"" + (y + bh / 2 + 4) + "\" text-anchor=\"end\">" + esc(c.system) + "<title>" + esc(c.name) + "</title></text>" +
            "<rect x=\"" + x0 + "\" y=\"" + y + "\" width=\"" + Math.max(1, w).toFixed(1) + "\" height=\"" + bh + "\" fill=\"" + COLORS[i % 4] +
            "\"><title>" + esc(money(c.per_audio_hour) + " per audio hour") + "</title></rect>" +
            "<text x=\"" + (x0 + Math.max(1, w) + 6).toFixed(1) + "\" y=\"" + (y + bh / 2 + 4) + "\">" + esc(money(c.per_audio_hour)) + "</text>";
    marks++;
  });
  document.getElementById("chart-cost").innerHTML = svg(body, marks, h);
})();
document.body.setAttribute("data-rendered", "1");
})();
</script>
</body></html>
)html";

// JSON for a <script> block: these characters only occur inside JSON strings, where the escapes
// are equivalent.
std::string embeddable(const std::string& json) {
  std::string out;
  out.reserve(json.size() + json.size() / 16);
  for (char c : json) {
    switch (c) {
      case '<':
        out += "\\u003c";
        break;
      case '>':
        out += "\\u003e";
        break;
      case '&':
        out += "\\u0026";
        break;
      case '/':
        out += "\\/";
        break;
      default:
        out += c;
    }
  }
  return out;
}

}  // namespace

std::string report_html(const std::string& report_json) {
  return std::string(kHead) + embeddable(report_json) + kScript;
}

}  // namespace stepaudio::eval
