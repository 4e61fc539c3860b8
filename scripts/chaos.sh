#!/usr/bin/env bash
# The chaos suite, longer than CI's: readings stream in over HTTP while the ingester, the detector
# and the sink are killed with SIGKILL at random points and restarted; the alerts and the Arrow
# rows must equal an uninterrupted embedded run. Prints kills survived, records and time.
#
#   scripts/chaos.sh [KILLS] [SITES] [SEED]      default 60 kills, 200 sites, seed from the clock
#   scripts/chaos.sh cluster [ROUNDS] --seeds A..B  the three-broker run, once per seed, A to B:
#   scripts/chaos.sh cluster [ROUNDS] SEED...          (or the seeds named)
#       brokers SIGKILLed while two detectors are SIGKILLed and come back (one restart in four
#       on an empty state directory); every partition must keep an owner, the lag over every
#       partition reach 0, no detector restart itself, the alerts equal the embedded run's.
#       Prints a line per seed as it ends (pass or FAIL, time, alerts; a failure's log is kept
#       under target/chaos/) and a summary. Default 4 rounds, seeds 1..5.
#
# Starts the dev broker if none runs. A benchmark-style script: the assertion is the test's.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
deploy/kafka/kafka.sh up >&2
cargo build --release -p gridwatch >&2
[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/python -c "import pyarrow, polars" 2>/dev/null || .venv/bin/pip install -q -r tests/python/requirements.txt
if [[ ${1:-} == cluster ]]; then
  rounds=${2:-4}
  seeds=()
  shift $(( $# >= 2 ? 2 : $# ))
  while (($#)); do
    if [[ $1 == --seeds ]]; then
      [[ ${2:-} =~ ^([0-9]+)\.\.([0-9]+)$ ]] || { echo "chaos.sh: --seeds A..B" >&2; exit 2; }
      seeds+=($(seq "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"))
      shift 2
    else
      seeds+=("$1")
      shift
    fi
  done
  ((${#seeds[@]})) || seeds=(1 2 3 4 5)
  # The test binary once, then a run per seed.
  test_bin=$(cargo test --release -p gridwatch-e2e --test faults --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
  [[ -x $test_bin ]] || { echo "chaos.sh: the e2e test binary did not build" >&2; exit 1; }
  mkdir -p target/chaos
  passed=0 failed=()
  for seed in "${seeds[@]}"; do
    log=target/chaos/cluster-seed-$seed.log
    started=$(date +%s)
    if GRIDWATCH_CLUSTER_CHAOS_ROUNDS=$rounds GRIDWATCH_CLUSTER_CHAOS_SEEDS=$seed CI=true \
      GRIDWATCH_BIN=$root/target/release/gridwatch GRIDWATCH_PYTHON=$root/.venv/bin/python \
      "$test_bin" --exact two_detectors_killed_while_brokers_are_lost_leave_no_partition_unwatched \
      --nocapture >"$log" 2>&1; then
      passed=$((passed + 1))
      printf 'seed %s: pass in %ss: %s, %s ingest retries\n' "$seed" "$(($(date +%s) - started))" \
        "$(grep -m1 -o 'seed [0-9]*, .* alerts' "$log" | sed 's/^seed [0-9]*, //')" \
        "$(grep -c 'ingest of part .* again' "$log" || true)"
      rm -f "$log"
    else
      failed+=("$seed")
      printf 'seed %s: FAIL in %ss (log: %s): %s\n' "$seed" "$(($(date +%s) - started))" "$log" \
        "$(grep -m1 -A2 'panicked' "$log" | tr '\n' ' ' | cut -c1-300)"
    fi
  done
  printf 'cluster chaos: %d of %d seeds passed (%d rounds each)%s\n' "$passed" "${#seeds[@]}" "$rounds" \
    "$( ((${#failed[@]})) && printf '; failed: %s' "${failed[*]}")"
  ((${#failed[@]} == 0))
  exit
fi
GRIDWATCH_CHAOS_KILLS=${1:-60} GRIDWATCH_CHAOS_SITES=${2:-200} GRIDWATCH_CHAOS_SEED=${3:-$(date +%s)} \
  GRIDWATCH_BIN=$root/target/release/gridwatch GRIDWATCH_PYTHON=$root/.venv/bin/python \
  cargo test --release -p gridwatch-e2e --test faults -- --exact \
  chaos_kills_of_every_service_while_readings_stream_in_lose_and_duplicate_nothing --nocapture 2>&1 |
  grep -E "^chaos:|panicked|differ|test result"
