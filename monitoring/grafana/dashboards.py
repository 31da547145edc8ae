#!/usr/bin/env python3
"""Writes the Grafana dashboards in monitoring/grafana/dashboards/ (one JSON file each).

    python3 monitoring/grafana/dashboards.py          # regenerate the JSON files
    python3 monitoring/grafana/dashboards.py --check  # fail if a JSON file differs (make test)

Edit the panels here, not in the JSON: scripts/check-monitoring.sh fails when the committed
JSON is not what this script writes. Every query reads the metric names of
monitoring/metrics.txt through the Prometheus data source with uid `prometheus`; services
are told apart by the scrape job (api, redirect, analytics). Standard library only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards"
DS = {"type": "prometheus", "uid": "prometheus"}
RATE = "$__rate_interval"
# Scrapes of /metrics are not requests anyone made.
NOT_SCRAPES = 'http_route!="/metrics"'
UP_DOWN = [{"type": "value", "options": {
    "0": {"text": "DOWN", "color": "red", "index": 1},
    "1": {"text": "UP", "color": "green", "index": 0},
}}]


# ----------------------------------------------------------------------------- builders

def target(expr: str, legend: str = "", instant: bool = False, table: bool = False) -> dict:
    t = {"datasource": DS, "expr": expr, "legendFormat": legend or "__auto",
         "range": not instant, "instant": instant}
    if table:
        t["format"] = "table"
    return t


def timeseries(title: str, targets: list[dict], unit: str = "short", desc: str = "",
               w: int = 12, h: int = 8, stack: bool = False, min0: bool = True) -> dict:
    defaults = {"unit": unit, "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10,
                                         "showPoints": "never", "spanNulls": False}}
    if min0:
        defaults["min"] = 0
    if stack:
        defaults["custom"]["stacking"] = {"mode": "normal", "group": "A"}
    return {"type": "timeseries", "title": title, "description": desc, "_w": w, "_h": h,
            "targets": targets, "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "desc"}}}


def stat(title: str, targets: list[dict], unit: str = "short", desc: str = "", w: int = 6,
         h: int = 4, mappings: list | None = None, steps: list | None = None) -> dict:
    steps = steps or [{"color": "blue", "value": None}]
    return {"type": "stat", "title": title, "description": desc, "_w": w, "_h": h,
            "targets": targets,
            "fieldConfig": {"defaults": {"unit": unit, "mappings": mappings or [],
                                         "thresholds": {"mode": "absolute", "steps": steps}},
                            "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "background",
                        "graphMode": "none" if all(t["instant"] for t in targets) else "area",
                        "justifyMode": "auto",
                        "orientation": "auto", "textMode": "value_and_name"}}


def table(title: str, targets: list[dict], desc: str = "", w: int = 12, h: int = 10,
          rename: dict | None = None, sort_by: str = "") -> dict:
    options: dict = {"showHeader": True, "cellHeight": "sm"}
    if sort_by:
        options["sortBy"] = [{"displayName": sort_by, "desc": True}]
    return {"type": "table", "title": title, "description": desc, "_w": w, "_h": h,
            "targets": targets,
            "fieldConfig": {"defaults": {}, "overrides": []},
            "options": options,
            "transformations": [{"id": "organize", "options": {
                "excludeByName": {"Time": True}, "indexByName": {}, "renameByName": rename or {}}}]}


def quantiles(metric: str, selector: str, by: str = "", qs=(0.5, 0.99), legend_prefix: str = "") -> list[dict]:
    """histogram_quantile targets of a _bucket series, optionally split by labels."""
    group = f"{by}, le" if by else "le"
    out = []
    for q in qs:
        pct = f"p{int(q * 100)}"
        legend = (f"{legend_prefix}{' '.join('{{' + l.strip() + '}}' for l in by.split(','))} {pct}"
                  if by else f"{legend_prefix}{pct}")
        out.append(target(
            f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{{{selector}}}[{RATE}])))",
            legend.strip()))
    return out


def mean_and_p99(metric: str, selector: str) -> list[dict]:
    return [
        target(f"sum(rate({metric}_sum{{{selector}}}[{RATE}])) / sum(rate({metric}_count{{{selector}}}[{RATE}]))",
               "mean"),
        target(f"histogram_quantile(0.99, sum by (le) (rate({metric}_bucket{{{selector}}}[{RATE}])))", "p99"),
    ]


def ratio_or_zero(part: str, whole: str, by: str = "") -> str:
    """part / whole, with 0 (not "no data") where `part` has no series yet."""
    agg = f"sum by ({by}) " if by else "sum"
    return (f"({agg}(rate({part}[{RATE}])) or {agg}(rate({whole}[{RATE}])) * 0)"
            f" / {agg}(rate({whole}[{RATE}]))")


def custom_var(name: str, label: str, values: list[str]) -> dict:
    return {"name": name, "label": label, "type": "custom", "query": ",".join(values),
            "multi": True, "includeAll": True, "hide": 0,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "options": [{"selected": True, "text": "All", "value": "$__all"}]
            + [{"selected": False, "text": v, "value": v} for v in values]}


def label_var(name: str, label: str, query: str) -> dict:
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "query": query, "definition": query, "refresh": 2, "sort": 1,
            "multi": True, "includeAll": True, "allValue": ".*", "hide": 0,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "options": []}


def dashboard(uid: str, title: str, desc: str, rows: list[tuple[str, list[dict]]],
              variables: list[dict] | None = None) -> dict:
    """Lays the panels out left to right in 24-column rows under a row header each."""
    panels, y, pid = [], 0, 1
    for row_title, row_panels in rows:
        panels.append({"type": "row", "title": row_title, "collapsed": False, "id": pid,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid += 1
        y += 1
        x, line_h = 0, 0
        for p in row_panels:
            w, h = p.pop("_w"), p.pop("_h")
            if x + w > 24:
                x, y, line_h = 0, y + line_h, 0
            p["gridPos"] = {"h": h, "w": w, "x": x, "y": y}
            p["id"] = pid
            p["datasource"] = DS
            for i, t in enumerate(p["targets"]):
                t["refId"] = chr(ord("A") + i)
            panels.append(p)
            pid += 1
            x += w
            line_h = max(line_h, h)
        y += line_h
    return {
        "uid": uid, "title": title, "description": desc, "tags": ["shortline"],
        "editable": True, "graphTooltip": 1, "refresh": "30s", "schemaVersion": 39,
        "version": 1, "timezone": "utc", "time": {"from": "now-1h", "to": "now"},
        "timepicker": {}, "fiscalYearStartMonth": 0, "liveNow": False,
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts", "type": "dashboard"}]},
        "links": [{"type": "dashboards", "tags": ["shortline"], "asDropdown": False,
                   "includeVars": False, "keepTime": True, "title": "Shortline",
                   "icon": "external link", "targetBlank": False, "tooltip": "", "url": ""}],
        "templating": {"list": variables or []},
        "panels": panels,
    }


# --------------------------------------------------------------------------- dashboards

def service_overview() -> dict:
    sel = 'job=~"$job", instance=~"$instance"'
    http = f"http_server_request_duration_seconds_count{{{sel}, {NOT_SCRAPES}}}"
    http5 = f'http_server_request_duration_seconds_count{{{sel}, {NOT_SCRAPES}, http_response_status_code=~"5.."}}'
    http4 = f'http_server_request_duration_seconds_count{{{sel}, {NOT_SCRAPES}, http_response_status_code=~"4.."}}'
    hsel = f"{sel}, {NOT_SCRAPES}"
    rows = [
        ("Targets and dependencies", [
            stat("Target up", [target(f'up{{{sel}}}', "{{job}} {{instance}}")],
                 desc="1 when Prometheus' last scrape of the replica succeeded.", w=8, h=5,
                 mappings=UP_DOWN, steps=[{"color": "red", "value": None}, {"color": "green", "value": 1}]),
            stat("Dependency up", [target(f"min by (job, dependency) (shortline_dependency_up{{{sel}}})",
                                          "{{job}} → {{dependency}}")],
                 desc="0 when any replica of the service reports the dependency unreachable.",
                 w=10, h=5, mappings=UP_DOWN,
                 steps=[{"color": "red", "value": None}, {"color": "green", "value": 1}]),
            stat("Uptime", [target(f"time() - process_start_time_seconds{{{sel}}}", "{{job}} {{instance}}")],
                 unit="s", desc="Time since each process started (restarts reset it).", w=6, h=5),
        ]),
        ("Requests (RED)", [
            timeseries("Request rate by service", [target(f"sum by (job) (rate({http}[{RATE}]))", "{{job}}")],
                       unit="reqps", desc="Requests per second, /metrics scrapes left out."),
            timeseries("Error rate (5xx share)",
                       [target(ratio_or_zero(http5, http, "job"), "{{job}}")], unit="percentunit",
                       desc="Share of requests answered 5xx. Alerts: warning above 5%, critical above 25%."),
            timeseries("Request rate by route and status",
                       [target(f"sum by (job, http_route, http_response_status_code) (rate({http}[{RATE}]))",
                               "{{job}} {{http_route}} {{http_response_status_code}}")],
                       unit="reqps", desc="Routes are templates (/urls/{id}); `unmatched` is any path no route knows."),
            timeseries("Client errors (4xx share)",
                       [target(ratio_or_zero(http4, http, "job"), "{{job}}")], unit="percentunit",
                       desc="Share of requests answered 4xx (validation errors, unknown short codes)."),
            timeseries("Latency p50 by route",
                       quantiles("http_server_request_duration_seconds", hsel, "job, http_route", (0.5,)),
                       unit="s", w=8),
            timeseries("Latency p95 by route",
                       quantiles("http_server_request_duration_seconds", hsel, "job, http_route", (0.95,)),
                       unit="s", w=8, desc="Alerts: api and analytics above 2 s, redirect above 50 ms."),
            timeseries("Latency p99 by route",
                       quantiles("http_server_request_duration_seconds", hsel, "job, http_route", (0.99,)),
                       unit="s", w=8),
        ]),
        ("Processes", [
            timeseries("CPU", [target(f"rate(process_cpu_seconds_total{{{sel}}}[{RATE}])", "{{job}} {{instance}}")],
                       unit="short", w=8, desc="CPU cores used per replica (the containers' limit is 1)."),
            timeseries("Resident memory", [target(f"process_resident_memory_bytes{{{sel}}}", "{{job}} {{instance}}")],
                       unit="bytes", w=8, desc="Limits: 512 MiB api and redirect, 384 MiB analytics."),
            timeseries("Open file descriptors",
                       [target(f"process_open_fds{{{sel}}} / process_max_fds{{{sel}}}", "{{job}} {{instance}}")],
                       unit="percentunit", w=8, desc="Share of the file descriptor limit in use."),
            timeseries("Threads", [target(f"process_threads{{{sel}}}", "{{job}} {{instance}}")], w=8),
            timeseries("Virtual memory", [target(f"process_virtual_memory_bytes{{{sel}}}", "{{job}} {{instance}}")],
                       unit="bytes", w=8),
        ]),
        ("Database pool", [
            timeseries("DB pool usage",
                       [target(f'sum by (job, instance) (shortline_db_pool_connections{{{sel}, state="in_use"}})'
                               f" / sum by (job, instance) (shortline_db_pool_max_connections{{{sel}}})",
                               "{{job}} {{instance}}")],
                       unit="percentunit", desc="Connections in use over the pool size. Alert above 90% for 10 minutes."),
            timeseries("DB pool connections",
                       [target(f"sum by (job, state) (shortline_db_pool_connections{{{sel}}})", "{{job}} {{state}}"),
                        target(f"sum by (job) (shortline_db_pool_max_connections{{{sel}}})", "{{job}} max")],
                       desc="Idle and in-use connections, summed over the replicas, and the sum of the pool sizes."),
        ]),
    ]
    return dashboard(
        "shortline-overview", "Shortline / Service overview",
        "Rate, errors and duration per service and route; targets, dependencies, processes, database pools.",
        rows,
        [custom_var("job", "service", ["api", "redirect", "analytics"]),
         label_var("instance", "instance", 'label_values(up{job=~"$job"}, instance)')])


def redirect_hot_path() -> dict:
    sel = 'job="redirect", instance=~"$instance"'
    route = f'{sel}, http_route="/{{short_code}}"'
    lookups = f"shortline_redirect_lookups_total{{{sel}}}"
    rows = [
        ("Redirects", [
            timeseries("Redirects/s by status",
                       [target(f"sum by (http_request_method, http_response_status_code) "
                               f"(rate(http_server_request_duration_seconds_count{{{route}}}[{RATE}]))",
                               "{{http_request_method}} {{http_response_status_code}}")],
                       unit="reqps", desc="GET|HEAD /{short_code}: 302 found, 404 unknown or inactive, 503 PostgreSQL down."),
            timeseries("Redirect latency",
                       quantiles("http_server_request_duration_seconds", route, qs=(0.5, 0.95, 0.99)),
                       unit="s", desc="Alert: p95 above 50 ms for 10 minutes."),
            timeseries("Refused by reason/s",
                       [target(f"sum by (reason) (rate(shortline_redirect_refused_total{{{sel}}}[{RATE}]))",
                               "{{reason}}")],
                       unit="reqps", w=24,
                       desc="Requests for links with rules that did not redirect: expired and exhausted (410), "
                            "wrong_password (401), attempts_limited (429), uncounted (503: Valkey could not count "
                            "a click-limited or password-protected link; alert ShortlineLinksUncounted)."),
        ]),
        ("Cache", [
            timeseries("Lookups by layer and result",
                       [target(f"sum by (layer, result) (rate({lookups}[{RATE}]))", "{{layer}} {{result}}")],
                       unit="ops", stack=True,
                       desc="Which layer answered each lookup: l1 (in-process), l2 (Valkey), db (PostgreSQL)."),
            timeseries("Cache hit ratio",
                       [target(ratio_or_zero(f'shortline_redirect_lookups_total{{{sel}, layer=~"l1|l2"}}', lookups),
                               "L1 or L2"),
                        target(ratio_or_zero(f'shortline_redirect_lookups_total{{{sel}, layer="l1"}}', lookups),
                               "L1 only")],
                       unit="percentunit", desc="Share of lookups answered without PostgreSQL. Alert below 50%."),
            timeseries("Valkey errors/s",
                       [target(f"sum by (instance) (rate(shortline_redirect_valkey_errors_total{{{sel}}}[{RATE}]))",
                               "{{instance}}")],
                       unit="ops", desc="Failed or timed-out Valkey commands; lookups carry on without L2."),
            timeseries("Invalidations/s",
                       [target(f"sum by (instance) (rate(shortline_redirect_invalidations_total{{{sel}}}[{RATE}]))",
                               "{{instance}}")],
                       unit="ops", desc="Link changes applied to the caches (from the change stream)."),
        ]),
        ("Clicks", [
            timeseries("Click buffer depth", [target(f"shortline_clicks_buffer_depth{{{sel}}}", "{{instance}}")],
                       desc="Clicks waiting to be published (bounded by CLICK_BUFFER)."),
            timeseries("Clicks buffered / published / dropped",
                       [target(f"sum(rate(shortline_clicks_buffered_total{{{sel}}}[{RATE}]))", "buffered"),
                        target(f"sum(rate(shortline_clicks_published_total{{{sel}}}[{RATE}]))", "published"),
                        target(f"sum by (reason) (rate(shortline_clicks_dropped_total{{{sel}}}[{RATE}]))",
                               "dropped {{reason}}")],
                       unit="cps", desc="Per second. Any drop is lost analytics data (alert)."),
            timeseries("Click publish failures/s",
                       [target(f"sum by (instance) (rate(shortline_clicks_publish_failures_total{{{sel}}}[{RATE}]))",
                               "{{instance}}")],
                       unit="ops", w=8, desc="Batches NATS did not acknowledge; they are retried."),
            timeseries("Click publish latency",
                       quantiles("shortline_clicks_publish_duration_seconds", sel), unit="s", w=8,
                       desc="Time to publish one batch and get its ack."),
            timeseries("Click batch size", mean_and_p99("shortline_clicks_batch_size", sel), w=8,
                       desc="Clicks per published batch (at most CLICK_BATCH_MAX)."),
        ]),
    ]
    return dashboard(
        "shortline-redirect", "Shortline / Redirect hot path",
        "The redirect service: traffic, latency, cache layers, Valkey, invalidations and the click buffer.",
        rows, [label_var("instance", "instance", 'label_values(up{job="redirect"}, instance)')])


def event_pipeline() -> dict:
    api = 'job="api"'
    an = 'job="analytics"'
    rows = [
        ("Outbox (api)", [
            timeseries("Outbox backlog", [target(f"max(shortline_outbox_backlog{{{api}}})", "rows")], w=8,
                       desc="Committed changes not yet published to NATS (every api replica reports the same table)."),
            timeseries("Outbox published / failures",
                       [target(f"sum(rate(shortline_outbox_published_total{{{api}}}[{RATE}]))", "published"),
                        target(f"sum(rate(shortline_outbox_publish_failures_total{{{api}}}[{RATE}]))", "failures")],
                       unit="ops", w=8),
            timeseries("Outbox publish latency", quantiles("shortline_outbox_publish_duration_seconds", api),
                       unit="s", w=8, desc="Time to publish one outbox batch and get the acks."),
            timeseries("Invalidation wait by outcome",
                       quantiles("shortline_invalidation_wait_duration_seconds", api, "outcome"), unit="s",
                       desc="How long a link write waited for every redirect replica to drop the link "
                            "(timeout: INVALIDATION_WAIT_MS ran out)."),
            timeseries("Invalidation waits/s by outcome",
                       [target(f"sum by (outcome) (rate(shortline_invalidation_wait_duration_seconds_count{{{api}}}[{RATE}]))",
                               "{{outcome}}")], unit="ops", stack=True),
        ]),
        ("Analytics consumer", [
            timeseries("Consumer pending / ack pending",
                       [target(f"max(shortline_analytics_consumer_pending{{{an}}})", "pending"),
                        target(f"max(shortline_analytics_consumer_ack_pending{{{an}}})", "ack pending")],
                       w=8, desc="Click messages not yet delivered / delivered but not acked (stream-wide)."),
            timeseries("Oldest unacked click",
                       [target(f"max(shortline_analytics_consumer_oldest_unacked_age_seconds{{{an}}})", "age")],
                       unit="s", w=8, desc="Age of the oldest click not yet written. Alert above 2 minutes."),
            timeseries("Rows written / duplicates",
                       [target(f"sum(rate(shortline_analytics_rows_written_total{{{an}}}[{RATE}]))", "written"),
                        target(f"sum(rate(shortline_analytics_duplicates_total{{{an}}}[{RATE}]))", "duplicates")],
                       unit="rowsps", w=8, desc="Duplicates are redeliveries the event_id made harmless."),
            timeseries("Batch size", mean_and_p99("shortline_analytics_batch_size", an), w=8,
                       desc="Clicks per write statement."),
            timeseries("Write latency", quantiles("shortline_analytics_write_duration_seconds", an), unit="s", w=8),
            timeseries("End-to-end latency", quantiles("shortline_analytics_end_to_end_duration_seconds", an),
                       unit="s", w=8, desc="From the redirect to the committed event row."),
        ]),
        ("Analytics rollup job", [
            timeseries("Oldest backlog row",
                       [target(f"max(shortline_analytics_rollup_backlog_oldest_age_seconds{{{an}}})", "age")],
                       unit="s", w=8,
                       desc="How far the referrer and user-agent breakdowns trail the event rows: "
                            "about ANALYTICS_ROLLUP_INTERVAL_MS, up to ANALYTICS_ROLLUP_MAX_DEFER_SECS while the "
                            "consumer drains a backlog. Alert above 5 minutes."),
            timeseries("Rows folded / runs",
                       [target(f"sum(rate(shortline_analytics_rollup_rows_total{{{an}}}[{RATE}]))", "rows"),
                        target(f"sum(rate(shortline_analytics_rollup_runs_total{{{an}}}[{RATE}]))", "runs"),
                        target(f"sum(rate(shortline_analytics_rollup_failures_total{{{an}}}[{RATE}]))", "failures")],
                       unit="ops", w=8, desc="Backlog rows added to the breakdowns, rollup transactions and failed attempts, per second."),
            timeseries("Rollup duration", quantiles("shortline_analytics_rollup_duration_seconds", an),
                       unit="s", w=8, desc="One rollup transaction (up to ANALYTICS_ROLLUP_MAX_EVENTS rows)."),
        ]),
        ("Failures", [
            timeseries("Failures/s",
                       [target(f"sum(rate(shortline_analytics_dead_letters_total{{{an}}}[{RATE}]))", "dead letters"),
                        target(f"sum(rate(shortline_analytics_undecodable_total{{{an}}}[{RATE}]))", "undecodable"),
                        target(f"sum(rate(shortline_analytics_write_failures_total{{{an}}}[{RATE}]))", "write failures"),
                        target(f"sum(rate(shortline_outbox_publish_failures_total{{{api}}}[{RATE}]))",
                               "outbox publish failures")],
                       unit="ops", w=12),
            stat("Dead letters in range",
                 [target(f"sum(increase(shortline_analytics_dead_letters_total{{{an}}}[$__range]))", "dead letters",
                         instant=True)],
                 w=4, steps=[{"color": "green", "value": None}, {"color": "red", "value": 1}]),
            stat("Undecodable in range",
                 [target(f"sum(increase(shortline_analytics_undecodable_total{{{an}}}[$__range]))", "undecodable",
                         instant=True)],
                 w=4, steps=[{"color": "green", "value": None}, {"color": "orange", "value": 1}]),
            stat("Write failures in range",
                 [target(f"sum(increase(shortline_analytics_write_failures_total{{{an}}}[$__range]))",
                         "write failures", instant=True)],
                 w=4, steps=[{"color": "green", "value": None}, {"color": "orange", "value": 1}]),
        ]),
    ]
    return dashboard(
        "shortline-pipeline", "Shortline / Event pipeline",
        "Changes from the api outbox to NATS and the redirect caches; clicks from NATS to the analytics tables.",
        rows)


def business() -> dict:
    api = 'job="api"'
    redirects = 'job="redirect", http_route="/{short_code}", http_response_status_code="302"'
    rows = [
        ("In the selected time range", [
            stat("Links created", [target(f"sum(increase(shortline_links_created_total{{{api}}}[$__range]))",
                                          "links", instant=True)], w=6),
            stat("Redirects", [target(f"sum(increase(http_server_request_duration_seconds_count{{{redirects}}}[$__range]))",
                                      "redirects", instant=True)], w=6),
            stat("Users imported", [target(f"sum(increase(shortline_users_imported_total{{{api}}}[$__range]))",
                                           "users", instant=True)], w=6),
            stat("Short-code collisions",
                 [target(f"sum(increase(shortline_short_code_collisions_total{{{api}}}[$__range]))", "collisions",
                         instant=True)],
                 w=6, desc="Generated codes that were taken and drawn again."),
        ]),
        ("Activity", [
            timeseries("Links created per minute",
                       [target(f"sum(rate(shortline_links_created_total{{{api}}}[{RATE}])) * 60", "links")],
                       unit="cpm"),
            timeseries("Redirects per minute",
                       [target(f"sum(rate(http_server_request_duration_seconds_count{{{redirects}}}[{RATE}])) * 60",
                               "redirected (302)"),
                        target('sum(rate(http_server_request_duration_seconds_count{job="redirect", '
                               f'http_route="/{{short_code}}", http_response_status_code="404"}}[{RATE}])) * 60',
                               "unknown or inactive (404)")],
                       unit="reqpm"),
            timeseries("Users imported per minute",
                       [target(f"sum(rate(shortline_users_imported_total{{{api}}}[{RATE}])) * 60", "users")],
                       unit="cpm"),
            timeseries("Short-code collisions per minute",
                       [target(f"sum(rate(shortline_short_code_collisions_total{{{api}}}[{RATE}])) * 60",
                               "collisions")],
                       unit="cpm", desc="Rising collisions mean the code space is filling up (SHORT_CODE_LENGTH)."),
        ]),
        ("Top links", [
            table("Top links (last hour)",
                  [target('topk(10, max by (short_code, url_id) (shortline_top_link_redirects{job="analytics"}))',
                          instant=True, table=True)],
                  desc="Redirects in the last hour of the ten busiest links (analytics refreshes it every ~15 s).",
                  rename={"short_code": "short code", "url_id": "url id", "Value": "redirects (last hour)"},
                  sort_by="redirects (last hour)"),
            timeseries("Top links over time",
                       [target('max by (short_code) (shortline_top_link_redirects{job="analytics"})',
                               "{{short_code}}")],
                       desc="The same gauge over time: redirects in the hour before each point."),
        ]),
    ]
    return dashboard("shortline-business", "Shortline / Business",
                     "Links, redirects, imports and the busiest links.", rows)


DASHBOARDS = {
    "service-overview.json": service_overview,
    "redirect-hot-path.json": redirect_hot_path,
    "event-pipeline.json": event_pipeline,
    "business.json": business,
}


def render(build) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="fail if a committed JSON file differs")
    args = ap.parse_args()
    stale = []
    for name, build in DASHBOARDS.items():
        path = OUT / name
        text = render(build)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"dashboards differ from monitoring/grafana/dashboards.py: {', '.join(stale)} "
              "(run python3 monitoring/grafana/dashboards.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
