#!/usr/bin/env bash
# Checks the Helm chart (deploy/helm/gridwatch) offline, as CI does: `helm lint`, then for the
# default values and a production-like file (ci/production-values.yaml) `helm template`, every
# rendered manifest decoded strictly into the Kubernetes API's own Go types
# (deploy/helm/validate: an unknown or misspelled field, a wrong type or a bad quantity fails),
# and the rendered gridwatch.toml checked by `gridwatch config check`. Then it proves the checks
# bite: a misspelled field in a template and a misspelled config key must both fail.
#
# Installs helm (pinned, `go install`) into ~/go/bin when it is missing; needs Go and a built
# gridwatch (GRIDWATCH_BIN, default target/debug/gridwatch).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
helm_version=v4.3.2
gw=${GRIDWATCH_BIN:-$root/target/debug/gridwatch}
chart=deploy/helm/gridwatch
gobin=$(go env GOPATH)/bin
helm=$gobin/helm
if ! "$helm" version 2>/dev/null | grep -q "${helm_version%.*}"; then
  echo "installing helm $helm_version (go install; a few minutes the first time)" >&2
  GOFLAGS=-mod=mod go install "helm.sh/helm/v4/cmd/helm@$helm_version"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd deploy/helm/validate && go build -o "$work/validate" .)
echo secret >"$work/password"

# The config the chart renders, checked by gridwatch itself (the SCRAM password file stands in
# for the Secret the pod mounts).
config_check() {
  "$helm" template gw "$1" "${@:2}" --show-only templates/configmap.yaml |
    sed -n '/gridwatch.toml: |/,$p' | tail -n +2 | sed 's/^    //' >"$work/gridwatch.toml"
  GRIDWATCH__KAFKA__SASL_PASSWORD_FILE=$work/password "$gw" --config "$work/gridwatch.toml" config check
}

check() {
  local c=$1
  shift
  "$helm" lint --strict "$c" "$@" >/dev/null
  "$helm" template gw "$c" "$@" | "$work/validate"
  config_check "$c" "$@"
}

echo "== default values"
check "$chart"
echo "== production-like values (ci/production-values.yaml)"
check "$chart" -f "$chart/ci/production-values.yaml"

echo "== the checks bite"
cp -r "$chart" "$work/typo"
sed -i 's/containerPort:/containerPrt:/' "$work/typo/templates/detector.yaml"
if "$helm" template gw "$work/typo" | "$work/validate" 2>"$work/err"; then
  echo "check_helm: a misspelled field in a template passed the validation" >&2
  exit 1
fi
grep -q 'detector.yaml (StatefulSet).*unknown field "containerPrt"' "$work/err" ||
  { cat "$work/err" >&2; echo "check_helm: the error does not name the field" >&2; exit 1; }
echo "a misspelled template field fails: $(cat "$work/err")"
if config_check "$chart" --set config.kafka.partitons=6 2>"$work/err"; then
  echo "check_helm: a misspelled config key passed gridwatch config check" >&2
  exit 1
fi
grep -q 'partitons' "$work/err" || { cat "$work/err" >&2; exit 1; }
echo "a misspelled config key fails: $(cat "$work/err")"
echo "helm chart: lint, render, API types and config check pass for both value files"
