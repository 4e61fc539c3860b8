#!/usr/bin/env bash
# Memory and liveness of the ingester under a crowd of large posts: CLIENTS concurrent
# clients each POST one body of about SIZE_MIB MiB of CSV readings (re-sending on 503, as a
# head-end does), while /healthz is probed every 50 ms. Prints the ingester's peak resident
# memory, the /healthz latencies, how many bodies were taken and how long it all took.
#
#   scripts/bench_big_bodies.sh [CLIENTS] [SIZE_MIB]      default: 50 clients, 16 MiB
#
# A benchmark, not a test: it asserts nothing. It starts the dev broker if none is running and
# deletes its own topics at the end.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
clients=${1:-50}
size_mib=${2:-16}
source scripts/lib/bench.sh
bench_start bodies
use_prefix "$prefix"
addr=127.0.0.1:18480
export GRIDWATCH__INGESTER__LISTEN=$addr
export GRIDWATCH__INGESTER__ACK_TIMEOUT_MS=30000

# One body: distinct meters, 15-minute readings, about SIZE_MIB MiB.
python3 - "$work/body.csv" "$size_mib" <<'PY'
import sys
path, mib = sys.argv[1], int(sys.argv[2])
with open(path, "w") as f:
    f.write("meter_id,ts,interval_s,kwh\n")
    n, size = 0, 0
    while size < mib * 1024 * 1024 - 64:
        line = f"BIG{n // 96:06d},2026-01-{1 + (n % 96) // 96:02d}T{(n % 96) // 4:02d}:{(n % 4) * 15:02d}:00Z,900,0.{n % 1000:03d}\n"
        f.write(line)
        size += len(line)
        n += 1
print(f"body: {n} readings, {size / 1048576:.1f} MiB", file=sys.stderr)
PY

$bin topics create >/dev/null
$bin ingester >"$work/ingester.log" 2>&1 &
ing=$!
trap 'kill $ing 2>/dev/null || true; bench_cleanup' EXIT
until curl -sf "http://$addr/readyz" >/dev/null; do sleep 0.2; done

probe() {
  while [[ ! -f $work/done ]]; do
    curl -s -o /dev/null -w '%{time_total}\n' --max-time 5 "http://$addr/healthz" >>"$work/healthz.txt" || echo 5 >>"$work/healthz.txt"
    awk '/VmHWM/ {print $2}' "/proc/$ing/status" >"$work/hwm.txt" 2>/dev/null || true
    sleep 0.05
  done
}
probe &
prober=$!

client() {
  local tries=0 code
  while :; do
    tries=$((tries + 1))
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 300 -H 'Content-Type: text/csv' \
      --data-binary "@$work/body.csv" "http://$addr/v1/readings") || code=000
    [[ $code == 200 ]] && { echo "$tries" >>"$work/tries.txt"; return; }
    sleep 1
  done
}
start=$(date +%s.%N)
for _ in $(seq "$clients"); do client & done
wait $(jobs -p | grep -v "^$prober$" | grep -v "^$ing$") 2>/dev/null || true
end=$(date +%s.%N)
touch "$work/done"
wait "$prober" || true

python3 - "$work" "$clients" "$size_mib" "$start" "$end" <<'PY'
import sys, statistics
work, clients, mib, start, end = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
lat = sorted(float(x) * 1000 for x in open(f"{work}/healthz.txt") if x.strip())
tries = [int(x) for x in open(f"{work}/tries.txt") if x.strip()]
hwm = int(open(f"{work}/hwm.txt").read().strip() or 0) / 1024
p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
print(f"{len(tries)} of {clients} bodies of {mib} MiB taken ({sum(tries) - len(tries)} re-sends after 503) in {end - start:.1f} s")
print(f"ingester peak resident memory: {hwm:.0f} MiB")
print(f"/healthz during the posts: {len(lat)} probes, median {statistics.median(lat):.1f} ms, p99 {p(0.99):.1f} ms, max {lat[-1]:.1f} ms")
PY
