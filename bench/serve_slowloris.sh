#!/usr/bin/env bash
# Slowloris load test of `mtrank serve` on loopback (docs/benchmarks.md): real
# traffic from wrk (200-candidate census requests) alone, then beside IDLE
# connections that never send a byte and TRICKLE connections that send a
# request one byte a second (both reopened as soon as the server closes them).
# Prints wrk's latency percentiles for both phases and what the attackers saw.
#   bench/serve_slowloris.sh MODEL_DIR [SECONDS=15] [CONNECTIONS=4] [IDLE=400] [TRICKLE=50]
# MTRANK=path/to/mtrank picks the binary (default build/mtrank). Needs
# ../shared/datasets, python3 and Debian's wrk. Bounded in time: about 2 x SECONDS + 10 s.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=$1
SECONDS_=${2:-15}
CONN=${3:-4}
IDLE=${4:-400}
TRICKLE=${5:-50}
MTRANK=${MTRANK:-build/mtrank}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
WORK=$(mktemp -d)
SERVER=""
ATTACK=""
trap '[ -n "$ATTACK" ] && kill $ATTACK 2>/dev/null; [ -n "$SERVER" ] && kill -9 $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT

bench/wrk_rank_requests.sh "$MODEL" 200 "$WORK"
cat > "$WORK/attack.py" <<'PY'
# Idle and trickling connections, reopened when the server closes them, for `seconds`.
import asyncio, sys, time
host, port, n_idle, n_trickle, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
stats = dict(idle_opened=0, idle_closed_by_server=0, trickle_opened=0, trickle_cut_by_server=0, bytes_trickled=0, connect_errors=0)
end = time.monotonic() + seconds
REQUEST = (b"POST /v1/rank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n"
           + b" " * 1000000)

async def connect():
    while time.monotonic() < end:
        try:
            return await asyncio.open_connection(host, port)
        except OSError:
            stats["connect_errors"] += 1
            await asyncio.sleep(0.1)
    return None

async def idle():
    while time.monotonic() < end:
        c = await connect()
        if not c: return
        r, w = c
        stats["idle_opened"] += 1
        try:
            if await asyncio.wait_for(r.read(1), timeout=max(0.01, end - time.monotonic())) == b"":
                stats["idle_closed_by_server"] += 1
        except (asyncio.TimeoutError, OSError):
            pass
        w.close()

async def trickle():
    while time.monotonic() < end:
        c = await connect()
        if not c: return
        r, w = c
        stats["trickle_opened"] += 1
        i = 0
        while time.monotonic() < end:
            try:
                w.write(REQUEST[i:i + 1]); await w.drain(); i += 1
                stats["bytes_trickled"] += 1
                data = await asyncio.wait_for(r.read(1), timeout=1.0)  # one byte a second
                stats["trickle_cut_by_server"] += 1  # EOF or a response: the server ended it
                break
            except asyncio.TimeoutError:
                continue
            except OSError:
                stats["trickle_cut_by_server"] += 1
                break
        w.close()

async def main():
    await asyncio.gather(*[idle() for _ in range(n_idle)], *[trickle() for _ in range(n_trickle)])
    print("attackers: " + ", ".join(f"{k} {v}" for k, v in stats.items()), flush=True)

asyncio.run(main())
PY

"$MTRANK" serve --model "$MODEL" --port 0 --threads 2 > "$WORK/out" 2> "$WORK/err" &
SERVER=$!
for _ in $(seq 100); do grep -q listening "$WORK/out" 2>/dev/null && break; sleep 0.1; done
URL=$(grep -o "http://127.0.0.1:[0-9]*" "$WORK/out")
PORT=${URL##*:}
ulimit -n 65536 2>/dev/null || true

echo "== real traffic alone: wrk -t2 -c$CONN -d${SECONDS_}s"
wrk -t2 -c"$CONN" -d"${SECONDS_}s" --latency -s "$WORK/post.lua" "$URL" | tee "$WORK/wrk1.txt"

echo "== beside $IDLE idle and $TRICKLE trickling connections"
python3 "$WORK/attack.py" 127.0.0.1 "$PORT" "$IDLE" "$TRICKLE" $((SECONDS_ + 3)) > "$WORK/attack.txt" &
ATTACK=$!
sleep 2  # attackers connected
curl -s --max-time 10 -o /dev/null -w "healthz under attack: %{http_code} in %{time_total} s\n" "$URL/healthz" || echo "healthz under attack: no answer in 10 s"
wrk -t2 -c"$CONN" -d"${SECONDS_}s" --latency -s "$WORK/post.lua" "$URL" | tee "$WORK/wrk2.txt"
wait $ATTACK || true
ATTACK=""
cat "$WORK/attack.txt"
curl -s --max-time 10 "$URL/metrics" | grep -E 'mtrank_requests_total|mtrank_connections_dropped_total|mtrank_http_responses_total' || true
kill -TERM $SERVER; wait $SERVER || true; SERVER=""
