//! Short code → target, through three layers: an in-process moka cache (L1),
//! Valkey shared by every replica (L2), and Postgres, the source of truth.
//!
//! * L1 is bounded by entry count and TTL. Unknown and inactive codes are
//!   cached too, for a shorter time, so a 404 flood cannot reach Postgres.
//!   Concurrent misses for one code share one lookup (moka's
//!   `or_try_insert_with`).
//! * L2 holds `url_id \t user_id \t original_url` under
//!   `<prefix>:link:<code>`, written with `SET NX EX` by whichever replica
//!   loaded the link from Postgres.
//! * A change event ([`LinkCache::invalidate`]) drops the L1 entry and
//!   replaces the L2 value with a short-lived tombstone. The tombstone makes
//!   readers skip L2, and because loaders write with `NX`, a loader that read
//!   the old row just before the change cannot put it back. The L1 side of
//!   the same race is closed with epochs: every load notes the invalidation
//!   epoch it started in, and an entry loaded before the latest invalidation
//!   of its code is not trusted.
//! * When the tombstone cannot be written (Valkey slow, full or away), L2
//!   may still hold the old target: this replica's loads of that code skip
//!   L2 until a retried invalidation writes the tombstone, and the change is
//!   not acknowledged meanwhile ([`crate::invalidate`]).
//!
//! Valkey errors are cache misses. A Postgres error is an error only when no
//! cache could answer.
//!
//! Whatever layer a target comes from, it is checked against the shared
//! target rule ([`shortline_shared::target_url`]: http or https, a host, no
//! whitespace, control characters or userinfo) once, as it is loaded, and
//! its `Location` value is made then (the stored text when ASCII, its
//! RFC 3986 form otherwise). A target that fails (written around the API,
//! or a Valkey value that is not what a replica wrote) is answered 502,
//! logged as a warning, never cached in L1 and never written to L2; an L1
//! hit serves only what passed.

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode};
use chrono::{DateTime, Utc};
use moka::Expiry;
use serde::{Deserialize, Serialize};
use shortline_shared::cache::{CacheError, Valkey};
use shortline_shared::db::Db;

use crate::code::CodeKey;
use crate::error::RedirectError;
use crate::policy::{Policy, Problem, RuleColumns, location_of};
use crate::state::RedirectMetrics;

/// The L2 value meaning "changed just now: ask Postgres" (the API writes it
/// too, right after a link change commits).
const TOMBSTONE: &str = shortline_shared::cache::LINK_TOMBSTONE;
/// How long a tombstone lives (far longer than any lookup takes).
const TOMBSTONE_TTL: Duration = shortline_shared::cache::LINK_TOMBSTONE_TTL;
/// Longest wait for a tombstone write's reply (longer than lookups may
/// wait: a lost tombstone leaves the old target in L2 for its TTL).
const TOMBSTONE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long an invalidation is remembered for the epoch check.
const INVALIDATION_MEMORY: Duration = Duration::from_secs(60);

/// What a redirect needs to know about an active link whose target passed
/// the target rule. Small and cheap to clone, so that an L1 entry holds it
/// inline: an L1 hit reads the entry moka already touched and one
/// allocation holding the `Location` bytes. The header value is copied from
/// them per request, which costs less than reaching a shared header value
/// and its reference count elsewhere in memory (measured with
/// `examples/hotpath.rs`). A link with rules carries them compiled
/// ([`Policy`]); a plain one carries nothing more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url_id: i64,
    pub user_id: i64,
    /// The `Location`: the stored URL exactly when it is ASCII, else its
    /// RFC 3986 form.
    url: Arc<str>,
    /// 301, 302, 307 or 308.
    pub status: StatusCode,
    /// The link's rules, if it has any.
    pub policy: Option<Arc<Policy>>,
}

/// A stored link that cannot be served as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadTarget {
    pub url_id: i64,
    pub problem: Problem,
}

/// A `urls` row as the lookup reads it, and the L2 form of a link with
/// rules or a redirect type other than 302.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize, Deserialize)]
pub struct TargetRow {
    pub url_id: i64,
    pub user_id: i64,
    pub original_url: String,
    #[serde(default = "default_redirect_type")]
    pub redirect_type: i16,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub max_clicks: Option<i64>,
    #[serde(default)]
    pub fallback_url: Option<String>,
    #[serde(default)]
    pub forward_query: bool,
    #[serde(default)]
    pub rules: Option<sqlx::types::Json<serde_json::Value>>,
    #[serde(default)]
    pub password_hash: Option<String>,
}

fn default_redirect_type() -> i16 {
    302
}

/// The active link of a code on the default domain, as a [`TargetRow`]
/// (`COALESCE(domain_id, 0)`: the unique index's expression).
const TARGET_BY_CODE: &str = "SELECT id AS url_id, user_id, original_url, redirect_type, \
     expires_at, max_clicks, fallback_url, forward_query, rules, password_hash \
     FROM urls WHERE COALESCE(domain_id, 0) = 0 AND short_code = $1 AND is_active";

/// The active link of a code on a custom domain (`$1`: its host).
const TARGET_BY_DOMAIN_CODE: &str = "SELECT u.id AS url_id, u.user_id, u.original_url, \
     u.redirect_type, u.expires_at, u.max_clicks, u.fallback_url, u.forward_query, u.rules, \
     u.password_hash \
     FROM domains d JOIN urls u ON COALESCE(u.domain_id, 0) = d.id \
     WHERE d.host = $1 AND u.short_code = $2 AND u.is_active";

impl TargetRow {
    /// The target of a link with no rules and the default redirect type.
    pub fn plain(url_id: i64, user_id: i64, original_url: &str) -> Self {
        Self {
            url_id,
            user_id,
            original_url: original_url.to_owned(),
            redirect_type: 302,
            expires_at: None,
            max_clicks: None,
            fallback_url: None,
            forward_query: false,
            rules: None,
            password_hash: None,
        }
    }
}

impl Target {
    /// The target of a link whose stored URL is `original_url` (no rules,
    /// 302), if that passes the target rule.
    pub fn checked(url_id: i64, user_id: i64, original_url: &str) -> Result<Self, BadTarget> {
        Self::try_from(&TargetRow::plain(url_id, user_id, original_url))
    }

    /// The `Location` of the redirect (`None` cannot happen for a checked
    /// target; the caller answers 502 if it did).
    pub fn location(&self) -> Option<HeaderValue> {
        HeaderValue::from_str(&self.url).ok()
    }

    /// The `Location` text: the stored URL exactly when it is ASCII.
    pub fn location_text(&self) -> &str {
        &self.url
    }

    /// The L2 value of a plain 302 link: `url_id \t user_id \t url` (its
    /// `Location` text, which checks as itself); `None` for others, whose
    /// L2 value is their row as JSON.
    fn to_l2(&self) -> Option<String> {
        (self.policy.is_none() && self.status == StatusCode::FOUND)
            .then(|| format!("{}\t{}\t{}", self.url_id, self.user_id, self.url))
    }
}

/// The parts of a tab-separated L2 value (`url_id \t user_id \t url`),
/// unchecked; `None` when it does not have that shape.
fn split_l2(value: &str) -> Option<(i64, i64, &str)> {
    let mut parts = value.splitn(3, '\t');
    Some((
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?,
    ))
}

/// An L2 value read back: a JSON row (starts with `{`) or the tab form of
/// a plain link; `None` when it is neither.
fn from_l2(value: &str) -> Option<Result<Target, BadTarget>> {
    if value.starts_with('{') {
        let row: TargetRow = serde_json::from_str(value).ok()?;
        return Some(Target::try_from(&row));
    }
    split_l2(value).map(|(url_id, user_id, url)| Target::checked(url_id, user_id, url))
}

impl TryFrom<&TargetRow> for Target {
    type Error = BadTarget;

    fn try_from(row: &TargetRow) -> Result<Self, BadTarget> {
        let bad = |problem| BadTarget {
            url_id: row.url_id,
            problem,
        };
        let status = match row.redirect_type {
            301 => StatusCode::MOVED_PERMANENTLY,
            302 => StatusCode::FOUND,
            307 => StatusCode::TEMPORARY_REDIRECT,
            308 => StatusCode::PERMANENT_REDIRECT,
            other => return Err(bad(Problem::RedirectType(other))),
        };
        let policy = Policy::compile(&RuleColumns {
            expires_at: row.expires_at,
            max_clicks: row.max_clicks,
            fallback_url: row.fallback_url.as_deref(),
            forward_query: row.forward_query,
            rules: row.rules.as_ref().map(|r| &r.0),
            password_hash: row.password_hash.as_deref(),
        })
        .map_err(bad)?;
        Ok(Self {
            url_id: row.url_id,
            user_id: row.user_id,
            url: location_of("original_url", &row.original_url).map_err(bad)?,
            status,
            policy: policy.map(Arc::new),
        })
    }
}

/// The layer that answered a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    L1,
    L2,
    Db,
}

impl Layer {
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::L1 => "l1",
            Layer::L2 => "l2",
            Layer::Db => "db",
        }
    }

    /// `X-Cache`: `HIT` when a cache answered, `MISS` when Postgres did.
    pub fn x_cache(self) -> &'static str {
        match self {
            Layer::L1 | Layer::L2 => "HIT",
            Layer::Db => "MISS",
        }
    }
}

/// A lookup's answer: the target (None: unknown or inactive) and who gave it.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub target: Option<Target>,
    pub layer: Layer,
}

/// An L1 entry (cloned out of the cache on every hit: keep it small).
#[derive(Debug, Clone)]
struct Entry {
    target: Option<Target>,
    /// The invalidation epoch when its load started.
    epoch: u64,
    /// Where the load found it.
    layer: Layer,
}

/// Short codes are not attacker-chosen keys into anything but our own
/// bounded caches, and SipHash showed up in profiles: a fast seeded hasher.
type Hasher = foldhash::fast::RandomState;

/// Positive and negative entries live for different times. A positive
/// entry lives between three quarters of the TTL and the whole TTL, spread
/// by a hash of its code and load time: links loaded together (the fill
/// after a start under traffic, L1 dropped and refilled) would otherwise
/// all expire, and all go to Valkey, together, once per TTL.
struct EntryExpiry {
    positive: Duration,
    negative: Duration,
    spread: Hasher,
}

impl EntryExpiry {
    fn new(positive: Duration, negative: Duration) -> Self {
        Self {
            positive,
            negative,
            spread: Hasher::default(),
        }
    }

    fn positive_ttl(&self, key: &CodeKey, created_at: Instant) -> Duration {
        // The top 53 bits of the hash as a fraction in [0, 1).
        #[allow(clippy::cast_precision_loss)]
        let fraction = (self.spread.hash_one((key, created_at)) >> 11) as f64 / (1u64 << 53) as f64;
        self.positive - (self.positive / 4).mul_f64(fraction)
    }
}

impl Expiry<CodeKey, Entry> for EntryExpiry {
    fn expire_after_create(
        &self,
        key: &CodeKey,
        value: &Entry,
        created_at: Instant,
    ) -> Option<Duration> {
        Some(if value.target.is_some() {
            self.positive_ttl(key, created_at)
        } else {
            self.negative
        })
    }
}

/// Settings for [`LinkCache::new`].
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// L1 entries; 0 disables L1.
    pub l1_capacity: u64,
    pub l1_ttl: Duration,
    pub negative_ttl: Duration,
    pub l2_ttl: Duration,
    /// Key prefix in Valkey (`<prefix>:link:<code>`).
    pub key_prefix: String,
}

/// The tiered link cache. Cheap to clone.
#[derive(Clone)]
pub struct LinkCache(Arc<Inner>);

struct Inner {
    /// Postgres behind the circuit breaker: while it is known down, a miss
    /// answers 503 at once instead of waiting for a connection.
    db: Db,
    l1: Option<moka::future::Cache<CodeKey, Entry, Hasher>>,
    l2: Option<Valkey>,
    l2_ttl: Duration,
    key_prefix: String,
    /// Bumped by every invalidation.
    epoch: AtomicU64,
    /// Entries loaded before this epoch are not trusted (set when all of L1
    /// is dropped, so that loads in flight then do not count either).
    floor: AtomicU64,
    /// Code → epoch of its latest invalidation (recent ones only).
    invalidated: moka::sync::Cache<Arc<str>, u64, Hasher>,
    /// The same, folded by hash: answers most checks without the map.
    recent: RecentInvalidations,
    /// Codes changed while their L2 tombstone could not be written: L2 may
    /// still hold the old target, so their loads skip L2 until it is.
    untrusted_in_l2: Untrusted,
    metrics: RedirectMetrics,
}

/// Slots of [`RecentInvalidations`] (a power of two; 128 KiB).
const RECENT_SLOTS: usize = 1 << 14;

/// Invalidation epochs folded into a fixed table by the code's hash: a slot
/// holds the latest epoch of any code hashing to it. While links change
/// now and then, most L1 entries are older than the latest invalidation;
/// for those, a slot no newer than the entry's load shows that its code was
/// not invalidated since, with one load from a small table instead of a
/// probe of the exact map (and the read upkeep the map does), which only a
/// slot shared with a code changed later still needs.
struct RecentInvalidations {
    hasher: Hasher,
    slots: Box<[AtomicU64]>,
}

impl RecentInvalidations {
    fn new() -> Self {
        Self {
            hasher: Hasher::default(),
            slots: (0..RECENT_SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn slot(&self, code: &str) -> &AtomicU64 {
        // Truncating the hash is the point: it picks a slot.
        #[allow(clippy::cast_possible_truncation)]
        let i = self.hasher.hash_one(code) as usize & (RECENT_SLOTS - 1);
        &self.slots[i]
    }

    fn note(&self, code: &str, epoch: u64) {
        self.slot(code).fetch_max(epoch, Ordering::AcqRel);
    }

    /// Whether `code` may have been invalidated after `epoch`.
    fn maybe_since(&self, code: &str, epoch: u64) -> bool {
        self.slot(code).load(Ordering::Acquire) > epoch
    }
}

/// A set of codes, free to ask while empty (the normal state).
#[derive(Default)]
struct Untrusted {
    len: AtomicUsize,
    codes: Mutex<HashSet<Box<str>>>,
}

impl Untrusted {
    fn contains(&self, code: &str) -> bool {
        self.len.load(Ordering::Acquire) > 0
            && self.codes.lock().is_ok_and(|codes| codes.contains(code))
    }

    fn set(&self, code: &str, untrusted: bool) {
        if !untrusted && self.len.load(Ordering::Acquire) == 0 {
            return;
        }
        let Ok(mut codes) = self.codes.lock() else {
            return;
        };
        if untrusted {
            codes.insert(code.into());
        } else {
            codes.remove(code);
        }
        self.len.store(codes.len(), Ordering::Release);
    }
}

impl LinkCache {
    pub fn new(
        db: Db,
        l2: Option<Valkey>,
        settings: &CacheSettings,
        metrics: RedirectMetrics,
    ) -> Self {
        let l1 = (settings.l1_capacity > 0).then(|| {
            moka::future::Cache::builder()
                .name("links")
                .max_capacity(settings.l1_capacity)
                .expire_after(EntryExpiry::new(settings.l1_ttl, settings.negative_ttl))
                .build_with_hasher(Hasher::default())
        });
        Self(Arc::new(Inner {
            db,
            l1,
            l2,
            l2_ttl: settings.l2_ttl,
            key_prefix: settings.key_prefix.clone(),
            epoch: AtomicU64::new(0),
            floor: AtomicU64::new(0),
            invalidated: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(INVALIDATION_MEMORY)
                .build_with_hasher(Hasher::default()),
            recent: RecentInvalidations::new(),
            untrusted_in_l2: Untrusted::default(),
            metrics,
        }))
    }

    /// Resolves a code. Unknown and inactive codes are `target: None`.
    pub async fn lookup(&self, code: &str) -> Result<Lookup, RedirectError> {
        let inner = &self.0;
        let Some(l1) = &inner.l1 else {
            let entry = self.load(code).await?;
            return Ok(Lookup {
                target: entry.target.clone(),
                layer: entry.layer,
            });
        };
        let key = CodeKey::new(code);
        if let Some(entry) = l1.get(&key).await {
            if self.is_current(code, &entry) {
                return Ok(Lookup {
                    target: entry.target.clone(),
                    layer: Layer::L1,
                });
            }
            l1.invalidate(&key).await;
        }
        // Two tries: a load that raced an invalidation is dropped and redone.
        let mut last = None;
        for _ in 0..2 {
            let entry = l1
                .entry(key.clone())
                .or_try_insert_with(self.load(code))
                .await
                .map_err(|e| match &*e {
                    RedirectError::BadTarget(url_id) => RedirectError::BadTarget(*url_id),
                    other => RedirectError::Unavailable(other.to_string()),
                })?;
            let fresh = entry.is_fresh();
            let entry = entry.into_value();
            let lookup = Lookup {
                target: entry.target.clone(),
                layer: if fresh { entry.layer } else { Layer::L1 },
            };
            if self.is_current(code, &entry) {
                return Ok(lookup);
            }
            l1.invalidate(&key).await;
            last = Some(lookup);
        }
        // Invalidated twice while loading: answer from Postgres directly.
        match self.load_db(code).await {
            Ok(target) => Ok(Lookup {
                target,
                layer: Layer::Db,
            }),
            Err(e) => last.ok_or(e),
        }
    }

    /// The target of `code` when L1 holds a current, positive entry for it;
    /// `None` otherwise (not cached, unknown, inactive, or loaded before the
    /// code's latest invalidation). Never loads: what the fast path serves.
    pub async fn cached(&self, code: &str) -> Option<Target> {
        let entry = self.0.l1.as_ref()?.get(&CodeKey::new(code)).await?;
        if !self.is_current(code, &entry) {
            return None;
        }
        entry.target.clone()
    }

    /// Drops a code from L1 and tombstones it in L2. An error means the
    /// tombstone may not be there, so L2 may still hold the old target: until
    /// a later call writes it, this replica's loads of the code skip L2, and
    /// the caller must not treat the change as applied (it should call
    /// again).
    pub async fn invalidate(&self, code: &str) -> Result<(), CacheError> {
        let inner = &self.0;
        let epoch = inner.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        inner.invalidated.insert(Arc::from(code), epoch);
        inner.recent.note(code, epoch);
        if let Some(l1) = &inner.l1 {
            l1.invalidate(&CodeKey::new(code)).await;
        }
        inner.metrics.invalidations.add(1, &[]);
        if let Some(l2) = &inner.l2
            && let Err(e) = l2
                .set(
                    &self.l2_key(code),
                    TOMBSTONE,
                    TOMBSTONE_TTL,
                    TOMBSTONE_TIMEOUT,
                )
                .await
        {
            inner.untrusted_in_l2.set(code, true);
            self.l2_failed("invalidate", &e);
            return Err(e);
        }
        inner.untrusted_in_l2.set(code, false);
        Ok(())
    }

    /// Drops every L1 entry, and the answers of loads still in flight (for
    /// when changes may have been missed: before the change stream was
    /// read, or after a gap in it).
    pub fn invalidate_all_local(&self) {
        let inner = &self.0;
        let epoch = inner.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        inner.floor.store(epoch, Ordering::Release);
        if let Some(l1) = &inner.l1 {
            l1.invalidate_all();
        }
    }

    /// Stops trusting every L1 entry loaded so far (they are re-read from
    /// Valkey or Postgres on their next use) without dropping them. Called
    /// every `REDIRECT_DEGRADED_L1_TTL_MS` while this replica does not read
    /// the change stream, so that a change it cannot hear about (the API
    /// tombstones Valkey itself) is served within that time.
    pub fn distrust_cached(&self) {
        let inner = &self.0;
        let epoch = inner.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        inner.floor.store(epoch, Ordering::Release);
    }

    /// Whether no invalidation of `code` happened after `entry`'s load began.
    /// Free when nothing at all was invalidated since; one load from the
    /// folded table when something else was; a map lookup only when the
    /// table cannot tell.
    fn is_current(&self, code: &str, entry: &Entry) -> bool {
        let inner = &self.0;
        entry.epoch >= inner.epoch.load(Ordering::Acquire)
            || (entry.epoch >= inner.floor.load(Ordering::Acquire)
                && (!inner.recent.maybe_since(code, entry.epoch)
                    || inner
                        .invalidated
                        .get(code)
                        .is_none_or(|invalidated_at| entry.epoch >= invalidated_at)))
    }

    fn l2_key(&self, code: &str) -> String {
        shortline_shared::cache::link_key(&self.0.key_prefix, code)
    }

    /// L2, then Postgres (writing what Postgres found back to L2).
    async fn load(&self, code: &str) -> Result<Entry, RedirectError> {
        let inner = &self.0;
        let epoch = inner.epoch.load(Ordering::Acquire);
        // An unwritten tombstone counts as one: Postgres answers.
        let mut tombstoned = inner.untrusted_in_l2.contains(code);
        if let (Some(l2), false) = (&inner.l2, tombstoned) {
            match l2.get(&self.l2_key(code)).await {
                Ok(Some(value)) if value == TOMBSTONE => tombstoned = true,
                Ok(Some(value)) => {
                    if let Some(target) = from_l2(&value) {
                        let target = target.map_err(|bad| bad_target(code, Layer::L2, &bad))?;
                        return Ok(Entry {
                            target: Some(target),
                            epoch,
                            layer: Layer::L2,
                        });
                    }
                    tracing::warn!(short_code = code, "unreadable Valkey value; ignoring it");
                }
                Ok(None) => {}
                Err(e) => self.l2_failed("get", &e),
            }
        }
        let found = self.load_row(code).await?;
        let target = found
            .as_ref()
            .map(|row| Target::try_from(row).map_err(|bad| bad_target(code, Layer::Db, &bad)))
            .transpose()?;
        if let (Some(l2), Some(target), Some(row), false) = (&inner.l2, &target, &found, tombstoned)
        {
            // Off the request path: the answer does not wait for the write.
            let value = target
                .to_l2()
                .unwrap_or_else(|| serde_json::to_string(row).unwrap_or_default());
            let (l2, key, ttl, cache) = (l2.clone(), self.l2_key(code), inner.l2_ttl, self.clone());
            tokio::spawn(async move {
                if let Err(e) = l2.set_if_absent(&key, &value, ttl).await {
                    cache.l2_failed("set", &e);
                }
            });
        }
        Ok(Entry {
            target,
            epoch,
            layer: Layer::Db,
        })
    }

    /// The active link's target from Postgres (`None`: unknown or
    /// inactive); a stored link failing the rules is an error.
    async fn load_db(&self, code: &str) -> Result<Option<Target>, RedirectError> {
        self.load_row(code)
            .await?
            .map(|row| Target::try_from(&row))
            .transpose()
            .map_err(|bad| bad_target(code, Layer::Db, &bad))
    }

    /// The active link's row (`None`: unknown or inactive). `key` is the
    /// code, or `<host>/<code>` on a custom domain.
    async fn load_row(&self, key: &str) -> Result<Option<TargetRow>, RedirectError> {
        let unavailable = |e: sqlx::Error| RedirectError::Unavailable(e.to_string());
        let mut conn = self.0.db.acquire().await.map_err(unavailable)?;
        let query = match key.split_once('/') {
            None => sqlx::query_as::<_, TargetRow>(TARGET_BY_CODE).bind(key),
            Some((host, code)) => sqlx::query_as::<_, TargetRow>(TARGET_BY_DOMAIN_CODE)
                .bind(host)
                .bind(code),
        };
        query.fetch_optional(&mut *conn).await.map_err(unavailable)
    }

    fn l2_failed(&self, op: &'static str, e: &CacheError) {
        self.0.metrics.valkey_errors.add(1, &[]);
        tracing::debug!(op, error = %e, "valkey command failed; carrying on without it");
    }
}

/// Logs a stored target that fails the rule; the request's 502.
fn bad_target(code: &str, layer: Layer, bad: &BadTarget) -> RedirectError {
    tracing::warn!(
        short_code = code,
        url_id = bad.url_id,
        layer = layer.as_str(),
        problem = %bad.problem,
        "stored target fails the target rule; not serving or caching it"
    );
    RedirectError::BadTarget(bad.url_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shortline_shared::target_url::TargetUrlError;

    #[test]
    fn l2_values_round_trip_and_are_checked() {
        let t = Target::checked(7, 3, "https://example.com/a?q=1#f").expect("valid");
        assert_eq!(
            t.location().as_ref().map(HeaderValue::as_bytes),
            Some(&b"https://example.com/a?q=1#f"[..])
        );
        assert_eq!(from_l2(&t.to_l2().expect("plain")), Some(Ok(t)));
        assert_eq!(from_l2("x\t1\thttps://a"), None);
        assert_eq!(from_l2(TOMBSTONE), None);
        // The tail is the URL whatever it holds, and it is checked.
        assert_eq!(
            split_l2("7\t3\thttps://example.com/a\tb"),
            Some((7, 3, "https://example.com/a\tb"))
        );
        for bad in [
            "7\t3\tjavascript:alert(1)",
            "7\t3\thttps://example.com/a\tb",
            "7\t3\thttps://trusted.com@evil.com/",
            "7\t3\thttps://example.com/\u{1b}",
        ] {
            assert!(
                matches!(from_l2(bad), Some(Err(BadTarget { url_id: 7, .. }))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn non_ascii_targets_get_an_rfc_3986_location() {
        let t = Target::checked(1, 2, "https://bücher.example/straße?q=ü").expect("valid");
        assert_eq!(
            t.location_text(),
            "https://xn--bcher-kva.example/stra%C3%9Fe?q=%C3%BC"
        );
        assert!(t.location().is_some());
        // Its L2 value checks as itself.
        assert_eq!(from_l2(&t.to_l2().expect("plain")), Some(Ok(t)));
    }

    #[test]
    fn positive_entries_expire_spread_over_the_last_quarter_of_the_ttl() {
        let expiry = EntryExpiry::new(Duration::from_secs(60), Duration::from_secs(5));
        let at = Instant::now();
        let ttls: Vec<Duration> = (0..1000)
            .map(|i| expiry.positive_ttl(&CodeKey::new(&format!("code{i}")), at))
            .collect();
        let (min, max) = (
            ttls.iter().min().expect("ttls"),
            ttls.iter().max().expect("ttls"),
        );
        assert!(*min >= Duration::from_secs(45) && *max <= Duration::from_secs(60));
        // Spread over the whole window, not bunched: every 1.5 s slice has some.
        let mut slices = [0usize; 10];
        for ttl in &ttls {
            let slice = ((ttl.as_secs_f64() - 45.0) / 1.5) as usize;
            slices[slice.min(9)] += 1;
        }
        assert!(slices.iter().all(|&n| n > 50), "{slices:?}");
        // The same code loaded again later gets another time.
        let key = CodeKey::new("code1");
        let later: Vec<Duration> = (1..20u64)
            .map(|ms| expiry.positive_ttl(&key, at + Duration::from_millis(ms)))
            .collect();
        assert!(later.iter().any(|ttl| *ttl != ttls[1]));
        // Negative entries keep their exact time.
        let negative = Entry {
            target: None,
            epoch: 0,
            layer: Layer::Db,
        };
        assert_eq!(
            expiry.expire_after_create(&key, &negative, at),
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn the_folded_table_never_misses_an_invalidation() {
        let recent = RecentInvalidations::new();
        assert!(!recent.maybe_since("abc123", 0));
        recent.note("abc123", 7);
        assert!(recent.maybe_since("abc123", 6));
        assert!(!recent.maybe_since("abc123", 7));
        // An older epoch noted later does not hide the newer one.
        recent.note("abc123", 3);
        assert!(recent.maybe_since("abc123", 6));
        // Other codes: told apart except where they share a slot.
        let shared = (0..1000)
            .filter(|i| recent.maybe_since(&format!("other{i}"), 6))
            .count();
        assert!(shared < 10, "{shared} of 1000 codes share the slot");
    }

    #[test]
    fn a_url_that_cannot_be_a_header_is_not_a_target() {
        assert_eq!(
            Target::checked(1, 2, "https://example.com/\nx"),
            Err(BadTarget {
                url_id: 1,
                problem: Problem::Target("original_url", TargetUrlError::Whitespace)
            })
        );
        assert_eq!(
            Target::checked(1, 2, "https://example.com/\u{7f}").map_err(|b| b.problem),
            Err(Problem::Target(
                "original_url",
                TargetUrlError::ControlCharacter
            ))
        );
    }

    #[test]
    fn links_with_rules_travel_through_l2_as_json() {
        let rules =
            serde_json::json!([{"when": {"device": ["mobile"]}, "target": "https://m.example/"}]);
        let row = TargetRow {
            redirect_type: 308,
            forward_query: true,
            rules: Some(sqlx::types::Json(rules)),
            expires_at: Some(Utc::now()),
            ..TargetRow::plain(7, 3, "https://example.com/a")
        };
        let t = Target::try_from(&row).expect("valid");
        assert_eq!(t.status, StatusCode::PERMANENT_REDIRECT);
        assert!(t.policy.is_some() && t.to_l2().is_none());
        let value = serde_json::to_string(&row).expect("json");
        assert_eq!(from_l2(&value), Some(Ok(t)));
        // A plain link with another redirect type is JSON too; its status survives.
        let moved = TargetRow {
            redirect_type: 301,
            ..TargetRow::plain(7, 3, "https://example.com/a")
        };
        let t = Target::try_from(&moved).expect("valid");
        assert!(t.policy.is_none() && t.to_l2().is_none());
        let back = from_l2(&serde_json::to_string(&moved).expect("json"))
            .expect("readable")
            .expect("valid");
        assert_eq!(back.status, StatusCode::MOVED_PERMANENTLY);
        // Bad rows are bad targets, from L2 as from Postgres.
        let bad = TargetRow {
            redirect_type: 303,
            ..TargetRow::plain(7, 3, "https://example.com/a")
        };
        assert!(matches!(
            Target::try_from(&bad),
            Err(BadTarget {
                problem: Problem::RedirectType(303),
                ..
            })
        ));
        assert!(matches!(
            from_l2(
                r#"{"url_id":7,"user_id":3,"original_url":"https://a.example/","rules":[{"when":{},"target":"https://b.example/"}]}"#
            ),
            Some(Err(_))
        ));
    }
}
