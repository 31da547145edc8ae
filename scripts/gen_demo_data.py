#!/usr/bin/env python3
"""Generate deterministic Shortline demo data in the shape of the contract's seed files.

Writes three CSV files into --out:

  users.csv   id,username,email,created_at
  urls.csv    id,user_id,short_code,original_url,title,is_active,created_at,updated_at
  events.csv  id,url_id,user_id,event_type,timestamp,details

Timestamps are ``YYYY-MM-DD HH:MM:SS`` (UTC), booleans ``True``/``False``, ``details`` is JSON
text: ``created`` -> {"short_code","original_url"}, ``updated`` -> {"field","new_value"},
``deleted`` -> {"reason"}.

The data is internally consistent: every link belongs to an existing user and is created after
that user; each link has one ``created`` event, then in time order some ``updated`` events
(title, is_active, original_url) and possibly a final ``deleted`` event; the link row holds the
state after its last event (a deleted link is inactive). Event ids run in link order.

Same arguments, same bytes: all randomness comes from --seed. Usernames, emails and short codes
(6 characters of base62) are unique by construction (bijections of the row number), so nothing
is kept in memory per row and a million links take seconds.

Example: scripts/gen_demo_data.py --out .local/demo --users 400 --links 2000 --seed 42
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import random
import sys
import time

ADJECTIVES = (
    "amber bold brave bright calm clever cool crisp eager fair fancy fresh gentle glad gold "
    "grand happy jolly keen kind lively lucky merry mighty neat noble proud quick quiet rapid "
    "silver smart steady sunny swift tidy urban vivid warm wise"
).split()
NOUNS = (
    "anchor beacon canyon comet delta ember engine falcon field forest garden glacier harbor "
    "harvest island journey kernel lagoon lantern meadow meteor network orbit pioneer prairie "
    "quartz river rocket signal summit trail uplink valley willow window yard zenith"
).split()
DOMAINS = ("example.com", "acme.dev", "hackstack.io", "opswise.net", "relay.cloud", "seeded.app")
TITLE_PHRASES = (
    "Roadmap update", "Ops review", "Alert feed", "Incident notes", "Demo link",
    "Campaign page", "Launch deck", "Quarterly brief", "Status board", "Service guide",
)
DELETE_REASONS = ("user_requested", "expired", "duplicate", "policy_cleanup")
UPDATE_FIELDS = ("title", "is_active", "original_url")
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
CODE_LEN = 6
CODE_SPACE = 62**CODE_LEN

# Time windows (UTC epoch seconds), like the contract's seed data.
USER_START = 1704067200  # 2024-01-01
USER_END = 1769817600  # 2026-01-31
LINK_START = 1735689600  # 2025-01-01
LINK_END = 1771545600  # 2026-02-20
EVENT_END = 1772236800  # 2026-02-28

MASK64 = (1 << 64) - 1
BUF = 1 << 20
DELETE_PROBABILITY = 0.15  # per extra event; a deleted link gets no later events


def splitmix64(x: int) -> int:
    """A fast, well-mixed 64-bit hash (SplitMix64 finaliser)."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


class Namer:
    """Row number -> unique username (adjective + noun + digits)."""

    def __init__(self, rng: random.Random) -> None:
        pairs = {a + n for a in ADJECTIVES for n in NOUNS}
        assert len(pairs) == len(ADJECTIVES) * len(NOUNS), "word lists make ambiguous names"
        self.per_adj = len(NOUNS) * 100
        self.combos = len(ADJECTIVES) * self.per_adj
        while True:
            self.mult = rng.randrange(1, self.combos)
            if math.gcd(self.mult, self.combos) == 1:
                break
        self.offset = rng.randrange(self.combos)

    def name(self, k: int) -> str:
        """k is 0-based. The first `combos` names end in two digits; later ones in k itself
        (at least five digits), so the two ranges cannot collide."""
        if k < self.combos:
            j = (k * self.mult + self.offset) % self.combos
            return f"{ADJECTIVES[j // self.per_adj]}{NOUNS[(j // 100) % len(NOUNS)]}{j % 100:02d}"
        j = (k * self.mult + self.offset) % self.combos
        return f"{ADJECTIVES[j // self.per_adj]}{NOUNS[(j // 100) % len(NOUNS)]}{k}"


class CodeMaker:
    """Row number -> unique 6-character base62 short code: a keyed Feistel permutation of
    [0, 2^36) restricted to [0, 62^6) by cycle walking."""

    HALF_BITS = 18
    HALF_MASK = (1 << 18) - 1

    def __init__(self, rng: random.Random) -> None:
        self.keys = [rng.getrandbits(32) for _ in range(4)]
        # Two base62 digits at a time (least significant first, like the digit loop would).
        self.pairs = [BASE62[i % 62] + BASE62[i // 62] for i in range(62 * 62)]

    def _permute(self, x: int) -> int:
        left, right = x >> self.HALF_BITS, x & self.HALF_MASK
        for key in self.keys:
            f = ((right * 0x9E3779B1) ^ key) & 0xFFFFFFFF
            f = ((f ^ (f >> 15)) * 0x2C1B3C6D) & 0xFFFFFFFF
            left, right = right, left ^ ((f ^ (f >> 12)) & self.HALF_MASK)
        return (left << self.HALF_BITS) | right

    def code(self, k: int) -> str:
        x = self._permute(k)
        while x >= CODE_SPACE:
            x = self._permute(x)
        pairs = self.pairs
        x, a = divmod(x, 3844)
        c, b = divmod(x, 3844)
        return pairs[a] + pairs[b] + pairs[c]


class Clock:
    """Epoch seconds -> 'YYYY-MM-DD HH:MM:SS', from a per-day cache of dates and a table of
    the day's 86,400 times."""

    def __init__(self) -> None:
        self.days: dict[int, str] = {}
        self.times = [f" {s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86400)]

    def fmt(self, t: int) -> str:
        day, sec = divmod(t, 86400)
        date = self.days.get(day)
        if date is None:
            date = time.strftime("%Y-%m-%d", time.gmtime(day * 86400))
            self.days[day] = date
        return date + self.times[sec]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output directory (created if missing)")
    p.add_argument("--users", type=int, default=400, help="number of users (default 400)")
    p.add_argument("--links", type=int, default=2000, help="number of links (default 2000)")
    p.add_argument(
        "--events-per-link", type=float, default=1.7,
        help="average events per link, the 'created' event included; >= 1 (default 1.7)",
    )
    p.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    a = p.parse_args(argv)
    if a.users < 1 and a.links > 0:
        p.error("--links needs at least one user")
    if a.users < 0 or a.links < 0:
        p.error("--users and --links must be >= 0")
    if a.events_per_link < 1:
        p.error("--events-per-link must be >= 1 (every link has its 'created' event)")
    return a


def generate(out: str, n_users: int, n_links: int, events_per_link: float, seed: int) -> dict:
    rng = random.Random(seed)
    namer = Namer(rng)
    codes = CodeMaker(rng)
    clock = Clock()
    seed_mix = splitmix64(seed & MASK64)
    user_span = USER_END - USER_START

    def user_hash(uid: int) -> int:
        return splitmix64(seed_mix ^ uid)

    def user_created(uid: int) -> int:
        return USER_START + user_hash(uid) % user_span

    os.makedirs(out, exist_ok=True)
    paths = {name: os.path.join(out, name) for name in ("users.csv", "urls.csv", "events.csv")}
    tmp = {name: path + ".tmp" for name, path in paths.items()}

    # Extra events per link ~ Binomial(n, p) with mean events_per_link - 1.
    extra_mean = events_per_link - 1.0
    extra_trials = max(2, math.ceil(2 * extra_mean)) if extra_mean > 0 else 0
    extra_p = extra_mean / extra_trials if extra_trials else 0.0

    n_events = 0
    with open(tmp["users.csv"], "w", newline="", encoding="utf-8", buffering=BUF) as fu:
        w = csv.writer(fu, lineterminator="\n")
        w.writerow(("id", "username", "email", "created_at"))
        for uid in range(1, n_users + 1):
            name = namer.name(uid - 1)
            domain = DOMAINS[(user_hash(uid) >> 40) % len(DOMAINS)]
            w.writerow((uid, name, f"{name}@{domain}", clock.fmt(user_created(uid))))

    rnd = rng.random
    with open(tmp["urls.csv"], "w", newline="", encoding="utf-8", buffering=BUF) as fl, \
            open(tmp["events.csv"], "w", newline="", encoding="utf-8", buffering=BUF) as fe:
        wl = csv.writer(fl, lineterminator="\n")
        we = csv.writer(fe, lineterminator="\n")
        wl.writerow(("id", "user_id", "short_code", "original_url", "title", "is_active",
                     "created_at", "updated_at"))
        we.writerow(("id", "url_id", "user_id", "event_type", "timestamp", "details"))
        n_domains, n_adj, n_nouns = len(DOMAINS), len(ADJECTIVES), len(NOUNS)
        n_phrases = len(TITLE_PHRASES)
        event_id = 0
        for lid in range(1, n_links + 1):
            uid = int(rnd() * n_users) + 1
            lo = max(user_created(uid), LINK_START)
            created = lo + int(rnd() * (LINK_END - lo))
            code = codes.code(lid - 1)
            url = (f"https://{DOMAINS[int(rnd() * n_domains)]}/{ADJECTIVES[int(rnd() * n_adj)]}"
                   f"/{NOUNS[int(rnd() * n_nouns)]}/{lid}")
            title = f"{TITLE_PHRASES[int(rnd() * n_phrases)]} {NOUNS[int(rnd() * n_nouns)]}"
            active = True
            ts_created = clock.fmt(created)
            event_id += 1
            we.writerow((event_id, lid, uid, "created", ts_created,
                         f'{{"short_code":"{code}","original_url":"{url}"}}'))
            t = created
            extra = 0
            for _ in range(extra_trials):
                if rnd() < extra_p:
                    extra += 1
            for _ in range(extra):
                # Spread the link's later events over the time left, in order.
                t += 1 + int(rnd() * (EVENT_END - t) * 0.5)
                event_id += 1
                if rnd() < DELETE_PROBABILITY:
                    active = False
                    reason = DELETE_REASONS[int(rnd() * len(DELETE_REASONS))]
                    we.writerow((event_id, lid, uid, "deleted", clock.fmt(t),
                                 f'{{"reason":"{reason}"}}'))
                    break
                field = UPDATE_FIELDS[int(rnd() * 3)]
                if field == "title":
                    title = f"{TITLE_PHRASES[int(rnd() * n_phrases)]} {NOUNS[int(rnd() * n_nouns)]}"
                    value = title
                elif field == "is_active":
                    active = not active
                    value = "True" if active else "False"
                else:
                    url = (f"https://{DOMAINS[int(rnd() * n_domains)]}/"
                           f"{NOUNS[int(rnd() * n_nouns)]}/{int(rnd() * 10000)}")
                    value = url
                we.writerow((event_id, lid, uid, "updated", clock.fmt(t),
                             f'{{"field":"{field}","new_value":"{value}"}}'))
            wl.writerow((lid, uid, code, url, title, "True" if active else "False",
                         ts_created, clock.fmt(t)))
        n_events = event_id

    for name, path in paths.items():
        os.replace(tmp[name], path)
    return {"users": n_users, "links": n_links, "events": n_events}


def main(argv: list[str]) -> int:
    a = parse_args(argv)
    started = time.monotonic()
    counts = generate(a.out, a.users, a.links, a.events_per_link, a.seed)
    took = time.monotonic() - started
    print(f"gen_demo_data: {counts['users']} users, {counts['links']} links, "
          f"{counts['events']} events -> {a.out} in {took:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
