#pragma once
// Charts as inline SVG text: line charts (learning curves, reliability
// diagrams) and heat maps (expert utilization). Written here rather than
// taken from a library because Debian packages no C++ plotting library that
// emits standalone SVG, and the report must be one self-contained file that
// reads without JavaScript. The output is well-formed XML (the report test
// parses it as XHTML). No torch.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mtrank::report {

// Escapes text for XML/HTML content and attribute values.
std::string escape(std::string_view text);
// A number for people: 4 significant digits, "-" if not finite.
std::string format_number(double value, int significant = 4);
// Round tick values covering [lo, hi], about `target` of them (1, 2 or 5 times a power of ten apart).
std::vector<double> nice_ticks(double lo, double hi, int target = 5);
// The i-th color of a palette that stays distinguishable for the color-blind (Okabe-Ito).
const char* palette(std::size_t i);

struct Series {
  std::string name;
  std::vector<double> x, y;  // equal length; points with a non-finite value are gaps
  std::string color;
  bool dashed = false;
  bool markers = false;  // a dot at each point (besides the line)
};

struct LineChart {
  std::string title, x_label, y_label;
  std::vector<Series> series;
  std::optional<double> x_marker;  // a dashed vertical line (the best epoch), labelled
  std::string x_marker_label;
  // Reliability diagram: both axes from 0 to the same upper end, with the
  // diagonal y = x that a calibrated model follows.
  bool identity = false;
  bool integer_x = false;  // epochs: ticks on whole numbers only
};
std::string render_line_chart(const LineChart& chart);

struct HeatMap {
  std::string title;
  std::vector<std::string> rows, columns;
  std::vector<std::vector<double>> values;  // [rows][columns], in [0, 1] (gate weights); the color scale is 0..max
};
std::string render_heat_map(const HeatMap& map);

}  // namespace mtrank::report
