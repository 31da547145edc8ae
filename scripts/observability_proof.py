#!/usr/bin/env python3
"""The checking half of scripts/observability-proof.sh (standard library only).

Given a Prometheus that scrapes the three services (jobs api, redirect, analytics) and loads
monitoring/prometheus/rules/*.yml, and the edge of the running stack, it

  1. waits until every target is up and every rule group is loaded with health ok;
  2. sends traffic through the edge: a user, a CSV import, links, redirects (hits, misses,
     HEAD, an unknown code), a validation error, an update, stats and events, and waits
     until analytics has written the clicks;
  3. evaluates every panel query of every dashboard (template variables set to "All",
     Grafana's interval variables to short windows) and every variable query; a query that
     errors fails, and so does one that returns no series (traffic made every metric move,
     and failure counters start at 0);
  4. evaluates every alert expression (an error fails; a result is reported, since it would
     fire) and checks that every metric name it uses exists in Prometheus;
  5. checks that every name in monitoring/metrics.txt is exposed by every job it lists;

and prints one table. Only loopback addresses are accepted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import sys
import time
import urllib.parse
import uuid

import monitoring_lib as ml

JOBS = ("api", "redirect", "analytics")
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
# Grafana's interval variables, sized for a Prometheus that scrapes every second and has
# been running for a minute or so.
BUILTINS = {"__rate_interval": "30s", "__interval": "15s", "__range": "5m",
            "__interval_ms": "15000", "__range_s": "300", "__range_ms": "300000"}
# Panel queries that may legitimately return nothing after the proof's traffic:
# (dashboard file, panel title) -> why. Empty: every panel is expected to show data.
MAY_BE_EMPTY: dict[tuple[str, str], str] = {}


class Http:
    """Plain HTTP to one loopback host:port (no proxies, no redirects followed)."""

    def __init__(self, base: str, headers: dict | None = None) -> None:
        self.default_headers = headers or {}
        u = urllib.parse.urlsplit(base if "://" in base else f"http://{base}")
        if u.hostname not in LOOPBACK and f"[{u.hostname}]" not in LOOPBACK:
            raise SystemExit(f"refusing a non-loopback address: {base}")
        self.host, self.port = u.hostname, u.port or 80
        self.base = f"http://{u.netloc}"

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None, timeout: float = 15) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers={**self.default_headers, **(headers or {})})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, payload=None) -> tuple[int, object]:
        body = json.dumps(payload).encode() if payload is not None else None
        headers = {"content-type": "application/json"} if body is not None else {}
        status, _, data = self.request(method, path, body, headers)
        try:
            return status, json.loads(data) if data else None
        except ValueError:
            return status, data.decode(errors="replace")


class Prometheus(Http):
    def api(self, path: str, **params) -> dict:
        q = f"{path}?{urllib.parse.urlencode(params)}" if params else path
        status, _, data = self.request("GET", q)
        try:
            doc = json.loads(data)
        except ValueError:
            return {"status": "error", "error": f"HTTP {status}: {data[:200]!r}"}
        return doc

    def query(self, expr: str) -> tuple[str | None, list]:
        """(error or None, result vector) of an instant query at the current time."""
        doc = self.api("/api/v1/query", query=expr)
        if doc.get("status") != "success":
            return f"{doc.get('errorType', 'error')}: {doc.get('error', doc)}", []
        data = doc["data"]
        result = data["result"]
        if data["resultType"] == "scalar":
            result = [result]
        return None, result


# ------------------------------------------------------------------------------------ table

rows: list[tuple[str, str, str, str]] = []
failures = 0


def row(kind: str, where: str, result: str, detail: str = "", fail: bool = False) -> None:
    global failures
    if fail:
        failures += 1
        result = "FAIL " + result
    rows.append((kind, where, result, detail))


def print_table() -> None:
    widths = [max(len(r[i]) for r in rows + [("check", "where", "result", "")]) for i in range(3)]
    widths[1] = min(widths[1], 70)
    line = f"{{:<{widths[0]}}}  {{:<{widths[1]}}}  {{:<{widths[2]}}}  {{}}"
    print(line.format("check", "where", "result", "detail"))
    print(line.format("-" * widths[0], "-" * widths[1], "-" * widths[2], "------"))
    for kind, where, result, detail in rows:
        print(line.format(kind, where[:70], result, detail[:1000]))


# ---------------------------------------------------------------------------------- phases

def wait_for_targets(prom: Prometheus, timeout: float) -> bool:
    deadline = time.time() + timeout
    state: dict[str, str] = {}
    while time.time() < deadline:
        doc = prom.api("/api/v1/targets", state="active")
        state = {}
        for t in doc.get("data", {}).get("activeTargets", []):
            job = t["labels"].get("job", "")
            if t.get("health") == "up":
                state.setdefault(job, "up")
            else:
                state[job] = f"{t.get('health')}: {t.get('lastError', '')}"
        if all(state.get(j) == "up" for j in JOBS):
            break
        time.sleep(0.5)
    ok = True
    for j in JOBS:
        good = state.get(j) == "up"
        ok &= good
        row("target", j, "up" if good else "not up", "" if good else state.get(j, "no target"), fail=not good)
    return ok


def rule_names_in_files() -> list[str]:
    names = []
    for path in sorted(ml.RULES.glob("*.yml")):
        names += re.findall(r"^\s*-\s*(?:alert|record):\s*(\S+)", path.read_text(), re.M)
    return names


def check_rules(prom: Prometheus, timeout: float) -> list[dict]:
    """Waits for every rule to have been evaluated; returns the alerting rules."""
    want = rule_names_in_files()
    deadline = time.time() + timeout
    groups: list = []
    while time.time() < deadline:
        groups = prom.api("/api/v1/rules").get("data", {}).get("groups", [])
        rules = [r for g in groups for r in g["rules"]]
        if len(rules) == len(want) and all(r.get("health") != "unknown" for r in rules):
            break
        time.sleep(0.5)
    alerting = []
    loaded = sorted(r["name"] for g in groups for r in g["rules"])
    missing = sorted(set(want) - set(loaded))
    row("rules", "loaded", f"{len(groups)} groups, {len(loaded)} rules",
        f"missing: {', '.join(missing)}" if missing else "", fail=bool(missing) or len(loaded) != len(want))
    for g in groups:
        bad = [f"{r['name']}: {r.get('health')} {r.get('lastError', '')}".strip()
               for r in g["rules"] if r.get("health") != "ok"]
        row("rules", f"group {g['name']}", "health ok" if not bad else "unhealthy", "; ".join(bad), fail=bool(bad))
        alerting += [r for r in g["rules"] if r.get("type") == "alerting"]
    return alerting


def send_traffic(edge: Http) -> list[int]:
    """Traffic through the edge; returns the ids of the links that got GET redirects."""
    suffix = uuid.uuid4().hex[:10]
    expect: list[tuple[str, int, int]] = []

    def call(what: str, want: int, status: int) -> bool:
        expect.append((what, want, status))
        return status == want

    status, user = edge.json("POST", "/users", {"username": f"obsproof{suffix}",
                                                 "email": f"obsproof{suffix}@example.com"})
    call("POST /users", 201, status)
    user_id = user.get("id") if isinstance(user, dict) else None

    boundary = f"obsproof{suffix}"
    csv = f"username,email\nobsproofa{suffix},obsproofa{suffix}@example.com\nobsproofb{suffix},obsproofb{suffix}@example.com\n"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"users.csv\"\r\n"
            f"Content-Type: text/csv\r\n\r\n{csv}\r\n--{boundary}--\r\n").encode()
    status, _, _ = edge.request("POST", "/users/bulk", body,
                                {"content-type": f"multipart/form-data; boundary={boundary}"})
    call("POST /users/bulk", 201, status)

    links: list[tuple[int, str]] = []
    for i in range(3):
        status, link = edge.json("POST", "/urls", {"user_id": user_id,
                                                   "original_url": f"https://example.com/obsproof/{suffix}/{i}",
                                                   "title": f"observability proof {i}"})
        if call("POST /urls", 201, status) and isinstance(link, dict):
            links.append((link["id"], link["short_code"]))
    status, _ = edge.json("POST", "/urls", {"user_id": user_id, "original_url": "not a url"})
    call("POST /urls (invalid)", 400, status)

    for _, code in links:
        for _ in range(3):
            status, _, _ = edge.request("GET", f"/{code}")
            call("GET /{short_code}", 302, status)
    if links:
        status, _, _ = edge.request("HEAD", f"/{links[0][1]}")
        call("HEAD /{short_code}", 302, status)
    status, _, _ = edge.request("GET", f"/obsproof-missing-{suffix}")
    call("GET unknown code", 404, status)

    if links:
        url_id = links[0][0]
        status, _ = edge.json("PUT", f"/urls/{url_id}", {"title": "observability proof, renamed"})
        call("PUT /urls/{id}", 200, status)
        status, _ = edge.json("GET", f"/urls/{url_id}/stats")
        call("GET /urls/{id}/stats", 200, status)
        status, _ = edge.json("GET", f"/events?url_id={url_id}")
        call("GET /events", 200, status)
    status, _ = edge.json("GET", "/users?per_page=1")
    call("GET /users", 200, status)

    by_what: dict[str, list] = {}
    for what, want, got in expect:
        by_what.setdefault(what, []).append((want, got))
    for what, results in by_what.items():
        bad = [got for want, got in results if got != want]
        row("traffic", what, f"{len(results) - len(bad)}/{len(results)} as expected",
            f"want {results[0][0]}, got {bad}" if bad else "", fail=bool(bad))
    return [url_id for url_id, _ in links]


def wait_for_clicks(edge: Http, url_ids: list[int], timeout: float) -> None:
    deadline = time.time() + timeout
    pending = set(url_ids)
    while pending and time.time() < deadline:
        for url_id in list(pending):
            status, events = edge.json("GET", f"/events?url_id={url_id}&event_type=redirect")
            if status == 200 and isinstance(events, list) and len(events) >= 3:
                pending.discard(url_id)
        time.sleep(0.3)
    row("traffic", "clicks written by analytics", "all" if not pending else "missing",
        f"links without their 3 redirect events: {sorted(pending)}" if pending else "", fail=bool(pending))


def panel_checks(prom: Prometheus, settle: float) -> None:
    checks = []  # (kind, where, expr, may_be_empty_reason)
    for path in ml.dashboard_files():
        dash = ml.load_dashboard(path)
        values = ml.variable_values(dash)
        for name, query in ml.variable_queries(dash):
            promql = ml.label_values_as_promql(ml.substitute(query, values, BUILTINS))
            checks.append(("variable", f"{path.stem}: ${name}", promql or query, None))
        for q in ml.panel_queries(path, dash):
            reason = MAY_BE_EMPTY.get((path.name, q.panel))
            checks.append(("panel", f"{path.stem}: {q.panel} [{q.ref}]",
                           ml.substitute(q.expr, values, BUILTINS), reason))
    # Some series appear only a scrape or a refresh after the traffic (the top-links gauge
    # is refreshed every ~15 s): retry the empty ones until `settle` runs out.
    results: dict[int, tuple[str | None, list]] = {}
    deadline = time.time() + settle
    while True:
        for i, (_, _, expr, _) in enumerate(checks):
            if i not in results or (results[i][0] is None and not results[i][1]):
                results[i] = prom.query(expr)
        empty = [i for i, c in enumerate(checks) if results[i][0] is None and not results[i][1] and c[3] is None]
        if not empty or time.time() > deadline:
            break
        time.sleep(2)
    for i, (kind, where, expr, reason) in enumerate(checks):
        err, result = results[i]
        if err:
            row(kind, where, "query error", err, fail=True)
        elif result:
            row(kind, where, f"ok, {len(result)} series")
        elif reason:
            row(kind, where, "empty (allowed)", reason)
        else:
            row(kind, where, "no series", expr, fail=True)


def alert_checks(prom: Prometheus, alerting: list[dict], names: set[str]) -> None:
    for rule in alerting:
        where = f"{rule['name']} ({rule.get('labels', {}).get('severity', '?')})"
        err, result = prom.query(rule["query"])
        missing = sorted(ml.metric_names(rule["query"]) - names)
        if err:
            row("alert", where, "query error", err, fail=True)
        elif missing:
            row("alert", where, "unknown metric", ", ".join(missing), fail=True)
        elif result:
            labels = [",".join(f"{k}={v}" for k, v in r.get("metric", {}).items()) for r in result]
            row("alert", where, f"would fire ({len(result)})", "; ".join(labels) + f" [state: {rule.get('state')}]")
        else:
            row("alert", where, "ok, quiet")


def catalog_checks(prom: Prometheus) -> None:
    err, result = prom.query('group by (__name__, job) ({job=~"api|redirect|analytics"})')
    if err:
        row("catalog", "query", "query error", err, fail=True)
        return
    have = {(r["metric"].get("__name__"), r["metric"].get("job")) for r in result}
    missing_by_job: dict[str, list[str]] = {}
    total = 0
    for name, jobs in sorted(ml.catalog_series(ml.load_catalog()).items()):
        for job in jobs:
            total += 1
            if (name, job) not in have:
                missing_by_job.setdefault(job, []).append(name)
    for job in JOBS:
        missing = missing_by_job.get(job, [])
        row("catalog", f"job {job}", "all names exposed" if not missing else f"{len(missing)} missing",
            ", ".join(missing), fail=bool(missing))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prometheus", required=True, help="e.g. http://127.0.0.1:39090")
    ap.add_argument("--edge", required=True, help="e.g. http://127.0.0.1:8000")
    ap.add_argument("--settle", type=float, default=40, help="seconds to wait for late series")
    args = ap.parse_args()
    key = os.environ.get("SHORTLINE_API_KEY", "").strip()
    edge_headers = {"authorization": f"Bearer {key}"} if key else {}
    prom, edge = Prometheus(args.prometheus), Http(args.edge, edge_headers)

    if wait_for_targets(prom, 30):
        alerting = check_rules(prom, 30)
        url_ids = send_traffic(edge)
        wait_for_clicks(edge, url_ids, 20)
        time.sleep(3)  # a few more scrapes, so every new series has two samples
        panel_checks(prom, args.settle)
        names = set(prom.api("/api/v1/label/__name__/values").get("data", []))
        alert_checks(prom, alerting, names)
        catalog_checks(prom)
    print_table()
    print(f"\nobservability proof: {len(rows) - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
