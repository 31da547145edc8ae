//! The two rules that need every replica to agree, counted in Valkey with
//! one script call each: a link's click limit (`max_clicks`) and the
//! password attempts per link and client address.
//!
//! Both fail closed: without Valkey a limited link answers 503 rather than
//! risk a redirect over its limit, and a password cannot be tried.
//!
//! A click-limit counter (`<prefix>:clicks:<url_id>`) has no TTL, so a
//! Valkey evicting only keys with one (`volatile-lru`, as deployed) never
//! drops it. If it is missing anyway (a Valkey restart without persistence,
//! or the link's first limited click), it is seeded from the link's
//! all-time redirect count in PostgreSQL (`link_stats`, which trails the
//! redirects by the pipeline's latency): after a loss of Valkey's data a
//! link may pass its limit by the clicks of that latency, never more.

use std::net::IpAddr;
use std::time::Duration;

use shortline_shared::cache::{CacheError, LuaScript, Valkey};
use shortline_shared::db::Db;

/// Checks the counter against the limit and, when asked to, takes one
/// click. KEYS[1] counter; ARGV[1] limit; ARGV[2] 1 take, 0 peek; ARGV[3]
/// the seed of a missing counter (-1: unknown yet). Returns {-2} when the
/// counter is missing and no seed was given, {0, n} when exhausted, {1, n}
/// when allowed (n: the count after it).
const TAKE_CLICK: &str = r"
local n = redis.call('GET', KEYS[1])
if not n then
  if tonumber(ARGV[3]) < 0 then return {-2} end
  redis.call('SET', KEYS[1], ARGV[3], 'NX')
  n = redis.call('GET', KEYS[1])
end
n = tonumber(n)
if n >= tonumber(ARGV[1]) then return {0, n} end
if tonumber(ARGV[2]) == 1 then n = redis.call('INCR', KEYS[1]) end
return {1, n}
";

/// Takes one attempt. KEYS[1] attempts; ARGV[1] limit; ARGV[2] window
/// (ms). Returns {1, n} when allowed, {0, ms until the window ends} when
/// not.
const TAKE_ATTEMPT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then return {0, redis.call('PTTL', KEYS[1])} end
return {1, n}
";

/// Gives an attempt back (a right password does not count).
const GIVE_BACK: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('DECR', KEYS[1]) end
return {1}
";

/// Longest wait for a Valkey connection before a limited link fails closed.
const CONNECT_WAIT: Duration = Duration::from_millis(500);

/// Whether a limited link may redirect once more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clicks {
    Allowed,
    Exhausted,
}

/// Whether a password may be tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Allowed,
    /// Too many wrong ones: retry after this long.
    Limited(Duration),
}

/// Valkey is needed and cannot answer.
#[derive(Debug, thiserror::Error)]
#[error("cannot count in Valkey: {0}")]
pub struct Uncounted(pub String);

impl From<CacheError> for Uncounted {
    fn from(e: CacheError) -> Self {
        Self(e.to_string())
    }
}

/// The counters, for one replica.
pub struct Limits {
    valkey: Option<Valkey>,
    db: Db,
    prefix: String,
    take_click: LuaScript,
    take_attempt: LuaScript,
    give_back: LuaScript,
    attempts: u32,
    window: Duration,
    timeout: Duration,
}

impl Limits {
    pub fn new(
        valkey: Option<Valkey>,
        db: Db,
        prefix: &str,
        attempts: u32,
        window: Duration,
        timeout: Duration,
    ) -> Self {
        Self {
            valkey,
            db,
            prefix: prefix.to_owned(),
            take_click: LuaScript::new(TAKE_CLICK),
            take_attempt: LuaScript::new(TAKE_ATTEMPT),
            give_back: LuaScript::new(GIVE_BACK),
            attempts,
            window,
            timeout,
        }
    }

    /// Valkey, once connected: a replica just started (or reconnecting)
    /// gets [`CONNECT_WAIT`] before the request fails closed.
    async fn valkey(&self) -> Result<&Valkey, Uncounted> {
        let valkey = self
            .valkey
            .as_ref()
            .ok_or_else(|| Uncounted("no Valkey configured".into()))?;
        let deadline = tokio::time::Instant::now() + CONNECT_WAIT;
        while !valkey.is_connected() {
            if tokio::time::Instant::now() >= deadline {
                return Err(Uncounted("Valkey is not connected".into()));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(valkey)
    }

    /// Takes one of a link's `max` clicks (`take`), or only looks whether
    /// one is left (a HEAD request).
    pub async fn click(&self, url_id: i64, max: u64, take: bool) -> Result<Clicks, Uncounted> {
        let valkey = self.valkey().await?;
        let key = format!("{}:clicks:{url_id}", self.prefix);
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let mut seed = -1;
        loop {
            let answer = valkey
                .run_script_within(
                    &self.take_click,
                    vec![key.clone()],
                    vec![max, i64::from(take), seed],
                    self.timeout,
                )
                .await?;
            match answer.first() {
                Some(1) => return Ok(Clicks::Allowed),
                Some(0) => return Ok(Clicks::Exhausted),
                Some(-2) if seed < 0 => seed = self.redirects_so_far(url_id).await?,
                _ => return Err(Uncounted(format!("unexpected answer {answer:?}"))),
            }
        }
    }

    /// The link's all-time redirect count in PostgreSQL.
    async fn redirects_so_far(&self, url_id: i64) -> Result<i64, Uncounted> {
        let mut conn = self
            .db
            .acquire()
            .await
            .map_err(|e| Uncounted(e.to_string()))?;
        let count: Option<i64> =
            sqlx::query_scalar("SELECT redirect_count FROM link_stats WHERE url_id = $1")
                .bind(url_id)
                .fetch_optional(&mut *conn)
                .await
                .map_err(|e| Uncounted(e.to_string()))?;
        Ok(count.unwrap_or(0).max(0))
    }

    fn attempts_key(&self, url_id: i64, client: Option<IpAddr>) -> String {
        let client = client.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        format!("{}:pwtries:{url_id}:{client}", self.prefix)
    }

    /// Takes one password attempt of a client at a link.
    pub async fn attempt(&self, url_id: i64, client: Option<IpAddr>) -> Result<Attempt, Uncounted> {
        let valkey = self.valkey().await?;
        let window = i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX);
        let answer = valkey
            .run_script_within(
                &self.take_attempt,
                vec![self.attempts_key(url_id, client)],
                vec![i64::from(self.attempts), window],
                self.timeout,
            )
            .await?;
        Ok(match answer.as_slice() {
            [1, ..] => Attempt::Allowed,
            [0, ms, ..] => Attempt::Limited(Duration::from_millis(
                u64::try_from(*ms).unwrap_or(0).max(1000),
            )),
            _ => return Err(Uncounted(format!("unexpected answer {answer:?}"))),
        })
    }

    /// Gives back the attempt of a right password.
    pub async fn right_password(&self, url_id: i64, client: Option<IpAddr>) {
        if let Ok(valkey) = self.valkey().await {
            let _ = valkey
                .run_script_within(
                    &self.give_back,
                    vec![self.attempts_key(url_id, client)],
                    vec![],
                    self.timeout,
                )
                .await;
        }
    }
}
