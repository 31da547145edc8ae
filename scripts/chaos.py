#!/usr/bin/env python3
"""The fault suite behind `make chaos` (run it through scripts/chaos.sh, which sets the
environment read here). Standard library only.

For each fault, on fresh links (so that every count belongs to one fault):
  1. creates CHAOS_LINKS links through the edge's API, then runs steady redirect load through
     the edge (CHAOS_CLIENTS threads, each on its own loopback source address so that each has
     its own bucket of the edge's per-address rate limit, each paced to CHAOS_RATE requests/s,
     keep-alive, looping over the links) and a trickle of edits (one PUT /urls/{id} with a new
     original_url every CHAOS_EDIT_INTERVAL s, round robin over the links);
  2. after CHAOS_PRE s (every link answered many times: cached on every replica) injects the
     fault, holds it CHAOS_HOLD s, restores it with scripts/servers.sh / scripts/services.sh,
     and measures the recovery: the time from the start of the restore until an end-to-end
     probe passes (an edit answered 200 with `Shortline-Propagation: acknowledged`, i.e. every
     redirect replica confirmed it, then a redirect through the edge answering the new target);
  3. keeps the load on for CHAOS_POST s more, stops it, waits for the click pipeline to drain
     (no click in any redirect replica's buffer, no spill file, nothing pending or unacked on
     the analytics consumer, and the event count steady), and compares the `redirect` rows in
     the events table for those links with the 302s the clients got.

Counts per fault: requests by status; failed redirects (anything but a 302 with one of the
link's targets, 429 aside: the edge's rate limit is not a failure, and the load is paced
under it); events lost (302s without a row) and duplicated (rows without a 302); stale
redirects: a 302 to an older target of a link, for a request that started more than a bound
after the API answered an edit to a newer one. The bound depends on what the API said
(`Shortline-Propagation`): `acknowledged` means every redirect replica has already dropped the
link, so CHAOS_STALE_BOUND (2 s) is only slack for a loaded machine; `unconfirmed` (NATS
away, a replica slow or gone) means the change is still on its way: a replica that knows it
lost the change stream re-reads each cached link from Valkey (tombstoned by the API) or
PostgreSQL at least every REDIRECT_DEGRADED_L1_TTL_MS (1 s) after noticing (two missed
heartbeats, 2 s), and one that still reads the stream gets the change when the outbox relay
publishes it (at once, or every OUTBOX_POLL_MS, 2 s, while JetStream elects a new stream
leader), so CHAOS_STALE_BOUND_UNCONFIRMED (10 s) bounds that. Old targets inside the bound
are listed too (`old <= bound`, with the latest one), for information.

The SIGKILL of a redirect replica loses the clicks in its in-memory buffer (at most
CLICK_LINGER_MS worth plus the batch being published, see docs/runbook.md): that shortfall is
reported on its own line, not as lost events, as long as it stays under CHAOS_KILL_BUFFER_MAX
(50); beyond that it counts as lost.

Last line: `chaos: <n> faults, <r> redirects, <f> failed for cached links, <l> events lost,
<d> duplicated, <s> stale`; the exit status is 1 when f, l, d or s is not 0.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

ENV = os.environ


def env_float(name: str, default: float) -> float:
    return float(ENV.get(name, default))


EDGE = ENV["CHAOS_EDGE"]  # host:port
ROOT = ENV["SHORTLINE_ROOT"]
RUN_DIR = ENV["CHAOS_RUN_DIR"]
SPILL_DIR = ENV["CLICK_SPILL_DIR"]
PSQL = ENV["CHAOS_PSQL"]
DATABASE_URL = ENV["DATABASE_URL"]
NATS_MONITORS = ENV["CHAOS_NATS_MONITORS"].split()  # host:port of each node's monitoring
NATS_NODES = ENV["CHAOS_NATS_NODES"].split()  # nats-1 ...
REDIRECTS = ENV["CHAOS_REDIRECTS"].split()  # name=host:port
ANALYTICS_CONSUMER = ENV.get("ANALYTICS_CONSUMER", "analytics")
CLICKS_STREAM = ENV.get("CHAOS_CLICKS_STREAM", "SHORTLINE_CLICKS")
ADMIN_KEY = ENV["CHAOS_ADMIN_KEY"]

LINKS = int(ENV.get("CHAOS_LINKS", 20))
CLIENTS = int(ENV.get("CHAOS_CLIENTS", 4))
RATE = env_float("CHAOS_RATE", 60)  # per client thread
PRE = env_float("CHAOS_PRE", 5)
HOLD = env_float("CHAOS_HOLD", 8)
POST = env_float("CHAOS_POST", 6)
STALL = env_float("CHAOS_STALL", 5)
EDIT_INTERVAL = env_float("CHAOS_EDIT_INTERVAL", 1.0)
STALE_BOUND = env_float("CHAOS_STALE_BOUND", 2.0)
STALE_BOUND_UNCONFIRMED = env_float("CHAOS_STALE_BOUND_UNCONFIRMED", 10.0)
DRAIN_TIMEOUT = env_float("CHAOS_DRAIN_TIMEOUT", 120)
KILL_BUFFER_MAX = int(ENV.get("CHAOS_KILL_BUFFER_MAX", 50))
REQUEST_TIMEOUT = env_float("CHAOS_REQUEST_TIMEOUT", 5)

ALL_FAULTS = [
    "redirect-kill",
    "redirect-term",
    "analytics-kill",
    "nats-kill",
    "valkey-kill",
    "postgres-kill",
    "nats-stall",
]


def log(msg: str) -> None:
    print(f"[chaos] {time.strftime('%H:%M:%S')} {msg}", flush=True)


# ------------------------------------------------------------------------------ HTTP helpers


def api(method: str, path: str, body: dict | None = None, key: str | None = None, timeout: float = 10):
    """One API call through the edge: (status, headers, parsed body or None). Never raises."""
    conn = http.client.HTTPConnection(EDGE, timeout=timeout)
    headers = {"Authorization": f"Bearer {key or ADMIN_KEY}"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=data, headers=headers)
        res = conn.getresponse()
        raw = res.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return res.status, {k.lower(): v for k, v in res.getheaders()}, parsed
    except (OSError, http.client.HTTPException) as e:
        return 0, {}, {"error": str(e)}
    finally:
        conn.close()


def redirect_once(code: str, timeout: float = REQUEST_TIMEOUT):
    conn = http.client.HTTPConnection(EDGE, timeout=timeout)
    try:
        conn.request("GET", f"/{code}")
        res = conn.getresponse()
        res.read()
        return res.status, res.getheader("Location")
    except (OSError, http.client.HTTPException):
        return 0, None
    finally:
        conn.close()


def get_json(url: str, timeout: float = 3):
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (loopback only)
        return json.loads(r.read())


# ------------------------------------------------------------------------------ processes


def pid_of(name: str) -> int:
    with open(os.path.join(RUN_DIR, f"{name}.pid")) as f:
        return int(f.read().split()[0])


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def script(*args: str, retries: int = 1, wait: float = 2) -> None:
    """scripts/servers.sh or scripts/services.sh, retried (a PostgreSQL whose postmaster was
    killed refuses to start until its old backends have gone)."""
    for attempt in range(1, retries + 1):
        r = subprocess.run(["bash", os.path.join(ROOT, "scripts", args[0]), *args[1:]],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode == 0:
            return
        log(f"{' '.join(args)} failed (attempt {attempt}): {r.stdout.strip().splitlines()[-3:]}")
        if attempt < retries:
            time.sleep(wait)
    raise RuntimeError(f"{' '.join(args)} failed")


def kill(name: str, sig: signal.Signals) -> int:
    pid = pid_of(name)
    os.kill(pid, sig)
    log(f"{name}: sent {sig.name} to pid {pid}")
    return pid


def wait_gone(pid: int, secs: float) -> bool:
    end = time.monotonic() + secs
    while time.monotonic() < end:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return not alive(pid)


def nats_jsz():
    """/jsz with stream and consumer details from the first node that answers."""
    for mon in NATS_MONITORS:
        try:
            return get_json(f"http://{mon}/jsz?accounts=true&streams=true&consumers=true&config=true")
        except OSError:
            continue
    return None


def clicks_leader() -> str:
    """The node leading the click stream (the harshest one to lose), else the first."""
    jsz = nats_jsz()
    try:
        for acc in jsz["account_details"]:
            for st in acc.get("stream_detail", []):
                if st["name"] == CLICKS_STREAM:
                    leader = st.get("cluster", {}).get("leader", "")
                    # server names are shortline-dev-<i>
                    idx = leader.rsplit("-", 1)[-1]
                    if idx.isdigit() and f"nats-{idx}" in NATS_NODES:
                        return f"nats-{idx}"
    except (TypeError, KeyError):
        pass
    return NATS_NODES[0]


def node_of(server_name: str) -> str | None:
    """shortline-dev-<i> -> nats-<i> (scripts/servers.sh names the servers so)."""
    idx = (server_name or "").rsplit("-", 1)[-1]
    return f"nats-{idx}" if idx.isdigit() and f"nats-{idx}" in NATS_NODES else None


def harshest_node() -> tuple[str, str]:
    """The NATS node whose loss hurts most, and why: the one holding the most redirect
    replicas' change consumers (single-copy consumers: their replicas must notice the loss
    and re-create them), else the click stream's leader."""
    hosts: dict[str, int] = {}
    for mon in NATS_MONITORS:
        try:
            jsz = get_json(f"http://{mon}/jsz?accounts=true&streams=true&consumers=true")
        except OSError:
            continue
        for acc in jsz.get("account_details", []):
            for st in acc.get("stream_detail", []):
                for c in st.get("consumer_detail", []) or []:
                    node = node_of(c.get("cluster", {}).get("leader", ""))
                    if c["name"].startswith("redirect-") and node:
                        hosts[node] = hosts.get(node, 0) + 1
    if hosts:
        node = max(sorted(hosts), key=lambda n: hosts[n])
        return node, f"holds {hosts[node]} redirect change consumer(s)"
    return clicks_leader(), "the click stream's leader"


def consumer_state():
    jsz = nats_jsz()
    if not jsz:
        return None
    for acc in jsz.get("account_details", []):
        for st in acc.get("stream_detail", []):
            if st["name"] != CLICKS_STREAM:
                continue
            for c in st.get("consumer_detail", []) or []:
                if c["name"] == ANALYTICS_CONSUMER:
                    return {"pending": c.get("num_pending", 0), "ack_pending": c.get("num_ack_pending", 0),
                            "redelivered": c.get("num_redelivered", 0)}
    return None


def buffered_clicks() -> int | None:
    """Clicks waiting in the redirect replicas' buffers (their /ready reports it; it answers
    503 with the same body while a dependency is down)."""
    total = 0
    for entry in REDIRECTS:
        _, addr = entry.split("=", 1)
        try:
            with urllib.request.urlopen(f"http://{addr}/ready", timeout=3) as r:  # noqa: S310
                body = r.read()
        except urllib.error.HTTPError as e:
            body = e.read()
        except OSError:
            return None
        try:
            total += int(json.loads(body).get("click_buffer", 0))
        except (ValueError, AttributeError):
            return None
    return total


def spill_files() -> int:
    try:
        return sum(1 for f in os.listdir(SPILL_DIR) if f.startswith("clicks-") and f.endswith(".jsonl"))
    except FileNotFoundError:
        return 0


def event_rows(ids: list[int]) -> int | None:
    sql = (f"SELECT count(*) FROM events WHERE event_type = 'redirect' AND url_id IN "
           f"({','.join(str(i) for i in ids)})")
    r = subprocess.run([PSQL, "-XAtq", "-d", DATABASE_URL, "-c", sql], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=20)
    if r.returncode != 0:
        return None
    return int(r.stdout.strip())


# ------------------------------------------------------------------------------ the load


@dataclass
class Link:
    id: int
    code: str
    # version -> target; versions acknowledged by the API: version -> monotonic ack time
    targets: dict[int, str] = field(default_factory=dict)
    acked: dict[int, float] = field(default_factory=dict)
    # version -> the bound that applies after its ack (acknowledged / unconfirmed answer)
    bound: dict[int, float] = field(default_factory=dict)
    by_target: dict[str, int] = field(default_factory=dict)
    next_version: int = 1


@dataclass
class Sample:
    start: float
    link: int
    status: int
    location: str | None


class Load:
    def __init__(self, links: list[Link], run: str, fault: str):
        self.links = links
        self.run = run
        self.fault = fault
        self.stop = threading.Event()
        self.samples: list[list[Sample]] = [[] for _ in range(CLIENTS)]
        self.edits = {"ok": 0, "failed": 0, "acknowledged": 0, "unconfirmed": 0}
        self.edit_lock = threading.Lock()
        self.threads = [threading.Thread(target=self.client, args=(i,), daemon=True) for i in range(CLIENTS)]
        self.threads.append(threading.Thread(target=self.editor, daemon=True))

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join()

    def client(self, n: int):
        source = (f"127.0.0.{11 + n}", 0)
        out = self.samples[n]
        conn = None
        interval = 1.0 / RATE
        nxt = time.monotonic()
        i = n
        while not self.stop.is_set():
            link = self.links[i % len(self.links)]
            i += 1
            if conn is None:
                conn = http.client.HTTPConnection(EDGE, timeout=REQUEST_TIMEOUT, source_address=source)
            t0 = time.monotonic()
            try:
                conn.request("GET", f"/{link.code}")
                res = conn.getresponse()
                res.read()
                out.append(Sample(t0, link.id, res.status, res.getheader("Location")))
                if res.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                out.append(Sample(t0, link.id, 0, None))
                conn.close()
                conn = None
            nxt += interval
            delay = nxt - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                nxt = time.monotonic()
        if conn is not None:
            conn.close()

    def edit(self, link: Link) -> tuple[int, str]:
        """One edit to a new target version; records the ack time when answered 200."""
        with self.edit_lock:
            v = link.next_version
            link.next_version += 1
            target = f"https://example.com/chaos/{self.run}/{link.code}/v{v}"
            link.targets[v] = target
            link.by_target[target] = v
        status, headers, _ = api("PUT", f"/urls/{link.id}", {"original_url": target})
        done = time.monotonic()
        propagation = headers.get("shortline-propagation", "")
        with self.edit_lock:
            if status == 200:
                link.acked[v] = done
                link.bound[v] = STALE_BOUND if propagation == "acknowledged" else STALE_BOUND_UNCONFIRMED
                self.edits["ok"] += 1
                if propagation in ("acknowledged", "unconfirmed"):
                    self.edits[propagation] += 1
            else:
                self.edits["failed"] += 1
        return status, propagation

    def editor(self):
        i = 0
        while not self.stop.wait(EDIT_INTERVAL):
            self.edit(self.links[i % len(self.links)])
            i += 1


# ------------------------------------------------------------------------------ faults


@dataclass
class Fault:
    name: str
    target: str = ""
    restore_started: float = 0
    restore_secs: float = 0
    note: str = ""


def inject(f: Fault) -> None:
    if f.name == "redirect-kill":
        f.target = "redirect-2" if os.path.exists(os.path.join(RUN_DIR, "redirect-2.pid")) else "redirect"
        kill(f.target, signal.SIGKILL)
    elif f.name == "redirect-term":
        f.target = "redirect"
        pid = kill(f.target, signal.SIGTERM)
        # A graceful stop: it stops accepting, finishes its requests, flushes its clicks.
        t0 = time.monotonic()
        gone = wait_gone(pid, 25)
        f.note = f"exited {time.monotonic() - t0:.1f} s after SIGTERM" if gone else "still running 25 s after SIGTERM"
    elif f.name == "analytics-kill":
        f.target = "analytics-2" if os.path.exists(os.path.join(RUN_DIR, "analytics-2.pid")) else "analytics"
        kill(f.target, signal.SIGKILL)
    elif f.name == "nats-kill":
        f.target, f.note = harshest_node()
        kill(f.target, signal.SIGKILL)
    elif f.name == "valkey-kill":
        f.target = "valkey"
        kill(f.target, signal.SIGKILL)
    elif f.name == "postgres-kill":
        f.target = "postgres"
        kill(f.target, signal.SIGKILL)
    elif f.name == "nats-stall":
        f.target, why = harshest_node()
        kill(f.target, signal.SIGSTOP)
        f.note = f"SIGSTOP {STALL:.0f} s; {why}"
    else:
        raise ValueError(f"unknown fault {f.name}")


def hold_for(f: Fault) -> float:
    return STALL if f.name == "nats-stall" else HOLD


def restore(f: Fault) -> None:
    f.restore_started = time.monotonic()
    if f.name in ("redirect-kill", "redirect-term", "analytics-kill"):
        script("services.sh", "start", f.target, retries=3)
    elif f.name == "nats-kill":
        script("servers.sh", "start", f.target, retries=3)
    elif f.name == "valkey-kill":
        script("servers.sh", "start", "valkey", retries=3)
    elif f.name == "postgres-kill":
        script("servers.sh", "start", "postgres", retries=20, wait=1)
    elif f.name == "nats-stall":
        kill(f.target, signal.SIGCONT)
    f.restore_secs = time.monotonic() - f.restore_started


def probe(link: Link, load: Load, since: float, deadline: float) -> float | None:
    """Seconds from the start of the restore until the whole path works again: an edit of the
    probe link through the edge is answered 200, and the next CHAOS_CLIENTS redirects of it
    through the edge (the edge spreads them over the replicas) all answer the new target.
    None when that does not happen by the deadline."""
    while time.monotonic() < deadline:
        status, _ = load.edit(link)
        if status == 200:
            want = link.targets[max(link.acked)]
            ok = 0
            end = time.monotonic() + 3
            while time.monotonic() < end and ok < max(CLIENTS, 4):
                s, loc = redirect_once(link.code, timeout=2)
                ok = ok + 1 if (s == 302 and loc == want) else 0
                if ok == 0:
                    time.sleep(0.05)
            if ok >= max(CLIENTS, 4):
                return time.monotonic() - since
        time.sleep(0.2)
    return None


# ------------------------------------------------------------------------------ one fault


@dataclass
class Result:
    fault: str
    note: str
    statuses: dict[str, int]
    redirects: int
    failed: int
    rows: int | None
    lost: int
    duplicated: int
    buffer_loss: int
    stale: int
    old_in_bound: int
    worst_old: float
    edits: dict[str, int]
    restore_secs: float
    recovery_secs: float | None
    drain_secs: float
    redelivered: int


def make_links(user_id: int, run: str, tag: str, n: int) -> list[Link]:
    links = []
    for i in range(n):
        target = f"https://example.com/chaos/{run}/{tag}/{i}/v0"
        for _ in range(5):
            status, _, body = api("POST", "/urls", {"user_id": user_id, "original_url": target,
                                                    "title": f"chaos {tag} {i}"})
            if status == 201:
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"POST /urls answered {status}: {body}")
        link = Link(id=body["id"], code=body["short_code"])
        link.targets[0] = target
        link.acked[0] = time.monotonic()
        link.by_target[target] = 0
        links.append(link)
    return links


def drain(ids: list[int], want: int, hard_kill: bool) -> tuple[int | None, float, int]:
    """Waits until the click pipeline is empty and the row count steady; returns
    (rows, seconds waited, redeliveries seen on the consumer)."""
    t0 = time.monotonic()
    last = None
    steady_since = None
    redelivered = 0
    while True:
        rows = event_rows(ids)
        cs = consumer_state()
        buffered = buffered_clicks()
        spills = spill_files()
        if cs:
            redelivered = max(redelivered, cs["redelivered"])
        quiet = (cs is not None and cs["pending"] == 0 and cs["ack_pending"] == 0
                 and buffered == 0 and spills == 0 and rows is not None)
        now = time.monotonic()
        if quiet and rows == last:
            steady_since = steady_since or now
        else:
            steady_since = None
        last = rows
        waited = now - t0
        if steady_since is not None:
            # Exact: done once steady for 2 s. Short: a redelivery may still come (ack wait),
            # so wait longer; a hard kill's lost buffer never comes back.
            if rows == want and now - steady_since >= 2:
                return rows, waited, redelivered
            if rows != want and now - steady_since >= (10 if hard_kill else 40):
                return rows, waited, redelivered
        if waited > DRAIN_TIMEOUT:
            log(f"drain: not quiet after {DRAIN_TIMEOUT:.0f} s (rows {rows}, consumer {cs}, "
                f"buffered {buffered}, spill files {spills})")
            return rows, waited, redelivered
        time.sleep(1)


def stale_count(links: dict[int, Link], samples: list[Sample], since: float) -> tuple[int, int, int, str, float]:
    """(stale, old target within the bound, failed, where the stale ones were) over the 302s
    and errors; `since`: when the fault was injected."""
    stale = old = failed = 0
    first = last = None
    oldest = worst = 0.0
    for s in samples:
        if s.status == 429:
            continue
        link = links[s.link]
        if s.status != 302 or s.location not in link.by_target:
            failed += 1
            continue
        v = link.by_target[s.location]
        newer = [(t, link.bound.get(ver, STALE_BOUND)) for ver, t in link.acked.items() if ver > v]
        if not newer:
            continue
        if any(t + bound < s.start for t, bound in newer):
            stale += 1
            first = s.start if first is None else min(first, s.start)
            last = s.start if last is None else max(last, s.start)
            oldest = max(oldest, s.start - min(t for t, _ in newer))
        elif min(t for t, _ in newer) < s.start:
            old += 1
            worst = max(worst, s.start - min(t for t, _ in newer))
    where = ""
    if stale:
        where = (f"stale from {first - since:+.1f} s to {last - since:+.1f} s after the fault, "
                 f"up to {oldest:.1f} s after the edit was answered")
    return stale, old, failed, where, max(worst, oldest)


def run_fault(name: str, user_id: int, run: str) -> Result:
    log(f"=== {name} ===")
    links = make_links(user_id, run, name, LINKS)
    probe_link = make_links(user_id, run, f"{name}-probe", 1)[0]
    load = Load(links, run, name)
    f = Fault(name)
    load.start()
    try:
        time.sleep(PRE)
        injected = time.monotonic()
        inject(f)
        time.sleep(hold_for(f))
    finally:
        # Also when interrupted (the 15-minute bound of scripts/chaos.sh): never leave a
        # server stopped.
        if f.name == "nats-stall" and f.target:
            try:
                os.kill(pid_of(f.target), signal.SIGCONT)
            except OSError:
                pass
    restore(f)
    log(f"{name}: restored {f.target} in {f.restore_secs:.1f} s")
    recovery = probe(probe_link, load, f.restore_started, time.monotonic() + 60)
    log(f"{name}: recovered {recovery:.1f} s after the restore began" if recovery is not None
        else f"{name}: the end-to-end probe did not pass within 60 s")
    time.sleep(POST)
    load.finish()

    samples = [s for per in load.samples for s in per]
    by_id = {link.id: link for link in links}
    statuses: dict[str, int] = {}
    for s in samples:
        key = str(s.status) if s.status else "error"
        statuses[key] = statuses.get(key, 0) + 1
    redirects = sum(1 for s in samples if s.status == 302)
    stale, old, failed, where, worst = stale_count(by_id, samples, injected)
    if where:
        log(f"{name}: {where}")
    hard_kill = name == "redirect-kill"
    rows, drain_secs, redelivered = drain(list(by_id), redirects, hard_kill)
    lost = dup = buffer_loss = 0
    if rows is None:
        lost = redirects
    elif rows < redirects:
        short = redirects - rows
        if hard_kill and short <= KILL_BUFFER_MAX:
            buffer_loss = short
        else:
            lost = short
    else:
        dup = rows - redirects
    r = Result(name, " ".join(x for x in (f.target, f.note) if x), statuses, redirects, failed, rows,
               lost, dup, buffer_loss, stale, old, worst, dict(load.edits), f.restore_secs, recovery,
               drain_secs, redelivered)
    log(f"{name}: {fmt_statuses(statuses)}; failed {failed}; rows {rows} vs {redirects} 302s "
        f"(lost {lost}, duplicated {dup}, hard-kill buffer {buffer_loss}); stale {stale} "
        f"(old<=bound {old}, latest old answer {worst:.1f} s after the edit); edits {load.edits}; "
        f"drain {drain_secs:.0f} s")
    return r


def fmt_statuses(st: dict[str, int]) -> str:
    return ", ".join(f"{v:,} × {k}" for k, v in sorted(st.items()))


def main() -> int:
    # scripts/chaos.sh bounds the run with `timeout`: leave through the finally blocks.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(124))
    faults = [x.strip() for x in ENV.get("CHAOS_FAULTS", ",".join(ALL_FAULTS)).split(",") if x.strip()]
    unknown = [x for x in faults if x not in ALL_FAULTS]
    if unknown:
        print(f"unknown faults {unknown}; known: {','.join(ALL_FAULTS)}", file=sys.stderr)
        return 2
    run = time.strftime("%Y%m%d%H%M%S")
    status, _, body = api("POST", "/users", {"username": f"chaos{run}", "email": f"chaos{run}@example.com"})
    if status != 201:
        print(f"POST /users answered {status}: {body}", file=sys.stderr)
        return 1
    user_id = body["id"]
    log(f"{len(faults)} faults: {', '.join(faults)}; {CLIENTS} clients × {RATE:.0f}/s over {LINKS} links, "
        f"an edit every {EDIT_INTERVAL:g} s; fault after {PRE:g} s, held {HOLD:g} s "
        f"(stall {STALL:g} s), {POST:g} s after recovery; stale bound {STALE_BOUND:g} s after an "
        f"acknowledged edit, {STALE_BOUND_UNCONFIRMED:g} s after an unconfirmed one")
    # Start from a steady pipeline: a (re)started stack may take seconds before every redirect
    # replica publishes clicks and analytics folds them (streams electing leaders), and a
    # fault injected before that measures the start-up, not the fault.
    warm = make_links(user_id, run, "warmup", 1)
    for _ in range(40):
        redirect_once(warm[0].code)
    rows, secs, _ = drain([warm[0].id], 40, False)
    log(f"warm-up: {rows} of 40 clicks stored after {secs:.0f} s")
    results = []
    t0 = time.monotonic()
    for name in faults:
        results.append(run_fault(name, user_id, run))
    took = time.monotonic() - t0

    print()
    print("| fault | requests by status | failed (cached links) | 302s | event rows | lost | dup |"
          " stale (> bound) | old ≤ bound (latest) | edits ok / failed (unconfirmed) | restore |"
          " recovered after | drain |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        rec = f"{r.recovery_secs:.1f} s" if r.recovery_secs is not None else "no"
        print(f"| {r.fault} ({r.note}) | {fmt_statuses(r.statuses)} | {r.failed} | {r.redirects:,} |"
              f" {r.rows if r.rows is not None else '?':,} | {r.lost} | {r.duplicated} | {r.stale} |"
              f" {r.old_in_bound} ({r.worst_old:.1f} s) | {r.edits['ok']} / {r.edits['failed']}"
              f" ({r.edits['unconfirmed']}) | {r.restore_secs:.1f} s |"
              f" {rec} | {r.drain_secs:.0f} s |")
    print()
    for r in results:
        if r.fault == "redirect-kill":
            print(f"redirect SIGKILL: {r.buffer_loss} clicks lost with the killed replica's in-memory buffer "
                  f"(of {r.redirects:,} redirects; accepted up to {KILL_BUFFER_MAX}, docs/runbook.md); "
                  f"not counted as lost events")
    print(f"took {took:.0f} s")
    n = len(results)
    r_total = sum(r.redirects for r in results)
    f_total = sum(r.failed for r in results)
    l_total = sum(r.lost for r in results)
    d_total = sum(r.duplicated for r in results)
    s_total = sum(r.stale for r in results)
    unrecovered = [r.fault for r in results if r.recovery_secs is None]
    if unrecovered:
        print(f"not recovered within 60 s: {', '.join(unrecovered)}")
    print(f"chaos: {n} faults, {r_total} redirects, {f_total} failed for cached links, "
          f"{l_total} events lost, {d_total} duplicated, {s_total} stale")
    return 1 if (f_total or l_total or d_total or s_total or unrecovered) else 0


if __name__ == "__main__":
    sys.exit(main())
