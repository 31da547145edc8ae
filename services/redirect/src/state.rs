//! Shared state of the redirect handlers, and the service's metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram, ObservableCounter};
use shortline_shared::cache::Valkey;
use shortline_shared::http::RequestTelemetry;
use sqlx::PgPool;

use axum::http::{HeaderValue, StatusCode};

use crate::clicks::{ClickSink, TrustedProxies};
use crate::hosts::Hosts;
use crate::limits::Limits;
use crate::pages::Pages;
use crate::policy::AgentMemo;
use crate::resolve::{Layer, LinkCache};
use crate::routes::NO_STORE;

/// Cloned for every request (axum's `State`), so it is one `Arc`.
#[derive(Clone)]
pub struct RedirectState(Arc<Shared>);

impl RedirectState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for RedirectState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What the handlers share.
pub struct Shared {
    pub db: PgPool,
    pub valkey: Option<Valkey>,
    pub nats: Option<async_nats::Client>,
    pub links: LinkCache,
    pub clicks: ClickSink,
    /// Click limits and password attempts (Valkey).
    pub limits: Limits,
    /// Device and OS per `User-Agent`, for links with rules.
    pub agents: AgentMemo,
    /// Pages for browsers.
    pub pages: Pages,
    /// The default domain's hosts (which `Host` is a custom domain).
    pub hosts: Hosts,
    /// `Cache-Control` of a 301 or 308 redirect of a link without rules.
    pub permanent_cache_control: HeaderValue,
    pub trusted_proxies: Arc<TrustedProxies>,
    /// `PUBLIC_BASE_URL` without a trailing `/`: what QR codes
    /// put before the code.
    pub public_base_url: Arc<str>,
    pub metrics: RedirectMetrics,
    /// Request span, duration histogram and access log, shared by the
    /// router's layer and the fast path.
    pub http: RequestTelemetry,
}

impl Shared {
    /// `Cache-Control` of a redirect of a link without rules: `public,
    /// max-age=N` for a permanent (301, 308) one, else `private, no-store`
    /// (a link can change). A link with rules answers per request and is
    /// always `private, no-store`.
    pub fn cache_control(&self, status: StatusCode) -> HeaderValue {
        if status == StatusCode::MOVED_PERMANENTLY || status == StatusCode::PERMANENT_REDIRECT {
            self.permanent_cache_control.clone()
        } else {
            NO_STORE
        }
    }
}

/// Why a link with rules did not redirect (the `reason` of
/// `shortline.redirect.refused`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Past `expires_at`, no fallback: 410.
    Expired,
    /// `max_clicks` reached, no fallback: 410.
    Exhausted,
    /// A wrong password: 401.
    WrongPassword,
    /// Too many wrong passwords: 429.
    AttemptsLimited,
    /// Valkey could not count a limited or protected link: 503.
    Uncounted,
}

impl Refusal {
    const ALL: [Refusal; 5] = [
        Refusal::Expired,
        Refusal::Exhausted,
        Refusal::WrongPassword,
        Refusal::AttemptsLimited,
        Refusal::Uncounted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Expired => "expired",
            Refusal::Exhausted => "exhausted",
            Refusal::WrongPassword => "wrong_password",
            Refusal::AttemptsLimited => "attempts_limited",
            Refusal::Uncounted => "uncounted",
        }
    }
}

/// Every instrument the redirect service records (names follow
/// `shortline.redirect.*` / `shortline.clicks.*`; the Prometheus exporter
/// turns dots into underscores and adds `_total` / unit suffixes).
#[derive(Clone)]
pub struct RedirectMetrics(Arc<Instruments>);

pub struct Instruments {
    /// Lookups by the layer that answered (`l1`, `l2`, `db`) and result
    /// (`found`, `not_found`): counted in plain atomics on the request path
    /// (a counter's `add` with attributes looks its series up every time),
    /// reported as the `shortline.redirect.lookups` counter when metrics are
    /// read.
    lookups: Arc<LookupCounts>,
    _lookups_reported: ObservableCounter<u64>,
    /// Cache entries dropped because a link changed.
    pub invalidations: Counter<u64>,
    /// Requests for links with rules that did not redirect, by reason.
    refused: Counter<u64>,
    /// Valkey commands that failed or timed out (the request carried on).
    pub valkey_errors: Counter<u64>,
    /// Clicks accepted into the buffer.
    pub clicks_buffered: Counter<u64>,
    /// Clicks lost, by reason (`overflow`: buffer full; `shutdown`: not
    /// published before the flush deadline and not spilled either).
    pub clicks_dropped: Counter<u64>,
    /// Clicks acknowledged by JetStream.
    pub clicks_published: Counter<u64>,
    /// Clicks written to a spill file at shutdown (NATS unavailable).
    pub clicks_spilled: Counter<u64>,
    /// Spilled clicks published from a spill file (by whichever replica
    /// replayed it).
    pub clicks_replayed: Counter<u64>,
    /// Batch publishes that failed (the batch is retried).
    pub click_publish_failures: Counter<u64>,
    /// Clicks waiting in the buffer.
    pub click_buffer_depth: Gauge<u64>,
    /// Clicks per published batch.
    pub click_batch_size: Histogram<u64>,
    /// Time from sending a batch to its ack.
    pub click_publish_seconds: Histogram<f64>,
}

impl RedirectMetrics {
    pub fn new() -> Self {
        let meter = shortline_shared::telemetry::meter();
        let lookups = Arc::new(LookupCounts::default());
        let counts = lookups.clone();
        let instruments = Instruments {
            _lookups_reported: meter
                .u64_observable_counter("shortline.redirect.lookups")
                .with_description("Short-code lookups by answering layer (l1, l2, db) and result")
                .with_callback(move |observer| counts.report(observer))
                .build(),
            lookups,
            invalidations: meter
                .u64_counter("shortline.redirect.invalidations")
                .with_description("Cache entries dropped on a link-change event")
                .build(),
            refused: meter
                .u64_counter("shortline.redirect.refused")
                .with_description(
                    "Requests for links with rules that did not redirect, by reason (expired, exhausted, wrong_password, attempts_limited, uncounted)",
                )
                .build(),
            valkey_errors: meter
                .u64_counter("shortline.redirect.valkey.errors")
                .with_description("Valkey commands that failed or timed out")
                .build(),
            clicks_buffered: meter
                .u64_counter("shortline.clicks.buffered")
                .with_description("Click events accepted into the publish buffer")
                .build(),
            clicks_dropped: meter
                .u64_counter("shortline.clicks.dropped")
                .with_description("Click events lost, by reason (overflow, shutdown)")
                .build(),
            clicks_published: meter
                .u64_counter("shortline.clicks.published")
                .with_description("Click events acknowledged by JetStream")
                .build(),
            clicks_spilled: meter
                .u64_counter("shortline.clicks.spilled")
                .with_description(
                    "Click events written to a spill file at shutdown because NATS was unavailable",
                )
                .build(),
            clicks_replayed: meter
                .u64_counter("shortline.clicks.replayed")
                .with_description("Spilled click events published from a spill file")
                .build(),
            click_publish_failures: meter
                .u64_counter("shortline.clicks.publish.failures")
                .with_description("Click batch publishes that failed and will be retried")
                .build(),
            click_buffer_depth: meter
                .u64_gauge("shortline.clicks.buffer.depth")
                .with_description("Click events waiting in the publish buffer")
                .build(),
            click_batch_size: meter
                .u64_histogram("shortline.clicks.batch.size")
                .with_description("Click events per published batch")
                .with_boundaries(vec![
                    1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0,
                ])
                .build(),
            click_publish_seconds: meter
                .f64_histogram("shortline.clicks.publish.duration")
                .with_unit("s")
                .with_description("Time from sending a click batch to its JetStream ack")
                .with_boundaries(shortline_shared::telemetry::SECONDS_BUCKETS.to_vec())
                .build(),
        };
        // Every series the dashboards and alerts read exists from the first
        // scrape (a counter that has never moved is 0, not absent; the
        // lookups report all of theirs every time).
        for reason in Refusal::ALL {
            instruments
                .refused
                .add(0, &[KeyValue::new("reason", reason.as_str())]);
        }
        for reason in ["overflow", "shutdown"] {
            instruments
                .clicks_dropped
                .add(0, &[KeyValue::new("reason", reason)]);
        }
        for counter in [
            &instruments.invalidations,
            &instruments.valkey_errors,
            &instruments.clicks_buffered,
            &instruments.clicks_published,
            &instruments.clicks_spilled,
            &instruments.clicks_replayed,
            &instruments.click_publish_failures,
        ] {
            counter.add(0, &[]);
        }
        instruments.click_buffer_depth.record(0, &[]);
        Self(Arc::new(instruments))
    }

    /// Counts a request for a link with rules that did not redirect.
    pub fn refused(&self, why: Refusal) {
        self.0
            .refused
            .add(1, &[KeyValue::new("reason", why.as_str())]);
    }

    /// Records one lookup.
    pub fn lookup(&self, layer: Layer, found: bool) {
        self.0.lookups.0[LookupCounts::slot(layer, found)].fetch_add(1, Ordering::Relaxed);
    }
}

/// Lookup counts, one per (layer, result).
#[derive(Default)]
struct LookupCounts([AtomicU64; 6]);

impl LookupCounts {
    const LAYERS: [Layer; 3] = [Layer::L1, Layer::L2, Layer::Db];

    fn slot(layer: Layer, found: bool) -> usize {
        let layer = match layer {
            Layer::L1 => 0,
            Layer::L2 => 1,
            Layer::Db => 2,
        };
        layer * 2 + usize::from(found)
    }

    fn report(&self, observer: &dyn opentelemetry::metrics::AsyncInstrument<u64>) {
        for layer in Self::LAYERS {
            for found in [false, true] {
                observer.observe(
                    self.0[Self::slot(layer, found)].load(Ordering::Relaxed),
                    &[
                        KeyValue::new("layer", layer.as_str()),
                        KeyValue::new("result", if found { "found" } else { "not_found" }),
                    ],
                );
            }
        }
    }
}

impl Default for RedirectMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::ops::Deref for RedirectMetrics {
    type Target = Instruments;
    fn deref(&self) -> &Instruments {
        &self.0
    }
}
