#!/usr/bin/env bash
# Hostile HTTP clients against `mtrank serve` (issue 14, docs/reliability.md
# "Hostile HTTP clients"): body limits on chunked bodies, compressed bodies,
# oversized headers, idle and trickling connections (slowloris), the
# connection limit, a POST without a length, bad ports, a port in use, more
# threads than the process may start, and SIGTERM with idle connections open.
# Raw sockets through bash's /dev/tcp, and curl; no Python. Every wait is bounded
# (the whole script takes about 15 s).
set -euo pipefail
MTRANK=$1
WORK=$(mktemp -d)
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill -9 "$SERVER_PID" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
cd "$WORK"
fail() { echo "FAIL: $*"; [ -f server.err ] && tail -5 server.err; exit 1; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

"$MTRANK" quickstart --dir qs --rows 6000 --threads 2 >/dev/null 2>&1 || fail "quickstart"
"$MTRANK" serve --model qs/model --port 0 --threads 2 --max-body-bytes 100000 --max-header-bytes 8192 \
  --request-timeout 3 --keep-alive-timeout 2 --max-connections 30 > server.out 2> server.err &
SERVER_PID=$!
for _ in $(seq 100); do grep -q "listening on" server.out 2>/dev/null && break; sleep 0.1; done
URL=$(grep -o "http://127.0.0.1:[0-9]*" server.out) || fail "server did not start"
PORT=${URL##*:}
C="curl -s --max-time 5 -H Content-Type:application/json"
RANK='{"candidates": [{"price": "3"}, {}]}'

# Body limits hold on the bytes read: a chunked body over --max-body-bytes gets 413
# (cpp-httplib read it all; the limit held only for Content-Length).
head -c 3000000 /dev/zero | tr '\0' ' ' > big.txt
code=$($C -o r.json -w '%{http_code}' -H 'Transfer-Encoding: chunked' --data-binary @big.txt "$URL/v1/rank") || true
[ "$code" = 413 ] || fail "chunked body over the limit: $code $(cat r.json 2>/dev/null)"
code=$($C -o r.json -w '%{http_code}' --data-binary @big.txt "$URL/v1/rank") || true
[ "$code" = 413 ] || fail "Content-Length over the limit: $code"

# Compressed bodies are refused with 415 (a 1 MB gzip body inflated to 1 GiB before).
printf '%s' "$RANK" | gzip > body.gz
code=$($C -o r.json -w '%{http_code}' -H 'Content-Encoding: gzip' --data-binary @body.gz "$URL/v1/rank")
[ "$code" = 415 ] || fail "gzip body: $code $(cat r.json)"
code=$($C -o r.json -w '%{http_code}' -H 'Content-Encoding: identity' --data-binary "$RANK" "$URL/v1/rank")
[ "$code" = 200 ] || fail "identity encoding: $code $(cat r.json)"

# Header size and count are bounded: 431.
code=$($C -o /dev/null -w '%{http_code}' -H "X-Pad: $(head -c 10000 /dev/zero | tr '\0' a)" "$URL/healthz")
[ "$code" = 431 ] || fail "huge header: $code"
H=()
for i in $(seq 150); do H+=(-H "X-H$i: v"); done
code=$($C -o /dev/null -w '%{http_code}' "${H[@]}" "$URL/healthz")
[ "$code" = 431 ] || fail "150 header fields: $code"

# A POST with no body and no Content-Length is complete (empty body): answered at once.
t0=$(now_ms)
resp=$(timeout 4 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT; printf 'POST /v1/rank HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3; cat <&3") ||
  fail "POST without Content-Length not answered within 4 s"
case "$resp" in "HTTP/1.1 400"*) ;; *) fail "POST without Content-Length: $(echo "$resp" | head -1)" ;; esac
[ $(($(now_ms) - t0)) -lt 2000 ] || fail "POST without Content-Length took $(($(now_ms) - t0)) ms"

# Slowloris: 20 idle connections and one that trickles a request line a byte
# every 0.5 s. They hold no thread: /healthz and /v1/rank are answered while they
# stay connected (cpp-httplib: 2 idle sockets delayed every request by 4.8 s).
IDLE=()
for _ in $(seq 20); do exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"; IDLE+=("$fd"); done
exec {TR}<>"/dev/tcp/127.0.0.1/$PORT"
( for c in P O S T ' ' / v 1 / r a n k ' ' H T T P / 1 . 1; do printf '%s' "$c" >&"$TR" || exit 0; sleep 0.5; done ) 2>/dev/null &
TRICKLER=$!
t0=$(now_ms)
[ "$($C -o /dev/null -w '%{http_code}' "$URL/healthz")" = 200 ] || fail "healthz beside idle and trickling connections"
[ "$($C -o /dev/null -w '%{http_code}' "$URL/readyz")" = 200 ] || fail "readyz beside idle and trickling connections"
[ "$($C -o /dev/null -w '%{http_code}' --data-binary "$RANK" "$URL/v1/rank")" = 200 ] ||
  fail "rank beside idle and trickling connections"
echo "probes and a rank request beside 20 idle + 1 trickling connection: $(($(now_ms) - t0)) ms"
# The trickler is cut at the request deadline (3 s), however often it sends a byte.
timeout 8 cat <&"$TR" >/dev/null || fail "a trickling request was not cut at --request-timeout 3"
elapsed=$(($(now_ms) - t0))
[ "$elapsed" -lt 6500 ] || fail "trickler cut after $elapsed ms"
# An idle connection is closed after the keep-alive timeout (2 s).
timeout 5 cat <&"${IDLE[0]}" >/dev/null || fail "an idle connection was kept past --keep-alive-timeout 2"
for fd in "${IDLE[@]}"; do exec {fd}>&-; done
exec {TR}>&-
wait "$TRICKLER" 2>/dev/null || true

# Over --max-connections (30): probes are still answered, other requests get 503 at once.
IDLE=()
for _ in $(seq 35); do exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"; IDLE+=("$fd"); done
sleep 0.2
[ "$($C -o /dev/null -w '%{http_code}' "$URL/healthz")" = 200 ] || fail "healthz over the connection limit"
[ "$($C -o /dev/null -w '%{http_code}' --data-binary "$RANK" "$URL/v1/rank")" = 503 ] ||
  fail "rank over the connection limit is not 503"
for fd in "${IDLE[@]}"; do exec {fd}>&-; done

# Every status is counted.
sleep 0.2
$C "$URL/metrics" > metrics.txt
for c in 200 400 413 415 431 503; do
  grep -q "mtrank_http_responses_total{code=\"$c\"} [1-9]" metrics.txt || fail "no $c in /metrics: $(grep http_responses metrics.txt)"
done
grep -q 'mtrank_requests_total{status="4xx"} [3-9]' metrics.txt || fail "rank 4xx (413, 415, 400) not counted"
grep -q 'mtrank_connections_dropped_total{reason="timeout"} [1-9]' metrics.txt || fail "timeouts not counted"

# A second server on the same port fails to start: exit 2, one line naming the address.
rc=0
timeout 20 "$MTRANK" serve --model qs/model --port "$PORT" > second.out 2> second.err || rc=$?
[ "$rc" = 2 ] || fail "a second server on port $PORT: exit $rc, $(cat second.out second.err)"
grep -q "127.0.0.1:$PORT" second.err && [ "$(wc -l < second.err)" = 1 ] || fail "port in use message: $(cat second.err)"
! grep -q listening second.out || fail "a second server announced listening on a port in use"
rc=0
timeout 20 "$MTRANK" serve --model qs/model --port 99999 > second.out 2> second.err || rc=$?
[ "$rc" = 2 ] && grep -q -- "--port 99999" second.err || fail "--port 99999: exit $rc, $(cat second.out second.err)"
rc=0
timeout 20 "$MTRANK" serve --model qs/model --port 0 --threads 100000 > second.out 2> second.err || rc=$?
[ "$rc" = 2 ] && grep -q -- "--threads 100000" second.err || fail "--threads 100000: exit $rc, $(cat second.err)"

# More threads than the process limit allows: a clean error, never "listening"
# and a deadlock (needs root to run as nobody, where RLIMIT_NPROC applies).
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
  chmod 755 "$WORK" && chmod -R a+rX "$WORK/qs"
  if setpriv --reuid=65534 --regid=65534 --clear-groups "$MTRANK" --version >/dev/null 2>&1; then
    rc=0
    timeout 20 setpriv --reuid=65534 --regid=65534 --clear-groups bash -c \
      "ulimit -u 40; exec '$MTRANK' serve --model '$WORK/qs/model' --port 0 --threads 200" > nproc.out 2> nproc.err || rc=$?
    [ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "--threads 200 under ulimit -u 40: exit $rc"
    ! grep -q listening nproc.out || fail "announced listening before its threads started"
    grep -q "cannot start" nproc.err || fail "thread start failure message: $(cat nproc.err)"
  else
    echo "skipped: the binary cannot run as nobody"
  fi
else
  echo "skipped: the process-limit check needs root and setpriv"
fi

# SIGTERM with idle keep-alive connections open: exits 0 at once, without waiting for them.
IDLE=()
for _ in $(seq 5); do exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"; IDLE+=("$fd"); done
sleep 0.1
kill -TERM "$SERVER_PID"
for _ in $(seq 30); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$SERVER_PID" 2>/dev/null && fail "server still running 3 s after SIGTERM with idle connections"
wait "$SERVER_PID" && rc=0 || rc=$?
SERVER_PID=""
[ "$rc" = 0 ] || fail "exit code $rc after SIGTERM"
echo "hostile client tests passed"
