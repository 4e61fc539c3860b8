#!/usr/bin/env bash
# The test command. On a fresh machine it installs what is missing (Debian packages, the Kafka
# jars, a Python venv with pyarrow and polars), starts a real single-node Kafka broker, runs
# cargo fmt --check, clippy -D warnings and every test, and stops the broker however it ends.
#
# Environment: CI=true makes tests that need Kafka fail (never skip) when it is unreachable.
# KAFKA_PORT (9092) picks the broker port.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
step() { printf '\n==> %s\n' "$*"; }

step "system packages"
source scripts/lib/deps.sh
extra=()
command -v mvn >/dev/null || extra+=(maven)
command -v java >/dev/null || extra+=(openjdk-17-jre-headless)
python3 -c 'import ensurepip' 2>/dev/null || extra+=(python3-venv)
command -v chromium >/dev/null || extra+=(chromium)   # renders report.html in the tests
install_build_deps "${extra[@]}"

step "python venv with pyarrow, polars and duckdb"
if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -c 'import pyarrow, polars, duckdb' 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r tests/python/requirements.txt
fi
.venv/bin/python -c 'import pyarrow, polars, duckdb; print("pyarrow", pyarrow.__version__, "polars", polars.__version__, "duckdb", duckdb.__version__)'

step "kafka broker"
port=${KAFKA_PORT:-9092}
started_here=false
if ! deploy/kafka/kafka.sh status >/dev/null 2>&1; then
  started_here=true
fi
cleanup() {
  if $started_here; then
    step "stopping the kafka broker"
    deploy/kafka/kafka.sh down || true
  fi
}
trap cleanup EXIT
deploy/kafka/kafka.sh up

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "build"
cargo build -p gridwatch

step "helm chart: lint, render, Kubernetes API types, gridwatch config check (offline)"
if command -v go >/dev/null; then
  GRIDWATCH_BIN="$root/target/debug/gridwatch" scripts/check_helm.sh
elif [[ ${CI:-} == true ]]; then
  echo "the chart check needs Go (helm is installed with go install)" >&2
  exit 1
else
  echo "skipped: no Go on this machine (CI runs it)"
fi

step "tests (unit, and end to end against the broker on 127.0.0.1:$port)"
export GRIDWATCH_TEST_KAFKA="127.0.0.1:$port"
export GRIDWATCH_PYTHON="$root/.venv/bin/python"
export GRIDWATCH_BIN="$root/target/debug/gridwatch"
# The cluster chaos test runs its default seed and one derived from this commit, so its coverage
# grows with every landing; a failure names its seed, and scripts/chaos.sh reruns it.
commit=$(git rev-parse --short=7 HEAD 2>/dev/null || printf '%x' "$(date +%s)")
commit_seed=$((16#$commit % 100000))
export GRIDWATCH_CLUSTER_CHAOS_SEEDS="20261207,$commit_seed"
echo "cluster chaos seeds: 20261207 and $commit_seed (from $commit; rerun: scripts/chaos.sh cluster 4 --seeds $commit_seed..$commit_seed)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
