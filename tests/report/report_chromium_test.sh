#!/usr/bin/env bash
# `mtrank report` end to end: trains two models over two seeds with `compare`,
# writes the report, and renders it in headless Chromium (Debian's chromium,
# installed by scripts/setup.sh --tests). Checks from the rendered DOM that
# every plot is there and drawn, that the page parses as XML (XHTML: any
# malformed markup becomes a <parsererror>), and that the browser logged no
# error for the page.
set -euo pipefail
MTRANK=$1
command -v chromium >/dev/null ||
  { echo "FAIL: chromium is not installed (scripts/setup.sh --tests installs it)"; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
fail() { echo "FAIL: $*"; exit 1; }
chrome() { chromium --headless --no-sandbox --disable-gpu --user-data-dir="$WORK/profile" --hide-scrollbars "$@"; }

# Two models (single-task and MMoE) over two seeds, small and fast; and one model directory.
"$MTRANK" quickstart --dir qs --rows 4000 --threads 1 >qs.txt 2>qs.err || { cat qs.err; fail quickstart; }
grep -q "build/mtrank report qs/model --out qs/model-report.html" qs.txt || fail "quickstart's what-next lacks the report"
sed 's/^epochs = .*/epochs = 3/' qs/quickstart.toml >mmoe.toml
# The MMoE's keys that single_task does not take are dropped when the type changes.
printf 'extends = "mmoe.toml"\n[model]\ntype = "single_task"\n' >single_task.toml
"$MTRANK" compare single_task.toml mmoe.toml --seeds 1,2 --out-dir cmp --threads 1 \
  --train qs/train.csv --val qs/val.csv --test qs/test.csv >compare.txt 2>compare.err || { cat compare.err; fail compare; }

"$MTRANK" report cmp quick=qs/model --title "report test" --out report.html >report.txt 2>report.err ||
  { cat report.err; fail report; }
grep -q "wrote report.html: 5 runs of 3 models" report.txt || { cat report.txt; fail "report's summary line"; }
[ -s report.html ] || fail "no report.html"

# Rendered as XHTML: the XML parser refuses anything malformed.
cp report.html report.xhtml
chrome --dump-dom "file://$WORK/report.xhtml" >dom-xhtml.txt 2>chrome-xhtml.err || { cat chrome-xhtml.err; fail "chromium (xhtml)"; }
grep -q "parsererror" dom-xhtml.txt && { grep -m3 -A3 parsererror dom-xhtml.txt; fail "the report is not well-formed XML"; }
# Rendered as HTML, with the browser's console log on stderr.
chrome --enable-logging=stderr --v=0 --dump-dom "file://$WORK/report.html" >dom.html 2>chrome.err ||
  { cat chrome.err; fail "chromium (html)"; }
if grep -E "CONSOLE|Uncaught|Refused|net::ERR" chrome.err; then fail "the browser logged errors for the page"; fi
chrome --window-size=1100,3000 --screenshot="$WORK/report.png" "file://$WORK/report.html" >/dev/null 2>&1 ||
  fail "chromium screenshot"
[ "$(stat -c %s report.png)" -gt 20000 ] || fail "the screenshot is (nearly) blank"

python3 - <<'PY' || fail "rendered DOM"
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

# The XHTML rendering, parsed as XML: every plot there and drawn.
ns = {"h": "http://www.w3.org/1999/xhtml", "s": "http://www.w3.org/2000/svg"}
root = ET.parse("dom-xhtml.txt").getroot()
figures = root.findall(".//h:figure", ns)
kinds = {}
for f in figures:
    kind = f.get("data-plot")
    kinds.setdefault(kind, []).append(f)
    svgs = f.findall(".//s:svg", ns)
    assert svgs, f"a {kind} figure without a chart"
    for svg in svgs:
        marks = svg.findall(".//s:polyline", ns) + svg.findall(".//s:circle", ns) + svg.findall(".//s:rect[@class='cell']", ns)
        assert marks, f"an empty {kind} chart: {svg.get('aria-label')}"
# 3 models (single_task, mmoe, quick) x 3 tasks; reliability per binary task (click, like); experts where there are gates.
assert len(kinds.get("learning-curve", [])) == 9, {k: len(v) for k, v in kinds.items()}
assert len(kinds.get("calibration", [])) == 6, {k: len(v) for k, v in kinds.items()}
assert len(kinds.get("expert-utilization", [])) == 2, {k: len(v) for k, v in kinds.items()}
tasks = sorted({f.get("data-task") for f in kinds["learning-curve"]})
assert tasks == ["click", "like", "watch_time"], tasks
# Learning curves: each seed's train and validation lines (2 seeds x 2 lines in the compare models).
mmoe = [f for f in kinds["learning-curve"] if f.get("data-task") == "click"]
series = [g.get("data-series") for g in mmoe[0].findall(".//s:g[@class='series']", ns)]
assert "seed 1 train" in series and "seed 2 validation" in series, series
tables = root.findall(".//h:table[@data-plot='seesaw']", ns)
assert len(tables) == 1, "no seesaw table"
rows = tables[0].findall(".//h:tr", ns)
assert len(rows) == 4, len(rows)  # header + 3 models
verdicts = [r.findall("h:td", ns)[-1].text for r in rows[1:]]
assert verdicts.count("baseline") == 1, verdicts

# The HTML rendering: the title and every section survive the HTML parser too.
class Count(HTMLParser):
    def __init__(self):
        super().__init__()
        self.plots = 0
        self.title = ""
        self.in_h1 = False
    def handle_starttag(self, tag, attrs):
        if tag == "figure" and dict(attrs).get("data-plot"):
            self.plots += 1
        self.in_h1 = tag == "h1"
    def handle_endtag(self, tag):
        self.in_h1 = False
    def handle_data(self, data):
        if self.in_h1:
            self.title += data
c = Count()
c.feed(open("dom.html").read())
assert c.plots == 17, c.plots
assert c.title == "report test", c.title
PY

# Bad input: a clear error naming the path, and no report written.
echo '{"model": "mmoe"}' >bad.json
set +e
"$MTRANK" report bad.json --out bad.html >out.txt 2>err.txt
rc=$?
set -e
[ "$rc" -eq 3 ] || fail "a record without tasks: expected exit 3, got $rc"
grep -q "bad.json: key 'tasks' is missing" err.txt || { cat err.txt; fail "error names the file and key"; }
[ ! -e bad.html ] || fail "a failed report left a file behind"
echo "report_in_chromium: OK"
