#include "report/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>

namespace mtrank::report {

namespace {

// The length of the valid UTF-8 sequence at text[i] that XML 1.0 allows (no
// surrogates, no U+FFFE or U+FFFF), or 0.
std::size_t xml_utf8_length(std::string_view text, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char b = byte(i);
  std::size_t n = b >= 0xF0 && b <= 0xF4 ? 4 : b >= 0xE0 ? 3 : b >= 0xC2 && b < 0xE0 ? 2 : 0;
  if (b >= 0xF5 || n == 0 || i + n > text.size()) return 0;
  std::uint32_t cp = b & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
  for (std::size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  const std::uint32_t min = n == 2 ? 0x80 : n == 3 ? 0x800 : 0x10000;
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || cp == 0xFFFE || cp == 0xFFFF) return 0;
  return n;
}

}  // namespace

std::string escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default:
        if (static_cast<unsigned char>(c) >= 0x80) {
          // A file name in Latin-1 is not UTF-8, and one bad byte makes the
          // whole page unreadable as XML: U+FFFD stands in for it.
          const std::size_t n = xml_utf8_length(text, i);
          if (n == 0) {
            out += "\xEF\xBF\xBD";
          } else {
            out.append(text.substr(i, n));
            i += n - 1;
          }
        } else if (static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t') {
          out += "?";  // control characters are not allowed in XML 1.0 at all
        } else {
          out += c;
        }
    }
  }
  return out;
}

std::string format_number(double value, int significant) {
  if (!std::isfinite(value)) return "-";
  char buf[64];
  const double mag = std::fabs(value);
  if (mag != 0 && (mag >= 1e6 || mag < 1e-4)) std::snprintf(buf, sizeof buf, "%.*e", std::max(significant - 1, 0), value);
  else std::snprintf(buf, sizeof buf, "%.*g", significant, value);
  return buf;
}

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) return {};
  if (hi < lo) std::swap(lo, hi);
  // A range within rounding of one value (a loss flat at ln 2, to the last
  // bits) has no ticks between its ends: the value itself.
  if (hi - lo <= 1e-12 * std::max({std::fabs(lo), std::fabs(hi), 1e-300})) return {lo};
  const double raw = (hi - lo) / std::max(target, 1);
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  double step = power;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * power >= raw) {
      step = m * power;
      break;
    }
  std::vector<double> ticks;
  const double first = std::ceil(lo / step - 1e-9);
  // Indexed, not accumulated: t += step could stop moving; at most ~target + 2 ticks.
  for (int k = 0; k < 4 * std::max(target, 1) + 4; ++k) {
    const double t = (first + k) * step;
    if (t > hi + step * 1e-9) break;
    ticks.push_back(std::fabs(t) < step * 1e-9 ? 0.0 : t);
  }
  return ticks;
}

const char* palette(std::size_t i) {
  static const char* const kColors[] = {"#0072B2", "#E69F00", "#009E73", "#D55E00",
                                        "#CC79A7", "#56B4E9", "#F0E442", "#000000"};
  return kColors[i % (sizeof kColors / sizeof kColors[0])];
}

namespace {

constexpr double kWidth = 460, kHeight = 290;
constexpr double kLeft = 62, kRight = 14, kTop = 30, kBottom = 44;
constexpr double kLegendRow = 16;

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

struct Range {
  double lo = std::numeric_limits<double>::infinity(), hi = -std::numeric_limits<double>::infinity();
  void add(double v) {
    if (!std::isfinite(v)) return;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  bool empty() const { return lo > hi; }
  // Widens a degenerate range (one value, to rounding) so that a flat line sits mid-plot.
  void pad() {
    if (empty()) lo = 0, hi = 1;
    if (hi - lo <= 1e-12 * std::max({std::fabs(lo), std::fabs(hi), 1e-300})) {
      const double d = lo == 0 ? 1 : std::fabs(lo) * 0.05;
      lo -= d;
      hi += d;
    }
  }
};

}  // namespace

std::string render_line_chart(const LineChart& chart) {
  Range xr, yr;
  for (const Series& s : chart.series)
    for (std::size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i)
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) {
        xr.add(s.x[i]);
        yr.add(s.y[i]);
      }
  if (chart.identity) {
    // Both axes 0..top, top rounded up to a tenth: the diagonal is the calibrated model.
    double top = std::max(xr.empty() ? 0.0 : xr.hi, yr.empty() ? 0.0 : yr.hi);
    top = std::min(1.0, std::max(0.1, std::ceil(top * 10 - 1e-9) / 10));
    xr = {0, top};
    yr = {0, top};
  } else {
    xr.pad();
    yr.pad();
  }
  std::vector<double> xt = nice_ticks(xr.lo, xr.hi, chart.integer_x ? std::min<int>(6, static_cast<int>(xr.hi - xr.lo) + 1) : 5);
  if (chart.integer_x) {
    std::vector<double> whole;
    for (double t : xt)
      if (std::fabs(t - std::round(t)) < 1e-9) whole.push_back(std::round(t));
    xt = whole;
  }
  if (!chart.identity) {
    // The y axis ends on ticks that enclose the data.
    const std::vector<double> rough = nice_ticks(yr.lo, yr.hi, 5);
    if (rough.size() > 1) {
      const double step = rough[1] - rough[0];
      yr.lo = std::floor(yr.lo / step + 1e-9) * step;
      yr.hi = std::ceil(yr.hi / step - 1e-9) * step;
    }
  }
  const std::vector<double> y_ticks = nice_ticks(yr.lo, yr.hi, 5);
  const double legend_height = 8 + kLegendRow * static_cast<double>((chart.series.size() + 1) / 2);
  const double height = kHeight + legend_height;
  const double plot_w = kWidth - kLeft - kRight, plot_h = kHeight - kTop - kBottom;
  auto px = [&](double x) { return kLeft + (x - xr.lo) / (xr.hi - xr.lo) * plot_w; };
  auto py = [&](double y) { return kTop + plot_h - (y - yr.lo) / (yr.hi - yr.lo) * plot_h; };

  std::string s;
  s += "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" viewBox=\"0 0 " + num(kWidth) + " " + num(height) +
       "\" width=\"" + num(kWidth) + "\" height=\"" + num(height) + "\" role=\"img\" aria-label=\"" +
       escape(chart.title) + "\">\n";
  s += "<title>" + escape(chart.title) + "</title>\n";
  s += "<text class=\"chart-title\" x=\"" + num(kWidth / 2) + "\" y=\"18\" text-anchor=\"middle\">" +
       escape(chart.title) + "</text>\n";
  // Grid and ticks.
  for (double t : y_ticks) {
    if (t < yr.lo - 1e-12 || t > yr.hi + 1e-12) continue;
    s += "<line class=\"grid\" x1=\"" + num(kLeft) + "\" x2=\"" + num(kLeft + plot_w) + "\" y1=\"" + num(py(t)) +
         "\" y2=\"" + num(py(t)) + "\"/>\n";
    s += "<text class=\"tick\" x=\"" + num(kLeft - 6) + "\" y=\"" + num(py(t) + 4) + "\" text-anchor=\"end\">" +
         escape(format_number(t)) + "</text>\n";
  }
  for (double t : xt) {
    if (t < xr.lo - 1e-12 || t > xr.hi + 1e-12) continue;
    s += "<line class=\"grid\" x1=\"" + num(px(t)) + "\" x2=\"" + num(px(t)) + "\" y1=\"" + num(kTop) + "\" y2=\"" +
         num(kTop + plot_h) + "\"/>\n";
    s += "<text class=\"tick\" x=\"" + num(px(t)) + "\" y=\"" + num(kTop + plot_h + 16) + "\" text-anchor=\"middle\">" +
         escape(format_number(t)) + "</text>\n";
  }
  s += "<rect class=\"frame\" x=\"" + num(kLeft) + "\" y=\"" + num(kTop) + "\" width=\"" + num(plot_w) +
       "\" height=\"" + num(plot_h) + "\"/>\n";
  s += "<text class=\"axis-label\" x=\"" + num(kLeft + plot_w / 2) + "\" y=\"" + num(kTop + plot_h + 34) +
       "\" text-anchor=\"middle\">" + escape(chart.x_label) + "</text>\n";
  s += "<text class=\"axis-label\" transform=\"translate(14 " + num(kTop + plot_h / 2) +
       ") rotate(-90)\" text-anchor=\"middle\">" + escape(chart.y_label) + "</text>\n";
  if (chart.identity)
    s += "<line class=\"diagonal\" x1=\"" + num(px(0)) + "\" y1=\"" + num(py(0)) + "\" x2=\"" + num(px(xr.hi)) +
         "\" y2=\"" + num(py(yr.hi)) + "\"/>\n";
  if (chart.x_marker && *chart.x_marker >= xr.lo && *chart.x_marker <= xr.hi) {
    const double x = px(*chart.x_marker);
    s += "<line class=\"marker\" x1=\"" + num(x) + "\" x2=\"" + num(x) + "\" y1=\"" + num(kTop) + "\" y2=\"" +
         num(kTop + plot_h) + "\"/>\n";
    s += "<text class=\"marker-label\" x=\"" + num(x + 3) + "\" y=\"" + num(kTop + 11) + "\">" +
         escape(chart.x_marker_label) + "</text>\n";
  }
  // Series: one polyline per run of finite points.
  for (const Series& series : chart.series) {
    const std::string style = " stroke=\"" + escape(series.color) + "\"" + (series.dashed ? " stroke-dasharray=\"5 3\"" : "");
    s += "<g class=\"series\" data-series=\"" + escape(series.name) + "\">\n";
    std::string points;
    auto flush = [&] {
      if (!points.empty())
        s += "<polyline class=\"line\" fill=\"none\"" + style + " points=\"" + points + "\"/>\n";
      points.clear();
    };
    for (std::size_t i = 0; i < std::min(series.x.size(), series.y.size()); ++i) {
      if (!std::isfinite(series.x[i]) || !std::isfinite(series.y[i])) {
        flush();
        continue;
      }
      points += (points.empty() ? "" : " ") + num(px(series.x[i])) + "," + num(py(series.y[i]));
      if (series.markers || series.x.size() == 1)
        s += "<circle class=\"point\" cx=\"" + num(px(series.x[i])) + "\" cy=\"" + num(py(series.y[i])) +
             "\" r=\"3\" fill=\"" + escape(series.color) + "\"><title>" + escape(series.name) + ": (" +
             escape(format_number(series.x[i])) + ", " + escape(format_number(series.y[i])) + ")</title></circle>\n";
    }
    flush();
    s += "</g>\n";
  }
  // Legend, two entries per row below the plot.
  for (std::size_t i = 0; i < chart.series.size(); ++i) {
    const double x = kLeft + static_cast<double>(i % 2) * (plot_w / 2);
    const double y = kHeight + 10 + kLegendRow * static_cast<double>(i / 2);
    s += "<line class=\"legend-swatch\" x1=\"" + num(x) + "\" x2=\"" + num(x + 18) + "\" y1=\"" + num(y - 4) +
         "\" y2=\"" + num(y - 4) + "\" stroke=\"" + escape(chart.series[i].color) + "\"" +
         (chart.series[i].dashed ? " stroke-dasharray=\"5 3\"" : "") + "/>\n";
    s += "<text class=\"legend\" x=\"" + num(x + 23) + "\" y=\"" + num(y) + "\">" + escape(chart.series[i].name) +
         "</text>\n";
  }
  s += "</svg>\n";
  return s;
}

std::string render_heat_map(const HeatMap& map) {
  constexpr double kCell = 34, kLabelWidth = 120, kHeader = 70, kTitle = 24;
  const double width = kLabelWidth + kCell * static_cast<double>(map.columns.size()) + 70;
  const double height = kTitle + kHeader + kCell * static_cast<double>(map.rows.size()) + 10;
  double top = 0;
  for (const auto& row : map.values)
    for (double v : row)
      if (std::isfinite(v)) top = std::max(top, v);
  if (top <= 0) top = 1;
  std::string s;
  s += "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart heat-map\" viewBox=\"0 0 " + num(width) + " " +
       num(height) + "\" width=\"" + num(width) + "\" height=\"" + num(height) + "\" role=\"img\" aria-label=\"" +
       escape(map.title) + "\">\n";
  s += "<title>" + escape(map.title) + "</title>\n";
  s += "<text class=\"chart-title\" x=\"4\" y=\"16\">" + escape(map.title) + "</text>\n";
  for (std::size_t c = 0; c < map.columns.size(); ++c) {
    const double x = kLabelWidth + kCell * (static_cast<double>(c) + 0.5);
    s += "<text class=\"tick\" transform=\"translate(" + num(x + 4) + " " + num(kTitle + kHeader - 6) +
         ") rotate(-60)\">" + escape(map.columns[c]) + "</text>\n";
  }
  for (std::size_t r = 0; r < map.rows.size(); ++r) {
    const double y = kTitle + kHeader + kCell * static_cast<double>(r);
    s += "<text class=\"tick\" x=\"" + num(kLabelWidth - 6) + "\" y=\"" + num(y + kCell / 2 + 4) +
         "\" text-anchor=\"end\">" + escape(map.rows[r]) + "</text>\n";
    for (std::size_t c = 0; c < map.columns.size(); ++c) {
      const double v = r < map.values.size() && c < map.values[r].size() ? map.values[r][c] : std::nan("");
      // White (0) to dark blue (the largest weight): sequential, readable in grey.
      const double t = std::isfinite(v) ? std::clamp(v / top, 0.0, 1.0) : 0;
      char fill[16];
      std::snprintf(fill, sizeof fill, "#%02x%02x%02x", static_cast<int>(255 - t * (255 - 8)),
                    static_cast<int>(255 - t * (255 - 48)), static_cast<int>(255 - t * (255 - 107)));
      const double x = kLabelWidth + kCell * static_cast<double>(c);
      s += "<rect class=\"cell\" x=\"" + num(x) + "\" y=\"" + num(y) + "\" width=\"" + num(kCell - 1) + "\" height=\"" +
           num(kCell - 1) + "\" fill=\"" + fill + "\"><title>" + escape(map.rows[r]) + ", " +
           escape(c < map.columns.size() ? map.columns[c] : "") + ": " + escape(format_number(v, 3)) +
           "</title></rect>\n";
      s += "<text class=\"cell-value\" x=\"" + num(x + kCell / 2) + "\" y=\"" + num(y + kCell / 2 + 4) +
           "\" text-anchor=\"middle\" fill=\"" + (t > 0.55 ? "#ffffff" : "#222222") + "\">" +
           escape(std::isfinite(v) ? std::to_string(static_cast<int>(std::lround(v * 100))) : "-") + "</text>\n";
    }
  }
  s += "<text class=\"tick\" x=\"" + num(kLabelWidth + kCell * static_cast<double>(map.columns.size()) + 8) +
       "\" y=\"" + num(kTitle + kHeader + 14) + "\">% of</text>\n";
  s += "<text class=\"tick\" x=\"" + num(kLabelWidth + kCell * static_cast<double>(map.columns.size()) + 8) +
       "\" y=\"" + num(kTitle + kHeader + 28) + "\">the gate</text>\n";
  s += "</svg>\n";
  return s;
}

}  // namespace mtrank::report
