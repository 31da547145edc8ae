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
//!
//! A take whose reply does not arrive in time (a slow or stalled Valkey,
//! an overloaded replica) may still have counted, or may count later when
//! the command is finally run or replayed after a reconnect; the request
//! has answered 503 by then. So every take names itself with a token
//! (`<counter>:take:<ulid>`, kept [`TOKEN_TTL`]): a take that finds its
//! token already counted answers the same again instead of counting twice,
//! and a failed take is given back in the background — the counter is
//! lowered when the token says it counted, and the token is marked given
//! back when it did not, so a take arriving later counts nothing. A
//! redirect and a count therefore always go together; only when the give
//! back itself cannot reach Valkey for [`GIVE_BACK_FOR`] may a click be
//! lost, which leaves the link fewer redirects, never more.

use std::net::IpAddr;
use std::time::Duration;

use shortline_shared::cache::{CacheError, LuaScript, Valkey};
use shortline_shared::db::Db;
use tokio_util::task::TaskTracker;

/// Checks the counter against the limit and, when asked to, takes one
/// click. KEYS[1] counter, KEYS[2] this take's token; ARGV[1] limit;
/// ARGV[2] 1 take, 0 peek; ARGV[3] the seed of a missing counter (-1:
/// unknown yet); ARGV[4] the token's lifetime (ms). Returns {-2} when the
/// counter is missing and no seed was given, {-3} when this take was given
/// back already, {0, n} when exhausted, {1, n} when allowed (n: the count
/// after it; a replayed take answers what it answered first).
const TAKE_CLICK: &str = r"
local t = redis.call('GET', KEYS[2])
if t == 'given-back' then return {-3} end
if t then return {1, tonumber(t)} end
local n = redis.call('GET', KEYS[1])
if not n then
  if tonumber(ARGV[3]) < 0 then return {-2} end
  redis.call('SET', KEYS[1], ARGV[3], 'NX')
  n = redis.call('GET', KEYS[1])
end
n = tonumber(n)
if n >= tonumber(ARGV[1]) then return {0, n} end
if tonumber(ARGV[2]) == 1 then
  n = redis.call('INCR', KEYS[1])
  redis.call('SET', KEYS[2], n, 'PX', ARGV[4])
end
return {1, n}
";

/// Gives back a take whose answer was lost. KEYS[1] counter, KEYS[2] the
/// take's token; ARGV[1] the token's lifetime (ms). Lowers the counter if
/// the take counted, and marks the token so that a take run later counts
/// nothing. Returns {1} when a click was given back, {0} otherwise.
const GIVE_BACK_CLICK: &str = r"
local t = redis.call('GET', KEYS[2])
if t == 'given-back' then return {0} end
redis.call('SET', KEYS[2], 'given-back', 'PX', ARGV[1])
if t and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('DECR', KEYS[1])
  return {1}
end
return {0}
";

/// How long a take's token is kept: longer than any take can be delayed
/// and than [`GIVE_BACK_FOR`].
pub const TOKEN_TTL: Duration = Duration::from_secs(120);

/// How long a failed take is tried to be given back.
pub const GIVE_BACK_FOR: Duration = Duration::from_secs(60);

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
const GIVE_BACK_ATTEMPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('DECR', KEYS[1]) end
return {1}
";

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

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
    give_back_click: LuaScript,
    take_attempt: LuaScript,
    give_back_attempt: LuaScript,
    attempts: u32,
    window: Duration,
    timeout: Duration,
    /// Give-backs still running.
    give_backs: TaskTracker,
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
            give_back_click: LuaScript::new(GIVE_BACK_CLICK),
            take_attempt: LuaScript::new(TAKE_ATTEMPT),
            give_back_attempt: LuaScript::new(GIVE_BACK_ATTEMPT),
            attempts,
            window,
            timeout,
            give_backs: TaskTracker::new(),
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
    /// one is left (a HEAD request). A take that fails is given back in
    /// the background (see the module docs).
    pub async fn click(&self, url_id: i64, max: u64, take: bool) -> Result<Clicks, Uncounted> {
        let valkey = self.valkey().await?;
        let keys = self.click_keys(url_id, ulid::Ulid::generate());
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let mut seed = -1;
        loop {
            let answer = match valkey
                .run_script_within(
                    &self.take_click,
                    keys.clone(),
                    vec![max, i64::from(take), seed, millis(TOKEN_TTL)],
                    self.timeout,
                )
                .await
            {
                Ok(answer) => answer,
                Err(e) => {
                    if take {
                        self.give_back_later(valkey.clone(), keys);
                    }
                    return Err(e.into());
                }
            };
            match answer.first() {
                Some(1) => return Ok(Clicks::Allowed),
                Some(0) => return Ok(Clicks::Exhausted),
                Some(-2) if seed < 0 => seed = self.redirects_so_far(url_id).await?,
                _ => return Err(Uncounted(format!("unexpected answer {answer:?}"))),
            }
        }
    }

    /// The counter of a link and the token of one take of it (both under
    /// the prefix, the only keys the services' Valkey user may touch).
    fn click_keys(&self, url_id: i64, take: ulid::Ulid) -> Vec<String> {
        let counter = format!("{}:clicks:{url_id}", self.prefix);
        let token = format!("{counter}:take:{take}");
        vec![counter, token]
    }

    /// How many failed takes are still being given back (a click counted
    /// by one of them may yet be freed).
    pub fn giving_back(&self) -> usize {
        self.give_backs.len()
    }

    /// Gives back a take whose answer was lost, retrying for
    /// [`GIVE_BACK_FOR`] while Valkey cannot answer.
    fn give_back_later(&self, valkey: Valkey, keys: Vec<String>) {
        let script = self.give_back_click.clone();
        let timeout = self.timeout.max(Duration::from_secs(1));
        self.give_backs.spawn(async move {
            let deadline = tokio::time::Instant::now() + GIVE_BACK_FOR;
            let mut pause = Duration::from_millis(50);
            loop {
                let tried = valkey
                    .run_script_within(&script, keys.clone(), vec![millis(TOKEN_TTL)], timeout)
                    .await;
                match tried {
                    Ok(answer) => {
                        tracing::debug!(counter = %keys[0], given_back = answer.first() == Some(&1), "failed click take settled");
                        return;
                    }
                    Err(e) if tokio::time::Instant::now() >= deadline => {
                        tracing::error!(counter = %keys[0], error = %e, "cannot give back a failed click take: the link may have one redirect fewer than its limit");
                        return;
                    }
                    Err(_) => {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(2));
                    }
                }
            }
        });
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
        let window = millis(self.window);
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
                    &self.give_back_attempt,
                    vec![self.attempts_key(url_id, client)],
                    vec![],
                    self.timeout,
                )
                .await;
        }
    }
}
