//! Request rate limits shared by every api replica, kept in Valkey.
//!
//! Each bucket (one per API key, one per client address for requests
//! without a valid key) is a GCRA ("generic cell rate algorithm") state: one
//! number, the theoretical arrival time, read and advanced by one Lua script
//! per request, atomically on the server with the server's clock, so
//! replicas never race each other or disagree on time. A limit of N per
//! minute lets N requests through in a burst and then one every 60/N s.
//!
//! If Valkey cannot be asked (down, slow, refusing), the limiter fails open:
//! the request passes, `shortline_rate_limit_fail_open_total` counts it and
//! a warning is logged (at most every 10 s). An outage of the cache must not
//! become an outage of the API (docs/runbook.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;
use shortline_shared::cache::{LuaScript, Valkey};

/// The window every limit is expressed over.
pub const WINDOW: Duration = Duration::from_secs(60);

/// How often at most the fail-open warning is logged.
const WARN_EVERY_SECS: u64 = 10;

/// GCRA in one call. KEYS[1]: the bucket. ARGV[1]: microseconds between
/// requests at the steady rate; ARGV[2]: the window in microseconds.
/// Returns {allowed (0|1), remaining, µs until the bucket is full again,
/// µs until the next request would be allowed}.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - window
if now < allow_at then
  return {0, 0, tat - now, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, math.floor((window - (new_tat - now)) / interval), new_tat - now, 0}
";

/// Which kind of bucket a request was counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// Per API key.
    Key,
    /// Per client address (requests without a valid key).
    Address,
}

impl Bucket {
    fn policy(self) -> &'static str {
        match self {
            Bucket::Key => "per-key",
            Bucket::Address => "per-address",
        }
    }
}

/// The limiter's answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub bucket: Bucket,
    pub allowed: bool,
    /// Requests per window.
    pub limit: u32,
    /// Requests left right now.
    pub remaining: u64,
    /// Seconds until the whole quota is available again.
    pub reset_secs: u64,
    /// Seconds to wait before retrying (0 when allowed).
    pub retry_after_secs: u64,
}

impl Decision {
    /// Adds the IETF `RateLimit-Policy` and `RateLimit` fields
    /// (draft-ietf-httpapi-ratelimit-headers).
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        let policy = self.bucket.policy();
        if let Ok(v) = HeaderValue::from_str(&format!(
            "\"{policy}\";q={};w={}",
            self.limit,
            WINDOW.as_secs()
        )) {
            headers.insert("ratelimit-policy", v);
        }
        if let Ok(v) = HeaderValue::from_str(&format!(
            "\"{policy}\";r={};t={}",
            self.remaining, self.reset_secs
        )) {
            headers.insert("ratelimit", v);
        }
    }
}

/// Counts requests against per-key and per-address limits in Valkey.
#[derive(Clone)]
pub struct RateLimiter {
    valkey: Valkey,
    prefix: Arc<str>,
    script: LuaScript,
    metrics: LimiterMetrics,
    last_warning: Arc<AtomicU64>,
}

#[derive(Clone)]
struct LimiterMetrics {
    fail_open: Counter<u64>,
    rejected: Counter<u64>,
}

impl RateLimiter {
    /// A limiter over `valkey`, its keys under `<prefix>:rl:`.
    pub fn new(valkey: Valkey, prefix: &str) -> Self {
        let meter = shortline_shared::telemetry::meter();
        let metrics = LimiterMetrics {
            fail_open: meter
                .u64_counter("shortline.rate_limit.fail_open")
                .with_description(
                    "API requests let through unchecked because the rate limiter could not reach Valkey",
                )
                .build(),
            rejected: meter
                .u64_counter("shortline.rate_limit.rejected")
                .with_description("API requests answered 429, by bucket (key or address)")
                .build(),
        };
        metrics.fail_open.add(0, &[]);
        for bucket in ["key", "address"] {
            metrics.rejected.add(0, &[KeyValue::new("bucket", bucket)]);
        }
        Self {
            valkey,
            prefix: Arc::from(prefix),
            script: LuaScript::new(GCRA),
            metrics,
            last_warning: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The Valkey client the limits are counted with.
    pub fn valkey(&self) -> &Valkey {
        &self.valkey
    }

    /// Whether Valkey is connected right now (while it is not, requests
    /// pass unchecked).
    pub fn is_connected(&self) -> bool {
        self.valkey.is_connected()
    }

    /// Counts one request in `bucket`/`id` at `limit_per_minute`; `None`
    /// when Valkey could not be asked (the request passes: fail open).
    pub async fn check(&self, bucket: Bucket, id: &str, limit_per_minute: u32) -> Option<Decision> {
        let limit = limit_per_minute.max(1);
        let window_us = i64::try_from(WINDOW.as_micros()).unwrap_or(i64::MAX);
        let interval_us = (window_us / i64::from(limit)).max(1);
        let kind = match bucket {
            Bucket::Key => "key",
            Bucket::Address => "ip",
        };
        let key = format!("{}:rl:{kind}:{id}", self.prefix);
        let reply = self
            .valkey
            .run_script(&self.script, vec![key], vec![interval_us, window_us])
            .await;
        let values = match reply {
            Ok(v) if v.len() == 4 => v,
            Ok(v) => {
                self.failed_open(&format!("unexpected reply {v:?}"));
                return None;
            }
            Err(e) => {
                self.failed_open(&e.to_string());
                return None;
            }
        };
        let secs = |us: i64| u64::try_from(us.max(0)).unwrap_or(0).div_ceil(1_000_000);
        let decision = Decision {
            bucket,
            allowed: values[0] == 1,
            limit,
            remaining: u64::try_from(values[1].max(0)).unwrap_or(0),
            reset_secs: secs(values[2]),
            retry_after_secs: secs(values[3]).max(u64::from(values[0] != 1)),
        };
        if !decision.allowed {
            let label = match bucket {
                Bucket::Key => "key",
                Bucket::Address => "address",
            };
            self.metrics
                .rejected
                .add(1, &[KeyValue::new("bucket", label)]);
        }
        Some(decision)
    }

    fn failed_open(&self, error: &str) {
        self.metrics.fail_open.add(1, &[]);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let last = self.last_warning.load(Ordering::Relaxed);
        if now >= last + WARN_EVERY_SECS
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                error,
                "rate limiter cannot reach valkey; letting requests through unchecked"
            );
        }
    }
}
