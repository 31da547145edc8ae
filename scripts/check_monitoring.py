#!/usr/bin/env python3
"""Offline checks of the dashboards and alert rules (scripts/check-monitoring.sh runs it;
promtool checks the syntax, this checks what promtool does not know):

  dashboards  each JSON file parses, has a unique uid, every panel and query variable uses
              the Prometheus data source uid `prometheus`, every panel has queries, panel
              ids are unique;
  rules       every alert has severity warning|critical, a summary, a description and a
              runbook_url docs/runbook.md#<anchor> whose heading exists in docs/runbook.md;
              every alert has a firing case in monitoring/prometheus/tests/;
  names       every metric name a panel, a variable or a rule uses is in the catalog
              monitoring/metrics.txt (so a renamed metric fails here).

Needs PyYAML (the tools venv has it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

import monitoring_lib as ml

TESTS = ml.ROOT / "monitoring" / "prometheus" / "tests"


def main() -> int:
    errors: list[str] = []
    known = ml.catalog_series(ml.load_catalog())
    used: dict[str, set[str]] = {}

    def uses(where: str, expr: str) -> None:
        try:
            names = ml.metric_names(expr)
        except ValueError as e:
            errors.append(f"{where}: {e}")
            return
        if not names:
            errors.append(f"{where}: no metric name in {expr!r}")
        for n in names:
            used.setdefault(n, set()).add(where)

    # Dashboards.
    uids: dict[str, str] = {}
    panels = 0
    files = ml.dashboard_files()
    if len(files) < 4:
        errors.append(f"{ml.DASHBOARDS}: want the four dashboards, found {len(files)}")
    for path in files:
        rel = path.relative_to(ml.ROOT)
        try:
            dash = ml.load_dashboard(path)
        except ValueError as e:
            errors.append(f"{rel}: not JSON: {e}")
            continue
        uid = dash.get("uid", "")
        if not uid or uid in uids:
            errors.append(f"{rel}: uid {uid!r} missing or also used by {uids.get(uid)}")
        uids[uid] = str(rel)
        values = ml.variable_values(dash)
        ids = set()
        for p in ml.all_panels(dash):
            title = p.get("title", "?")
            if p.get("id") in ids:
                errors.append(f"{rel}: panel id {p.get('id')} used twice")
            ids.add(p.get("id"))
            if p.get("type") == "row":
                continue
            panels += 1
            if (p.get("datasource") or {}).get("uid") != ml.DATASOURCE_UID:
                errors.append(f"{rel}: panel {title!r}: data source is not uid {ml.DATASOURCE_UID}")
            targets = p.get("targets") or []
            if not targets:
                errors.append(f"{rel}: panel {title!r} has no queries")
            for t in targets:
                ds = t.get("datasource")
                if ds is not None and ds.get("uid") != ml.DATASOURCE_UID:
                    errors.append(f"{rel}: panel {title!r} query {t.get('refId')}: data source is not uid prometheus")
                if not t.get("expr", "").strip():
                    errors.append(f"{rel}: panel {title!r} query {t.get('refId')}: empty expr")
                    continue
                uses(f"{rel}: {title}", ml.substitute(t["expr"], values))
        for v in dash.get("templating", {}).get("list", []):
            if v.get("type") == "query" and (v.get("datasource") or {}).get("uid") != ml.DATASOURCE_UID:
                errors.append(f"{rel}: variable ${v['name']}: data source is not uid prometheus")
        for name, query in ml.variable_queries(dash):
            promql = ml.label_values_as_promql(ml.substitute(query, values))
            if promql is None:
                errors.append(f"{rel}: variable ${name}: only label_values(...) queries are checked: {query!r}")
            else:
                uses(f"{rel}: variable ${name}", promql)

    # Rules.
    anchors = ml.markdown_anchors()
    alerts: set[str] = set()
    rules = 0
    for path in sorted(ml.RULES.glob("*.yml")):
        rel = path.relative_to(ml.ROOT)
        for group in yaml.safe_load(path.read_text()).get("groups", []):
            for rule in group.get("rules", []):
                rules += 1
                name = rule.get("alert") or rule.get("record")
                where = f"{rel}: {name}"
                uses(where, rule["expr"])
                if "record" in rule:
                    continue
                alerts.add(name)
                if rule.get("labels", {}).get("severity") not in ("warning", "critical"):
                    errors.append(f"{where}: severity is not warning or critical")
                ann = rule.get("annotations", {})
                for key in ("summary", "description", "runbook_url"):
                    if not ann.get(key):
                        errors.append(f"{where}: no {key} annotation")
                url = ann.get("runbook_url", "")
                if url:
                    page, _, anchor = url.partition("#")
                    if page != "docs/runbook.md" or anchor not in anchors:
                        errors.append(f"{where}: runbook_url {url} has no heading in docs/runbook.md")

    # Every alert fires somewhere in the unit tests.
    tested: set[str] = set()
    for path in sorted(TESTS.glob("*.yml")):
        for test in yaml.safe_load(path.read_text()).get("tests", []):
            for case in test.get("alert_rule_test", []):
                if case.get("exp_alerts"):
                    tested.add(case["alertname"])
    for name in sorted(alerts - tested):
        errors.append(f"monitoring/prometheus/tests: no test where {name} fires")

    # Metric names.
    for name in sorted(set(used) - set(known)):
        errors.append(f"{name} is not in monitoring/metrics.txt; used by: {'; '.join(sorted(used[name]))}")

    for e in errors:
        print(f"FAIL {e}", file=sys.stderr)
    print(f"monitoring: {len(files)} dashboards ({panels} panels), {rules} rules ({len(alerts)} alerts, "
          f"{len(tested & alerts)} with a firing test), {len(used)} metric names used, "
          f"all in the catalog: {'yes' if not set(used) - set(known) else 'no'}; "
          f"{len(errors)} problem(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
