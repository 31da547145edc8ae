"""What the monitoring checks share (standard library only): the metric catalog, the queries
of the Grafana dashboards with their template variables substituted, and the metric names a
PromQL expression uses.

Used by scripts/check_monitoring.py (offline, `make test`) and scripts/observability_proof.py
(against a running stack).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "monitoring" / "metrics.txt"
DASHBOARDS = ROOT / "monitoring" / "grafana" / "dashboards"
RULES = ROOT / "monitoring" / "prometheus" / "rules"
RUNBOOK = ROOT / "docs" / "runbook.md"
DATASOURCE_UID = "prometheus"
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")

# Grafana's built-in interval variables, for evaluating a panel query outside Grafana.
DEFAULT_BUILTINS = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h",
                    "__interval_ms": "60000", "__range_s": "3600", "__range_ms": "3600000"}


# ---------------------------------------------------------------------------------- catalog

def load_catalog(path: Path = CATALOG) -> dict[str, dict]:
    """name -> {"type": ..., "jobs": [...]} from monitoring/metrics.txt."""
    out: dict[str, dict] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 3 or parts[1] not in ("counter", "gauge", "histogram"):
            raise ValueError(f"{path}:{n}: want `name type jobs`, got {line!r}")
        out[parts[0]] = {"type": parts[1], "jobs": parts[2].split(",")}
    return out


def catalog_series(catalog: dict[str, dict]) -> dict[str, list[str]]:
    """Every series name the catalog allows (histograms expanded) -> the jobs exposing it."""
    out: dict[str, list[str]] = {}
    for name, meta in catalog.items():
        names = [name + s for s in HISTOGRAM_SUFFIXES] if meta["type"] == "histogram" else [name]
        for n in names:
            out[n] = meta["jobs"]
    return out


# ------------------------------------------------------------------------------- dashboards

@dataclass
class PanelQuery:
    dashboard: str  # file name
    panel: str
    ref: str
    expr: str
    instant: bool


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def all_panels(dash: dict) -> list[dict]:
    """Every panel, including those inside (collapsed) rows."""
    out = []
    for p in dash.get("panels", []):
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def panel_queries(path: Path, dash: dict) -> list[PanelQuery]:
    out = []
    for p in all_panels(dash):
        if p.get("type") == "row":
            continue
        for t in p.get("targets", []):
            out.append(PanelQuery(path.name, p.get("title", "?"), t.get("refId", "?"),
                                  t.get("expr", ""), bool(t.get("instant"))))
    return out


def variable_values(dash: dict) -> dict[str, str]:
    """The value each template variable takes when "All" is selected, as Grafana would
    substitute it into a Prometheus regex matcher."""
    values = {}
    for v in dash.get("templating", {}).get("list", []):
        if v.get("allValue"):
            values[v["name"]] = v["allValue"]
        elif v.get("type") == "custom":
            opts = [o.strip() for o in v.get("query", "").split(",") if o.strip()]
            values[v["name"]] = "(" + "|".join(re.escape(o) for o in opts) + ")"
        else:
            values[v["name"]] = ".*"
    return values


def variable_queries(dash: dict) -> list[tuple[str, str]]:
    """(variable name, query) of every query variable."""
    out = []
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v.get("query")
            if isinstance(q, dict):
                q = q.get("query", "")
            out.append((v["name"], q or ""))
    return out


_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")


def substitute(expr: str, values: dict[str, str], builtins: dict[str, str] | None = None) -> str:
    """Replaces $var, ${var}, ${var:fmt} and [[var]]; unknown variables stay as they are."""
    env = dict(DEFAULT_BUILTINS if builtins is None else builtins)
    env.update(values)

    def repl(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        return env.get(name, m.group(0))

    return _VAR.sub(repl, expr)


_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(.*),\s*)?(\w+)\s*\)\s*$", re.S)


def label_values_as_promql(query: str) -> str | None:
    """A Grafana `label_values(selector, label)` variable query as a PromQL expression that
    returns one series per value; None for any other kind of variable query."""
    m = _LABEL_VALUES.match(query)
    if not m:
        return None
    selector, label = m.group(1), m.group(2)
    return f"group by ({label}) ({selector})" if selector else f'group by ({label}) ({{{label}!=""}})'


# ------------------------------------------------------------------------------------ PromQL

KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
            "group_right", "offset", "bool", "inf", "nan", "atan2", "start", "end"}
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w.:$])([a-zA-Z_:][\w:]*)")


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (a lexical scan that is good enough for the
    queries here: label matchers, ranges, grouping clauses, strings and function names are
    not metric names)."""
    if "__name__" in expr:
        raise ValueError(f"__name__ matchers are not supported here: {expr}")
    s = _STRINGS.sub('""', expr)
    s = re.sub(r"\{[^}]*\}", "{}", s)
    s = re.sub(r"\[[^\]]*\]", "[]", s)
    s = _GROUPING.sub(" ", s)
    names = set()
    for m in _IDENT.finditer(s):
        word = m.group(1)
        rest = s[m.end():].lstrip()
        if rest.startswith("("):
            continue  # a function or aggregation
        if word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


# ------------------------------------------------------------------------------------ runbook

def markdown_anchors(path: Path = RUNBOOK) -> set[str]:
    """GitHub-style anchors of the Markdown headings in a file."""
    anchors = set()
    if not path.exists():
        return anchors
    in_code = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not line.startswith("#"):
            continue
        title = line.lstrip("#").strip().lower()
        title = re.sub(r"[^\w\- ]", "", title)
        anchors.add(title.replace(" ", "-"))
    return anchors


def load_dashboard(path: Path) -> dict:
    return json.loads(path.read_text())
