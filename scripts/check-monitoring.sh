#!/usr/bin/env bash
# Offline checks of monitoring/ (`make test` runs it after validate-deploy):
#
#   1. promtool check config monitoring/prometheus/prometheus.yml (a copy whose rule_files
#      point at monitoring/prometheus/rules/ instead of the container's /etc/prometheus);
#   2. promtool check rules and promtool test rules (monitoring/prometheus/tests/);
#   3. the dashboards are what monitoring/grafana/dashboards.py writes, and the Kubernetes
#      copies of the rules are what scripts/sync_prometheus_rules.py writes;
#   4. scripts/check_monitoring.py: dashboards parse and use the data source uid
#      `prometheus`, every alert has severity, summary, description, a runbook entry and a
#      firing test, and every metric name used is in monitoring/metrics.txt.
#
# promtool comes from Debian's prometheus package (PROMTOOL=/path uses another). When it is
# missing and this runs as root with apt-get, the package is installed; otherwise the promtool
# steps are skipped with a message and the other checks still run.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
SHORTLINE_LOG_TAG=check-monitoring
cd "$SHORTLINE_ROOT"

# A Python with PyYAML: the system one, else the tools venv (scripts/tools.sh).
PY=python3
if ! "$PY" -c 'import yaml' 2>/dev/null; then
	# shellcheck source=scripts/tools.sh
	source "$SCRIPTS/tools.sh"
	PY="$SHORTLINE_TOOLS_DIR/bin/python"
	"$PY" -c 'import yaml' 2>/dev/null || die "no Python with PyYAML (python3, or $PY)"
fi

PROMTOOL="${PROMTOOL:-$(command -v promtool || true)}"
if [[ -z $PROMTOOL && $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
	log "installing promtool (Debian package prometheus)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus </dev/null >/dev/null ||
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus </dev/null >/dev/null; } ||
		log "could not install the prometheus package"
	PROMTOOL="$(command -v promtool || true)"
fi

if [[ -n $PROMTOOL ]]; then
	work="$(mktemp -d)"
	trap 'rm -rf "$work"' EXIT
	log "$("$PROMTOOL" --version 2>&1 | head -n 1)"
	rules_glob="$SHORTLINE_ROOT/monitoring/prometheus/rules/*.yml"
	grep -q '/etc/prometheus/rules/\*\.yml' monitoring/prometheus/prometheus.yml ||
		die "prometheus.yml no longer loads /etc/prometheus/rules/*.yml; update this script"
	sed "s#/etc/prometheus/rules/\*\.yml#$rules_glob#" monitoring/prometheus/prometheus.yml >"$work/prometheus.yml"
	"$PROMTOOL" check config "$work/prometheus.yml" >"$work/out" 2>&1 || { cat "$work/out" >&2; die "promtool check config failed"; }
	"$PROMTOOL" check rules monitoring/prometheus/rules/*.yml >"$work/out" 2>&1 || { cat "$work/out" >&2; die "promtool check rules failed"; }
	"$PROMTOOL" test rules monitoring/prometheus/tests/*.yml >"$work/out" 2>&1 || { cat "$work/out" >&2; die "promtool test rules failed"; }
	log "promtool: config, rules and rule unit tests ok"
else
	log "SKIPPED promtool check config / check rules / test rules: promtool not found and not installable here (install Debian's prometheus package, or set PROMTOOL=)"
fi

"$PY" monitoring/grafana/dashboards.py --check
"$PY" "$SCRIPTS/sync_prometheus_rules.py" --check
"$PY" "$SCRIPTS/check_monitoring.py"
