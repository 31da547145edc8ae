//! Valkey access, behind a thin wrapper so the rest of the code never sees
//! `fred` (which has had no release since early 2025; swapping it stays a
//! change to this file only).
//!
//! The wrapper is built for a cache that must never slow down or fail the
//! request it serves: connecting does not block start-up (the pool connects
//! and reconnects in the background), a command is only sent on a connection
//! that is up right now, and every command has a short timeout. Callers treat
//! any error as a cache miss.

use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};

use fred::interfaces::EventInterface;
use fred::prelude::{
    ClientLike, Config, Error as FredError, ErrorKind, Expiration, KeysInterface, Pool,
    ReconnectPolicy, SetOptions,
};
use fred::types::Builder;
use fred::types::config::Options;
use fred::types::scripts::Script;

/// A link's cache key within its domain: the short code on the default
/// domain (today's keys, unchanged), `<host>/<code>` on a custom domain (a
/// code never holds `/`, so the two cannot meet).
pub fn domain_code(domain: Option<&str>, code: &str) -> String {
    match domain {
        Some(host) => format!("{host}/{code}"),
        None => code.to_owned(),
    }
}

/// The Valkey key of a link's cached target: `<prefix>:link:<code>`. The
/// redirect service reads and fills it; a link change replaces it with
/// [`LINK_TOMBSTONE`] (written by each redirect replica that applies the
/// change, and by the API itself right after the commit, so a takedown
/// reaches Valkey even while NATS is away).
pub fn link_key(prefix: &str, code: &str) -> String {
    format!("{prefix}:link:{code}")
}

/// The value of a link's key meaning "changed just now: ask PostgreSQL".
/// Loaders write with `SET NX`, so a loader that read the old row cannot
/// overwrite it.
pub const LINK_TOMBSTONE: &str = "!";

/// How long a tombstone lives (far longer than any lookup takes).
pub const LINK_TOMBSTONE_TTL: Duration = Duration::from_secs(10);

/// Errors from Valkey (callers log them and carry on without the cache).
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("invalid VALKEY_URL: {0}")]
    Config(String),
    #[error("valkey is not connected")]
    Disconnected,
    #[error("valkey: {0}")]
    Command(FredError),
}

impl From<FredError> for CacheError {
    fn from(e: FredError) -> Self {
        if e.details().starts_with("NOPERM") {
            // A misconfigured ACL, not a passing fault: say so (once; the
            // callers log every failure at debug level).
            log_once(
                &PERMISSION_REFUSED,
                &e,
                "Valkey refused a command: the VALKEY_URL user lacks an ACL permission (docs/runbook.md, \"Access control\")",
            );
        }
        Self::Command(e)
    }
}

static PERMISSION_REFUSED: AtomicBool = AtomicBool::new(false);
static LOGIN_REFUSED: AtomicBool = AtomicBool::new(false);

/// Logs an access error at error level the first time this process sees
/// one of its kind, at debug level after that.
fn log_once(seen: &AtomicBool, e: &FredError, message: &str) {
    if seen.swap(true, Ordering::Relaxed) {
        tracing::debug!(error = %e, "{message}");
    } else {
        tracing::error!(error = %e, "{message}");
    }
}

/// Settings for [`Valkey::connect`].
#[derive(Debug, Clone)]
pub struct ValkeySettings {
    /// Connections in the pool.
    pub pool_size: usize,
    /// Longest wait for one command's reply.
    pub command_timeout: Duration,
    /// Longest wait for a TCP connect.
    pub connect_timeout: Duration,
}

impl Default for ValkeySettings {
    fn default() -> Self {
        Self {
            pool_size: 4,
            command_timeout: Duration::from_millis(100),
            connect_timeout: Duration::from_secs(1),
        }
    }
}

/// A pooled Valkey client for string keys and values.
#[derive(Clone)]
pub struct Valkey {
    pool: Pool,
}

impl std::fmt::Debug for Valkey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Valkey")
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl Valkey {
    /// Builds the pool and starts connecting in the background; returns at
    /// once, whether or not the server is reachable. Must run inside a tokio
    /// runtime.
    pub fn connect(url: &str, settings: &ValkeySettings) -> Result<Self, CacheError> {
        let mut config = Config::from_url(url).map_err(|e| CacheError::Config(e.to_string()))?;
        // Keep retrying a server that is down at start instead of giving up.
        config.fail_fast = false;
        let command_timeout = settings.command_timeout;
        let connect_timeout = settings.connect_timeout;
        let pool = Builder::from_config(config)
            .with_performance_config(|p| {
                p.default_command_timeout = command_timeout;
            })
            .with_connection_config(|c| {
                c.connection_timeout = connect_timeout;
                c.internal_command_timeout = connect_timeout;
                c.max_command_attempts = 1;
            })
            // Forever, 50 ms doubling up to 2 s between attempts.
            .set_policy(ReconnectPolicy::new_exponential(0, 50, 2_000, 2))
            .build_pool(settings.pool_size.max(1))?;
        for client in pool.clients() {
            // Refused logins (wrong user or password in VALKEY_URL, or the
            // user is off) otherwise only show as "unreachable" in /ready.
            drop(client.on_error(|(e, _server)| async move {
                if *e.kind() == ErrorKind::Auth {
                    log_once(
                        &LOGIN_REFUSED,
                        &e,
                        "Valkey refused the login: check the user and password in VALKEY_URL",
                    );
                }
                Ok(())
            }));
        }
        // The handles end when the pool quits; nothing to join.
        drop(pool.connect_pool());
        Ok(Self { pool })
    }

    /// Whether at least one pooled connection is up.
    pub fn is_connected(&self) -> bool {
        self.pool.clients().iter().any(|c| c.is_connected())
    }

    fn client(&self) -> Result<&fred::clients::Client, CacheError> {
        let client = self.pool.next_connected();
        if client.is_connected() {
            Ok(client)
        } else {
            Err(CacheError::Disconnected)
        }
    }

    /// `GET key`.
    pub async fn get(&self, key: &str) -> Result<Option<String>, CacheError> {
        Ok(self.client()?.get(key).await?)
    }

    /// `SET key value EX ttl NX`: writes only when the key is absent, so a
    /// value read from the source of truth never overwrites a newer marker.
    /// Returns whether it was written.
    pub async fn set_if_absent(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        let written: Option<String> = self
            .client()?
            .set(
                key,
                value,
                Some(Expiration::EX(ttl_secs(ttl))),
                Some(SetOptions::NX),
                false,
            )
            .await?;
        Ok(written.is_some())
    }

    /// `SET key value EX ttl` (unconditional), waiting up to `timeout` for
    /// the reply instead of the pool's command timeout (for writes that
    /// matter more than they must be fast, such as invalidation markers).
    pub async fn set(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
        timeout: Duration,
    ) -> Result<(), CacheError> {
        let options = Options {
            timeout: Some(timeout),
            ..Options::default()
        };
        let _: Option<String> = self
            .client()?
            .with_options(&options)
            .set(key, value, Some(Expiration::EX(ttl_secs(ttl))), None, false)
            .await?;
        Ok(())
    }

    /// `DEL key`.
    pub async fn delete(&self, key: &str) -> Result<(), CacheError> {
        let _: i64 = self.client()?.del(key).await?;
        Ok(())
    }

    /// Runs a Lua script server-side (`EVALSHA`, loading it on the first
    /// `NOSCRIPT`): one round trip, atomic on the server. Integer arguments
    /// and an integer-array reply, which is all Shortline's scripts use.
    pub async fn run_script(
        &self,
        script: &LuaScript,
        keys: Vec<String>,
        args: Vec<i64>,
    ) -> Result<Vec<i64>, CacheError> {
        Ok(script
            .0
            .evalsha_with_reload(self.client()?, keys, args)
            .await?)
    }

    /// [`Valkey::run_script`], waiting up to `timeout` for the reply instead
    /// of the pool's command timeout (for counts that cannot fall back to
    /// anything: a reply lost to a short timeout would have counted without
    /// the caller knowing).
    pub async fn run_script_within(
        &self,
        script: &LuaScript,
        keys: Vec<String>,
        args: Vec<i64>,
        timeout: Duration,
    ) -> Result<Vec<i64>, CacheError> {
        let options = Options {
            timeout: Some(timeout),
            ..Options::default()
        };
        let client = self.client()?.with_options(&options);
        Ok(script.0.evalsha_with_reload(&client, keys, args).await?)
    }

    /// `PING`, for readiness checks.
    pub async fn ping(&self) -> bool {
        match self.client() {
            Ok(c) => c.ping::<String>(None).await.is_ok(),
            Err(_) => false,
        }
    }

    /// Closes every connection.
    pub async fn quit(&self) {
        let _ = self.pool.quit().await;
    }
}

/// A Lua script for [`Valkey::run_script`] (its SHA-1 is computed once).
#[derive(Debug, Clone)]
pub struct LuaScript(Script);

impl LuaScript {
    pub fn new(lua: &'static str) -> Self {
        Self(Script::from_lua(lua))
    }
}

fn ttl_secs(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX)
}
