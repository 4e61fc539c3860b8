#!/usr/bin/env bash
# The chaos suite, longer than CI's: readings stream in over HTTP while the ingester, the detector
# and the sink are killed with SIGKILL at random points and restarted; the alerts and the Arrow
# rows must equal an uninterrupted embedded run. Prints kills survived, records and time.
#
#   scripts/chaos.sh [KILLS] [SITES] [SEED]      default 60 kills, 200 sites, seed from the clock
#
# Starts the dev broker if none runs. A benchmark-style script: the assertion is the test's.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
deploy/kafka/kafka.sh up >&2
cargo build --release -p gridwatch >&2
[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/python -c "import pyarrow, polars" 2>/dev/null || .venv/bin/pip install -q -r tests/python/requirements.txt
GRIDWATCH_CHAOS_KILLS=${1:-60} GRIDWATCH_CHAOS_SITES=${2:-200} GRIDWATCH_CHAOS_SEED=${3:-$(date +%s)} \
  GRIDWATCH_BIN=$root/target/release/gridwatch GRIDWATCH_PYTHON=$root/.venv/bin/python \
  cargo test --release -p gridwatch-e2e --test pipeline -- --exact \
  chaos_kills_of_every_service_while_readings_stream_in_lose_and_duplicate_nothing --nocapture 2>&1 |
  grep -E "^chaos:|panicked|differ|test result"
