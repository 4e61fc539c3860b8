#!/usr/bin/env bash
# The chaos suite, longer than CI's: readings stream in over HTTP while the ingester, the detector
# and the sink are killed with SIGKILL at random points and restarted; the alerts and the Arrow
# rows must equal an uninterrupted embedded run. Prints kills survived, records and time.
#
#   scripts/chaos.sh [KILLS] [SITES] [SEED]      default 60 kills, 200 sites, seed from the clock
#   scripts/chaos.sh cluster [ROUNDS] SEED...     the three-broker run of issue 23, once per seed:
#       brokers SIGKILLed while two detectors are SIGKILLed and come back; every partition
#       must keep an owner, the lag over every partition reach 0, no detector restart itself
#       (default 4 rounds; seeds 1..5)
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
  seeds=("${@:3}")
  ((${#seeds[@]})) || seeds=(1 2 3 4 5)
  for seed in "${seeds[@]}"; do
    GRIDWATCH_CLUSTER_CHAOS_ROUNDS=$rounds GRIDWATCH_CLUSTER_CHAOS_SEED=$seed \
      GRIDWATCH_BIN=$root/target/release/gridwatch GRIDWATCH_PYTHON=$root/.venv/bin/python \
      cargo test --release -p gridwatch-e2e --test pipeline -- --exact \
      two_detectors_killed_while_brokers_are_lost_leave_no_partition_unwatched --nocapture 2>&1 |
      grep -E "^cluster chaos:|panicked|test result" | sed "s/^/seed $seed: /"
  done
  exit 0
fi
GRIDWATCH_CHAOS_KILLS=${1:-60} GRIDWATCH_CHAOS_SITES=${2:-200} GRIDWATCH_CHAOS_SEED=${3:-$(date +%s)} \
  GRIDWATCH_BIN=$root/target/release/gridwatch GRIDWATCH_PYTHON=$root/.venv/bin/python \
  cargo test --release -p gridwatch-e2e --test pipeline -- --exact \
  chaos_kills_of_every_service_while_readings_stream_in_lose_and_duplicate_nothing --nocapture 2>&1 |
  grep -E "^chaos:|panicked|differ|test result"
