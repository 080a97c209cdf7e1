#!/usr/bin/env bash
# End-to-end checks of the mtrank command line: real runs, real files, exit codes and messages.
set -euo pipefail
MTRANK=$1
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
fail() { echo "FAIL: $*"; exit 1; }
expect_error() {  # expect_error CODE PATTERN -- command...
  local code=$1 pattern=$2; shift 3
  set +e; "$@" >out.txt 2>err.txt; local rc=$?; set -e
  [ "$rc" -eq "$code" ] || { cat err.txt; fail "expected exit $code, got $rc: $*"; }
  grep -qF -- "$pattern" err.txt || { cat err.txt; fail "expected '$pattern' in stderr of: $*"; }
}

# quickstart: trains, prints metrics, writes a model and metrics JSON.
"$MTRANK" quickstart --dir qs --rows 20000 --threads 2 >qs.txt 2>qs.err || { cat qs.err; fail quickstart; }
grep -q "test metrics" qs.txt || fail "quickstart printed no test metrics"
grep -q "What next" qs.txt || fail "quickstart did not say what to run next"
for f in config.toml preprocess.json weights.pt meta.json; do [ -s "qs/model/$f" ] || fail "missing qs/model/$f"; done
python3 - <<'PY' || fail "metrics JSON"
import json
m = json.load(open("qs/metrics.json"))
t = m["tasks"]
assert set(t) == {"click", "like", "watch_time"}, t
assert 0.55 < t["click"]["auc"] <= 1 and t["click"]["count"] == 2000, t["click"]
assert "rmse" in t["watch_time"] and "mse" in t["watch_time"]
assert m["train_rows_per_s"] > 0 and m["epochs"] >= 1
# Every epoch's learning rate and validation metrics per task (the run record, issue 8).
h = m["history"]
assert len(h) == m["epochs"] and all(e["learning_rate"] > 0 for e in h), h[0]
assert set(h[0]["val"]) == {"click", "like", "watch_time"} and 0.5 < h[-1]["val"]["click"]["auc"] <= 1, h[-1]
assert abs(sum(e["val"]["click"]["count"] for e in h) / len(h) - m["splits"]["val"]["tasks"]["click"]["count"]) < 1e-9
PY

# eval on the test split reproduces the training run's test metrics.
"$MTRANK" eval --model qs/model --data qs/test.csv --metrics-out eval.json >/dev/null 2>&1 || fail eval
python3 - <<'PY' || fail "eval metrics differ from training metrics"
import json
a = json.load(open("qs/metrics.json"))["tasks"]; b = json.load(open("eval.json"))["tasks"]
for k in a:
    for m in ("auc", "logloss", "rmse"):
        if m in a[k]: assert abs(a[k][m] - b[k][m]) < 1e-9, (k, m, a[k][m], b[k][m])
PY

# predict: one row per input row, one column per task; labels not needed.
cut -d, -f1-7 qs/test.csv > nolabels.csv
"$MTRANK" predict --model qs/model --data nolabels.csv --out pred.csv 2>/dev/null || fail predict
[ "$(head -1 pred.csv)" = "click,like,watch_time" ] || fail "predict header: $(head -1 pred.csv)"
[ "$(wc -l < pred.csv)" = "$(wc -l < qs/test.csv)" ] || fail "predict row count"

# synth mmoe writes the documented columns.
"$MTRANK" synth mmoe --rows 100 --correlation 0.5 --seed 1 --dim 4 --out s.csv >/dev/null
[ "$(head -1 s.csv)" = "x0,x1,x2,x3,y1,y2" ] || fail "synth header"
[ "$(wc -l < s.csv)" = 101 ] || fail "synth rows"

# compare: two models over two seeds (the second call reuses the results), seesaw table against single_task.
printf 'extends = "quickstart.toml"\n[model]\ntype = "single_task"\nbottom_hidden = [32]\n[train]\nepochs = 2\n' > qs/single_task.toml
printf 'extends = "quickstart.toml"\n[model]\ntype = "cgc"\nspecific_experts = 1\nshared_experts = 1\n[train]\nepochs = 2\n' > qs/cgc.toml
"$MTRANK" compare qs/single_task.toml qs/cgc.toml --seeds 1,2 --out-dir cmp --threads 2 > cmp.txt 2>cmp.err || { cat cmp.err; fail compare; }
grep -q "^single_task .* baseline" cmp.txt || { cat cmp.txt; fail "compare baseline row"; }
grep -qE "^cgc .*(all tasks up|all tasks down|seesaw|within noise)" cmp.txt || { cat cmp.txt; fail "compare verdict"; }
grep -q "exceeds the larger seed spread" cmp.txt || fail "compare does not say how noise is decided"
[ -s cmp/compare.json ] && [ -s cmp/cgc/seed2.json ] || fail "compare outputs"
python3 - <<'PY' || fail "expert names by kind (issue 13.15)"
import json
c = json.load(open("cmp/cgc/seed1.json"))
assert c["expert_names"] == ["click:own0", "like:own0", "watch_time:own0", "shared0"], c.get("expert_names")
assert len(c["expert_utilization"][0]) == 4
assert c["expert_utilization"][0][1] == 0 and c["expert_utilization"][0][2] == 0  # click's gate cannot see like's expert
q = json.load(open("qs/metrics.json"))
assert q["expert_names"] == ["e0", "e1", "e2", "e3"], q.get("expert_names")
PY
"$MTRANK" eval --model cmp/cgc/seed1-model --data qs/test.csv > cgc_eval.txt 2>/dev/null || fail "eval cgc"
grep -q "click:own0 *like:own0 *watch_time:own0 *shared0" cgc_eval.txt || { cat cgc_eval.txt; fail "cgc utilization table names experts by kind"; }
"$MTRANK" compare qs/single_task.toml qs/cgc.toml --seeds 1,2 --out-dir cmp > cmp2.txt 2>cmp2.err
! grep -q "training" cmp2.err || fail "compare retrained instead of reusing results"
cmp -s cmp.txt cmp2.txt || fail "compare gave a different table from the same results"
# --gbdt: an xgboost row beside the models (trained models reused), one booster per task, reused on a re-run.
"$MTRANK" compare qs/single_task.toml qs/cgc.toml --seeds 1,2 --out-dir cmp --threads 2 --gbdt > cmp3.txt 2>cmp3.err || { cat cmp3.err; fail "compare --gbdt"; }
grep -qE "^xgboost .*(all tasks up|all tasks down|seesaw|within noise|some)" cmp3.txt || { cat cmp3.txt; fail "compare --gbdt row"; }
[ "$(grep -c "training xgboost" cmp3.err)" = 2 ] && ! grep -q "training single_task\|training cgc" cmp3.err || { cat cmp3.err; fail "compare --gbdt trained the wrong things"; }
python3 - <<'PY' || fail "compare --gbdt metrics"
import json
x = json.load(open("cmp/xgboost/seed1.json"))
assert set(x["trees"]) == {"click", "like", "watch_time"}, x["trees"]
assert x["categorical_features"] > 0 and x["tasks"]["click"]["auc"] > 0.6, x
assert "rmse" in x["tasks"]["watch_time"]
assert "xgboost" in json.load(open("cmp/compare.json"))["verdicts"]
PY
"$MTRANK" compare qs/single_task.toml qs/cgc.toml --seeds 1,2 --out-dir cmp --threads 2 --gbdt > cmp4.txt 2>cmp4.err
! grep -q "training" cmp4.err && cmp -s cmp3.txt cmp4.txt || fail "compare --gbdt did not reuse its trees"

# GAUC when a group column is configured (an overlay on the quickstart config).
printf '[data]\ngroup_column = "user_id"\n[train]\nepochs = 1\n' > qs/group.toml
"$MTRANK" train --config qs/quickstart.toml --config qs/group.toml --out grp --metrics-out grp.json --quiet >/dev/null 2>&1 || fail "train with group column"
python3 - <<'PY' || fail "gauc in metrics"
import json
t = json.load(open("grp.json"))["tasks"]
assert 0.5 < t["click"]["gauc"] < 1 and t["click"]["gauc_groups"] > 50, t["click"]
assert "gauc" not in t["watch_time"]
PY
# Configured ranking metrics per user (the group column), by name; an unknown name is a config error.
sed 's/^column = "click"$/column = "click"\nmetrics = ["ndcg@5", "recall@10", "mrr"]/' qs/quickstart.toml > qs/ranked.toml
"$MTRANK" train --config qs/ranked.toml --config qs/group.toml --out rnk --metrics-out rnk.json --quiet > rnk.txt 2>&1 || { cat rnk.txt; fail "train with ranking metrics"; }
python3 - <<'PY' || fail "ranking metrics in metrics"
import json
t = json.load(open("rnk.json"))["tasks"]
assert 0 < t["click"]["ndcg@5"] <= 1 and 0 < t["click"]["recall@10"] <= 1 and 0 < t["click"]["mrr"] <= 1, t["click"]
assert "mrr" not in t["like"]
PY
grep -q "ndcg@5 0\.[0-9]* recall@10" rnk.txt || { cat rnk.txt; fail "ranking metrics in the table"; }
sed 's/^column = "click"$/column = "click"\nmetrics = ["ndgc@5"]/' qs/quickstart.toml > qs/badmetric.toml
expect_error 2 "key 'tasks[0].metrics': unknown metric 'ndgc@5'; known: auc" -- "$MTRANK" train --config qs/badmetric.toml --out bad

# --resume continues from the checkpoint; a finished run leaves none behind.
[ ! -e qs/model.checkpoint ] || fail "finished run left a checkpoint"
expect_error 4 "no checkpoint to resume from" -- "$MTRANK" train --config qs/quickstart.toml --out qs/other --resume

# Bad input: clear messages, distinct non-zero exit codes, nothing half-written.
sed 's/^epochs = 8/epochs = 8\nlearning_rat = 1/' qs/quickstart.toml > typo.toml
expect_error 2 "unknown key 'train.learning_rat'" -- "$MTRANK" train --config typo.toml --out m1
[ ! -e m1 ] || fail "a failed run left a model directory"
printf '[serve]\nscore = "sum:click=1,likes=2"\n' > badscore.toml
expect_error 2 "key 'serve.score': score formula 'sum:click=1,likes=2': the model has no task 'likes'" -- \
  "$MTRANK" train --config qs/quickstart.toml --config badscore.toml --out m3
[ ! -e m3 ] || fail "a run with a bad score formula left a model directory"
printf 'user_id,item_id,item_category,device,user_interests,price,hour,click,like,watch_time\nu1,i1,c1,tv,c1,abc,3,0,,\n' > bad.csv
expect_error 3 "bad.csv:2: column 6 ('price'): 'abc' is not a finite number" -- \
  "$MTRANK" train --config qs/quickstart.toml --train bad.csv --out m2
: > empty.csv
expect_error 3 "empty.csv: file is empty" -- "$MTRANK" eval --model qs/model --data empty.csv
cp -r qs/model broken && head -c 100 qs/model/weights.pt > broken/weights.pt
expect_error 4 "weights.pt: does not match manifest.json" -- "$MTRANK" eval --model broken --data qs/test.csv
rm broken/manifest.json  # a model written before manifests: LibTorch's reader finds it
expect_error 4 "weights.pt: corrupt" -- "$MTRANK" eval --model broken --data qs/test.csv
grep -q "Exception raised from" err.txt && fail "a LibTorch stack trace reached the user"
expect_error 4 "not a directory" -- "$MTRANK" predict --model nowhere --data qs/test.csv --out p.csv
[ ! -e p.csv ] || fail "a failed predict left an output file"

# Issue 14.4: --out never deletes what is not a model directory, and exits non-zero.
mkdir -p userdir && echo precious > userdir/notes.txt && echo precious > userfile
expect_error 2 "exists and is not an mtrank model directory" -- \
  "$MTRANK" train --config qs/quickstart.toml --out userdir --quiet
[ "$(cat userdir/notes.txt)" = precious ] || fail "train --out deleted a user folder"
expect_error 2 "exists and is not an mtrank model directory" -- \
  "$MTRANK" train --config qs/quickstart.toml --out userfile --quiet
[ "$(cat userfile)" = precious ] || fail "train --out deleted a user file"
# Issue 13.7: bad output paths fail at once, in mtrank's words, before any training.
expect_error 2 "the folder $WORK/no/such does not exist" -- \
  "$MTRANK" train --config qs/quickstart.toml --out no/such/model --quiet
grep -q "epoch" err.txt && fail "a bad --out was found only after training"
grep -q "c10::\|Exception raised from" err.txt && fail "a LibTorch stack trace reached the user"
expect_error 2 "--metrics-out no/such/m.json: the folder" -- \
  "$MTRANK" train --config qs/quickstart.toml --out m4 --metrics-out no/such/m.json --quiet
[ ! -e m4 ] || fail "a run with a bad --metrics-out left a model"
expect_error 2 "--out no/p.csv: the folder" -- "$MTRANK" predict --model qs/model --data qs/test.csv --out no/p.csv
# Issue 13.14: --quiet hides progress, not the metric tables.
printf '[train]\nepochs = 1\n' > qs/one_epoch.toml
"$MTRANK" train --config qs/quickstart.toml --config qs/one_epoch.toml --out qm --quiet >quiet.txt 2>quiet.err || { cat quiet.err; fail "quiet train"; }
grep -q "test metrics" quiet.txt || fail "--quiet hid the metric tables"
grep -q "epoch 1/" quiet.err && fail "--quiet showed progress"
# Issue 13.2: a 'positive' that matches no training row is refused at fit time, naming the real values.
sed 's/^column = "click"$/column = "click"\npositive = ["yes"]/' qs/quickstart.toml > qs/typo_positive.toml
expect_error 2 "task 'click': the training data" -- "$MTRANK" train --config qs/typo_positive.toml --out m5 --quiet
grep -qF "has no positive rows" err.txt || { cat err.txt; fail "no-positive message"; }
grep -qF "positive = [\"yes\"]. The most frequent values of column 'click' are: '0' (" err.txt || { cat err.txt; fail "most frequent values"; }
# Issue 14.1: divergence stops with the epoch and step named; no model is written, and nothing hangs.
printf '[train]\nlearning_rate = 1e12\nepochs = 1\n' > diverge.toml
set +e; timeout 120 "$MTRANK" train --config qs/quickstart.toml --config diverge.toml --out m6 --quiet >out.txt 2>err.txt; rc=$?; set -e
[ "$rc" -ne 124 ] || fail "training with learning_rate = 1e12 hung"
[ "$rc" -ne 0 ] || fail "diverged training exited 0"
grep -qE "training diverged at epoch [0-9]+, step [0-9]+|validation loss is not a finite number" err.txt || { cat err.txt; fail "divergence message"; }
[ ! -e m6 ] || fail "a diverged run wrote a model"
printf '[train]\nlearning_rate = inf\n' > inf.toml
expect_error 2 "key 'train.learning_rate': must be a finite number" -- \
  "$MTRANK" train --config qs/quickstart.toml --config inf.toml --out m7
# Issue 14.13: sizes are bounded, and a model too large for memory is refused before allocating.
sed 's/^quantiles = 32/quantiles = 1000000000000/' qs/quickstart.toml > qs/huge_q.toml
expect_error 2 "key 'features[4].quantiles': must be at most 65536" -- "$MTRANK" train --config qs/huge_q.toml --out m8
sed 's/^hash_buckets = 64/hash_buckets = 4294967296/; s/^embedding_dim = 8/embedding_dim = 4096/' qs/quickstart.toml > qs/huge.toml
expect_error 2 "this model needs about" -- "$MTRANK" train --config qs/huge.toml --out m9 --quiet
grep -qF "the largest part is model.embedding_dim (4096)" err.txt || { cat err.txt; fail "memory estimate names the key"; }
# A FIFO as --train (read twice) is refused instead of hanging.
mkfifo fifo.csv
set +e; timeout 20 "$MTRANK" train --config qs/quickstart.toml --train fifo.csv --out m10 >out.txt 2>err.txt; rc=$?; set -e
[ "$rc" -eq 3 ] || { cat err.txt; fail "FIFO --train: exit $rc"; }
grep -qF "training data must be a regular file" err.txt || { cat err.txt; fail "FIFO message"; }
# A sequential (next-item) model: train from one `user item` log with
# --max-steps, metrics by width, eval on the saved model gives the same test
# metrics, and the mistakes are named with the config exit code.
python3 - <<'PY'
import random
random.seed(5)
with open("seq.txt", "w") as f:
    for u in range(120):
        item = random.randrange(30) + 1
        for e in range(15):
            f.write(f"{u} {item}\n")
            item = (7 * item + 3) % 30 + 1 if random.random() < 0.8 else random.randrange(30) + 1
PY
cat > seq.toml <<'TOML'
[sequential]
widths = [4, 8]
blocks = 1
max_len = 12
exclude = "none"
[train]
batch_size = 32
eval_every_steps = 20
TOML
"$MTRANK" train --config seq.toml --train seq.txt --out seqm --metrics-out seq.json --max-steps 40 --threads 1 >seq.out 2>seq.err || { cat seq.err; fail "sequential train"; }
grep -q "test metrics" seq.out || fail "sequential train printed no test metrics"
for f in config.toml items.json weights.pt meta.json manifest.json; do [ -s "seqm/$f" ] || fail "missing seqm/$f"; done
[ ! -e seqm.checkpoint ] || fail "a finished sequential run left its checkpoint"
expect_error 4 "no checkpoint to resume from" -- "$MTRANK" train --config seq.toml --train seq.txt --out seqr --resume --max-steps 40 --threads 1
"$MTRANK" eval --model seqm --data seq.txt --metrics-out seqeval.json >/dev/null 2>&1 || fail "sequential eval"
python3 - <<'PY' || fail "sequential metrics JSON"
import json
m = json.load(open("seq.json")); e = json.load(open("seqeval.json"))
assert set(m["widths"]) == {"4", "8"}, m["widths"]
assert m["steps"] == 40 and len(m["history"]) == 2, (m["steps"], m["history"])
assert m["tasks"]["next_item"]["ndcg@10"] == m["widths"]["8"]["ndcg@10"]
for w in ("4", "8"):
    for k, v in m["widths"][w].items():
        assert abs(e["widths"][w][k] - v) < 1e-12, (w, k, v, e["widths"][w][k])
PY
# export one width; eval on it gives the full model's metrics at that width.
"$MTRANK" export --model seqm --width 4 --out seqm4 >/dev/null 2>&1 || fail "export"
"$MTRANK" eval --model seqm4 --data seq.txt --metrics-out seq4.json >/dev/null 2>&1 || fail "eval of the exported model"
"$MTRANK" recommend --model seqm --history "1 2 3" -k 5 >rec.txt 2>rec.err || { cat rec.err; fail "recommend"; }
"$MTRANK" recommend --model seqm4 --history "1,2,999" -k 3 --json >rec.json 2>rec4.err || { cat rec4.err; fail "recommend --json"; }
grep -q "1 of the 3 history items are unknown" rec4.err || { cat rec4.err; fail "recommend: unknown items not counted"; }
python3 - <<'PY' || fail "export / recommend"
import json
full = json.load(open("seq.json"))["widths"]["4"]; small = json.load(open("seq4.json"))["widths"]
assert set(small) == {"4"}, small
for k, v in full.items():
    assert abs(small["4"][k] - v) < 1e-12, (k, v, small["4"][k])
lines = [l.split("\t") for l in open("rec.txt").read().splitlines()]
assert [l[0] for l in lines] == ["1", "2", "3", "4", "5"], lines
assert not {l[1] for l in lines} & {"1", "2", "3"}, lines
scores = [float(l[2]) for l in lines]; assert scores == sorted(scores, reverse=True), scores
r = json.load(open("rec.json")); assert len(r["items"]) == 3 and r["unknown_history_items"] == 1, r
PY
# item-vectors: LSA vectors of item text, one 'item<TAB>v1 v2 ...' line per item.
printf 'item\ttitle\tgenres\n1\tToy Story\tAnimation|Comedy\n2\tToy Story 2\tAnimation|Comedy\n3\tHeat\tAction|Crime\n4\tHeat Wave\tAction\n5\tComedy Night\tComedy\n' > items.tsv
"$MTRANK" item-vectors --items items.tsv --text-columns title,genres --dim 3 --min-df 1 --out vec.tsv >/dev/null || fail "item-vectors"
[ "$(wc -l < vec.tsv)" -eq 5 ] || fail "item-vectors: expected 5 lines"
awk -F'\t' '{ if (split($2, v, " ") != 3) exit 1 }' vec.tsv || fail "item-vectors: expected 3 values a line"
expect_error 2 "--dim 50: must be from 1 to" -- "$MTRANK" item-vectors --items items.tsv --text-columns title --dim 50 --out v2.tsv
expect_error 3 "missing column 'name'" -- "$MTRANK" item-vectors --items items.tsv --text-columns name --out v3.tsv
# item-vectors --out X.npy: a float32 NumPy array [items, 1 + dim], the id in column 0.
"$MTRANK" item-vectors --items items.tsv --text-columns title,genres --dim 3 --min-df 1 --out vec.npy >/dev/null || fail "item-vectors .npy"
python3 - <<'PY' || fail "item-vectors .npy contents"
import struct
b = open("vec.npy", "rb").read()
assert b[:8] == b"\x93NUMPY\x01\x00", b[:8]
n = struct.unpack("<H", b[8:10])[0]; header = b[10:10 + n].decode()
assert "'descr': '<f4'" in header and "'shape': (5, 4)" in header and (10 + n) % 64 == 0, header
rows = [struct.unpack("<4f", b[10 + n + 16 * r:10 + n + 16 * (r + 1)]) for r in range(5)]
text = [l.split("\t") for l in open("vec.tsv").read().splitlines()]
for row, (item, values) in zip(rows, text):
    assert row[0] == float(item), (row, item)
    assert all(abs(a - float(v)) < 1e-5 for a, v in zip(row[1:], values.split())), (row, values)
PY
# Item side information by flags: the seq.txt items' table (title, genres) and
# LSA vectors of it, with no id embeddings; the model directory holds them.
python3 - <<'PY'
with open("items30.tsv", "w") as f:
    f.write("item\ttitle\tgenres\n")
    for i in range(1, 31):
        f.write(f"{i}\tmovie m{i}\tg{i % 4}|all\n")
PY
"$MTRANK" item-vectors --items items30.tsv --text-columns title,genres --dim 4 --min-df 1 --out vec30.npy >/dev/null || fail "item-vectors items30"
printf '[sequential]\nitem_ids = false\ntext_columns = ["title"]\nmulti_hot_columns = ["genres"]\nfeature_buckets = 512\n' > seqfeat.toml
"$MTRANK" train --config seq.toml --config seqfeat.toml --train seq.txt --items items30.tsv --item-vectors vec30.npy \
  --out seqf --metrics-out seqf.json --max-steps 20 --threads 1 >seqf.out 2>seqf.err || { cat seqf.err; fail "train with item features"; }
grep -q "item vectors from .*vec30.npy: 4 dimensions; 0 of 30 items have none" seqf.err || { cat seqf.err; fail "item vectors not reported"; }
mv items30.tsv items30.moved; mv vec30.npy vec30.moved
"$MTRANK" eval --model seqf --data seq.txt --metrics-out seqfeval.json >/dev/null 2>&1 || fail "eval of a model with item features"
python3 - <<'PY' || fail "item features metrics"
import json
m = json.load(open("seqf.json")); e = json.load(open("seqfeval.json"))
f = m["item_features"]
assert f["ids"] is False and f["terms"] == 30 * 5 and f["vector_dims"] == [4], f
for w in ("4", "8"):
    for k, v in m["widths"][w].items():
        assert abs(e["widths"][w][k] - v) < 1e-12, (w, k, v, e["widths"][w][k])
PY
# report: metrics by width, the validation curve and the width plot of each
# sequential model, and their comparison; well-formed XHTML.
"$MTRANK" report nested=seq.json features=seqf.json --out seqreport.html >/dev/null || fail "report of sequential runs"
python3 - <<'PY' || fail "sequential report contents"
import xml.etree.ElementTree as ET
page = open("seqreport.html").read()
ET.fromstring(page.split("\n", 1)[1])  # after the doctype: well-formed XML
for kind, n in (("width-metrics", 2), ("validation-curve", 2), ("width", 2), ("width-comparison", 1)):
    assert page.count('data-plot="%s"' % kind) == n, (kind, page.count('data-plot="%s"' % kind))
assert 'data-plot="seesaw"' not in page
PY
# Model directories hold their run record: report reads them, and an exported
# width's record has only its widths' metrics (exactly the exported model's).
"$MTRANK" report full=seqm small=seqm4 --out seqdirs.html >/dev/null || fail "report of sequential model directories"
python3 - <<'PY' || fail "exported record"
import json
full = json.load(open("seqm/meta.json"))["training"]; small = json.load(open("seqm4/meta.json"))["training"]
assert set(full["widths"]) == {"4", "8"} and set(small["widths"]) == {"4"}, (full["widths"], small["widths"])
assert small["widths"]["4"] == full["widths"]["4"] and small["tasks"]["next_item"]["ndcg@10"] == full["widths"]["4"]["ndcg@10"]
assert small["parameters"] == small["parameters_by_width"]["4"] == full["parameters_by_width"]["4"] < full["parameters"], small
assert "history" not in small and len(full["history"]) == 2
PY
printf '1\t0.1 0.2\n2\t0.3\n' > short.tsv
expect_error 3 "short.tsv:2: item '2' has 1 values, but line 1's item has 2" -- "$MTRANK" train --config seq.toml --train seq.txt --item-vectors short.tsv --out m13
expect_error 2 "set data.items or pass --items FILE" -- "$MTRANK" train --config seq.toml --config seqfeat.toml --train seq.txt --out m14
expect_error 2 "--items and --item-vectors give a [sequential] model" -- "$MTRANK" train --config qs/quickstart.toml --out m15 --item-vectors short.tsv
expect_error 2 "is not one of the model's widths" -- "$MTRANK" export --model seqm --width 5 --out seqm5
expect_error 2 "--max-steps bounds a [sequential] model" -- "$MTRANK" train --config qs/quickstart.toml --out m11 --max-steps 3
expect_error 2 "leave-one-out" -- "$MTRANK" train --config seq.toml --train seq.txt --val seq.txt --out m12
expect_error 4 "a sequential (next-item) model" -- "$MTRANK" predict --model seqm --data seq.txt --out p.csv
# Out of core: --stream trains from featurized blocks on disk (a temporary store beside the
# model: quickstart.toml has no cache_dir), holding a bounded buffer, to the in-memory run's quality.
printf 'extends = "quickstart.toml"\n[data]\nblock_rows = 1000\nshuffle_buffer_rows = 3000\n' > qs/stream.toml
"$MTRANK" train --config qs/stream.toml --out streamed --metrics-out streamed.json --stream --threads 2 >/dev/null 2>stream.err ||
  { cat stream.err; fail "train --stream"; }
grep -q "streaming 16000 training rows .* from 16 blocks in streamed.blocks, shuffled 3000 rows at a time" stream.err ||
  { cat stream.err; fail "train --stream did not say what it streams"; }
[ ! -e streamed.blocks ] || fail "the temporary block store was left behind"
python3 - <<'PY' || fail "streamed metrics"
import json
s, m = json.load(open("streamed.json")), json.load(open("qs/metrics.json"))
assert s["streamed"] and not m["streamed"], (s["streamed"], m["streamed"])
assert s["train_rows"] == m["train_rows"] == 16000, (s["train_rows"], m["train_rows"])
assert s["peak_buffer_rows"] <= 3000 + 1000 + 1024, s["peak_buffer_rows"]  # buffer + a block + a batch's leftovers
assert abs(s["tasks"]["click"]["auc"] - m["tasks"]["click"]["auc"]) < 0.02, (s["tasks"]["click"], m["tasks"]["click"])
PY
expect_error 2 "--stream streams a ranking model's featurized rows" -- "$MTRANK" train --config seq.toml --train seq.txt --out m16 --stream
# One data set in several files (a quoted glob; gzip and plain mixed) trains
# exactly the model of the one file, at the same seed and threads.
mkdir -p parts
head -1 qs/train.csv > header.csv
tail -n +2 qs/train.csv | split -l 6000 - parts/body-
for p in parts/body-*; do cat header.csv "$p" > "parts/day-${p#parts/body-}.csv"; rm "$p"; done
gzip parts/day-aa.csv
"$MTRANK" train --config qs/quickstart.toml --train 'parts/day-*' --out parted --metrics-out parted.json --threads 2 \
  >/dev/null 2>parted.err || { cat parted.err; fail "train on a glob of files"; }
grep -q "fitted preprocessing of parts/day-aa.csv.gz + parts/day-ab.csv + parts/day-ac.csv in" parted.err ||
  { cat parted.err; fail "the log did not name the files the pattern matched"; }
python3 - <<'PY' || fail "several files are not the one file"
import json
s, m = json.load(open("parted.json")), json.load(open("qs/metrics.json"))
assert s["train_rows"] == m["train_rows"] == 16000, (s["train_rows"], m["train_rows"])
assert s["history"][-1]["train_loss"] == m["history"][-1]["train_loss"], (s["history"][-1], m["history"][-1])
assert s["tasks"] == m["tasks"], (s["tasks"], m["tasks"])
PY
python3 - <<'PY' || fail "the model's config.toml does not list the files it was trained on"
import os, tomllib
train = tomllib.load(open("parted/config.toml", "rb"))["data"]["train"]
assert [os.path.basename(f) for f in train] == ["day-aa.csv.gz", "day-ab.csv", "day-ac.csv"], train
PY
printf 'a,b\n1,2\n' > parts/day-zz.csv
expect_error 3 "parts/day-zz.csv:1:1: header differs from the first file's" -- "$MTRANK" train --config qs/quickstart.toml --train 'parts/day-*' --out m17
expect_error 3 "the pattern matches no file" -- "$MTRANK" train --config qs/quickstart.toml --train 'parts/week-*.csv' --out m18
echo "cli tests passed"
