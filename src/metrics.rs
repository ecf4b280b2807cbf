//! The `--metrics` endpoint: the node's numbers, as the driver last published them (once a
//! second), encoded by `prometheus-client` and served by hyper's HTTP/1 server on
//! `GET /metrics`.
//!
//! Scrapers get the Prometheus text format (0.0.4), or OpenMetrics when their `Accept` asks
//! for it. Serving is bounded so that a slow or abusive client cannot hold memory or a task
//! for long: a few connections at once (more are closed on accept), one request per
//! connection, the request head within a few seconds and a few KiB, the whole exchange within
//! a few seconds more. Any other path is 404, any other method 405.

use std::convert::Infallible;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, ACCEPT, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::dht::driver::Snapshot;
use crate::dht::stats::ReplyKind;
use crate::dht::store::BYTES_PER_PEER_ESTIMATE;

/// The `Content-Type` of the Prometheus text format, which scrapers get by default.
pub const PROMETHEUS_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// The `Content-Type` of OpenMetrics text, for scrapers whose `Accept` asks for it.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Limits on the HTTP side.
#[derive(Debug, Clone, Copy)]
pub struct ServeConfig {
    /// Connections served at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// The request line and headers must arrive within this.
    pub header_timeout: Duration,
    /// A connection is closed this long after it was accepted, whatever it is doing.
    pub connection_timeout: Duration,
    /// Bytes of request head buffered at most (hyper's minimum is 8 KiB).
    pub max_head_bytes: usize,
}

impl Default for ServeConfig {
    /// A Prometheus server or two, and someone with curl: 16 connections is plenty.
    fn default() -> Self {
        ServeConfig {
            max_connections: 16,
            header_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(10),
            max_head_bytes: 8 * 1024,
        }
    }
}

/// Serves `GET /metrics` on `listener` with the default limits, forever.
pub async fn serve(listener: TcpListener, snapshot: Arc<Mutex<Snapshot>>) {
    serve_with(listener, snapshot, ServeConfig::default()).await
}

pub async fn serve_with(listener: TcpListener, snapshot: Arc<Mutex<Snapshot>>, config: ServeConfig) {
    let metrics = Arc::new(Metrics::new(snapshot));
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .max_buf_size(config.max_head_bytes.max(8 * 1024))
        .keep_alive(false);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, most likely: do not spin on it.
                tracing::debug!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many metrics connections, closing this one");
            continue;
        };
        let metrics = metrics.clone();
        let service = service_fn(move |req| {
            let response = metrics.respond(&req);
            async move { Ok::<_, Infallible>(response) }
        });
        let connection = http.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(config.connection_timeout, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "metrics connection failed"),
                Err(_) => tracing::debug!(%peer, "metrics connection timed out"),
            }
        });
    }
}

/// The registry, holding one collector that reads the shared snapshot at each scrape.
pub struct Metrics {
    registry: Registry,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Prometheus,
    OpenMetrics,
}

impl Format {
    /// OpenMetrics for a client that names it in `Accept`, the Prometheus text format else.
    pub fn from_accept(accept: Option<&HeaderValue>) -> Format {
        match accept.and_then(|a| a.to_str().ok()) {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => PROMETHEUS_TEXT,
            Format::OpenMetrics => OPENMETRICS_TEXT,
        }
    }
}

impl Metrics {
    pub fn new(snapshot: Arc<Mutex<Snapshot>>) -> Metrics {
        let mut registry = Registry::with_prefix("kadswarm");
        registry.register_collector(Box::new(SnapshotCollector(snapshot)));
        Metrics { registry }
    }

    pub fn encode(&self, format: Format) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let encoded = match format {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry),
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &self.registry),
        };
        // Writing to a String fails only if an encoder does; nothing of ours does.
        if let Err(e) = encoded {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }

    fn respond<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        if req.uri().path() != "/metrics" {
            return plain(StatusCode::NOT_FOUND, "try GET /metrics\n");
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET /metrics\n");
            r.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        let format = Format::from_accept(req.headers().get(ACCEPT));
        let mut r = Response::new(Full::new(Bytes::from(self.encode(format))));
        r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
        r
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// Renders one snapshot in the Prometheus text format.
pub fn render(snapshot: &Snapshot) -> String {
    Metrics::new(Arc::new(Mutex::new(snapshot.clone()))).encode(Format::Prometheus)
}

#[derive(Debug)]
struct SnapshotCollector(Arc<Mutex<Snapshot>>);

impl Collector for SnapshotCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        // Copy it out: the driver must not wait on a scrape.
        let s = self.0.lock().map(|s| s.clone()).unwrap_or_default();
        encode_snapshot(&s, &mut Out(encoder))
    }
}

/// The series. Counters are named without `_total`, which the encoders add.
fn encode_snapshot(s: &Snapshot, out: &mut Out) -> fmt::Result {
    let st = &s.stats;
    out.gauge("routing_table_nodes", "Nodes in the routing table.", s.routing_nodes)?;
    out.gauge("routing_table_buckets", "Buckets in the routing table.", s.buckets)?;
    out.gauges(
        "routing_table_nodes_by_client",
        "Routing-table nodes per client (their KRPC `v`).",
        "client",
        s.clients.iter().map(|(client, n)| (client.as_str(), *n)),
    )?;
    out.gauge("stored_info_hashes", "Info-hashes with announced peers (swarms in the store).", s.info_hashes)?;
    out.gauge("stored_peers", "Announced peers stored.", s.stored_peers)?;
    out.gauge(
        "store_estimated_bytes",
        "Memory of the peer store, estimated from its peer count.",
        s.stored_peers.saturating_mul(BYTES_PER_PEER_ESTIMATE),
    )?;
    out.gauge("running_lookups", "Lookups in progress.", s.running_lookups)?;
    out.gauge("uptime_seconds", "Seconds since start.", s.uptime.as_secs() as usize)?;
    out.gauge("dht_pool_nodes", "Nodes in the bootstrap pool.", s.pool_nodes)?;
    let b = &s.bootstrap;
    out.counters(
        "pool_pings_sent",
        "Cookie pings of the bootstrap role, by why: verify a querier, or re-verify a silent entry.",
        "why",
        [("verify", b.verify_pings), ("reverify", b.reverify_pings)],
    )?;
    out.counter(
        "pool_pings_suppressed",
        "Cookie pings not sent: over the budget or out of scope.",
        b.pings_suppressed,
    )?;
    out.counter("pool_bad_cookies", "Answers whose transaction id was not their source's cookie.", b.bad_cookies)?;
    out.counters(
        "pool_changes",
        "Pool entries added, refreshed, replaced (same IP) and expired.",
        "change",
        [("added", b.added), ("refreshed", b.refreshed), ("replaced", b.replaced), ("expired", b.expired)],
    )?;
    out.counters(
        "pool_refused",
        "Nodes kept out of the pool, by reason.",
        "reason",
        [("invalid_id", b.refused_invalid_id), ("read_only", b.refused_read_only), ("full", b.refused_full)],
    )?;

    out.counter("packets_received", "Datagrams received by the DHT.", st.packets_in)?;
    out.counter("packets_sent", "Datagrams sent by the DHT.", st.packets_out)?;
    out.counter("bytes_received", "DHT bytes received.", st.bytes_in)?;
    out.counter("bytes_sent", "DHT bytes sent.", st.bytes_out)?;
    out.counter("non_dht_datagrams", "Datagrams that were not KRPC.", s.unknown_datagrams)?;

    out.counter("queries_received", "KRPC queries received.", st.queries_in)?;
    out.counter("ping_received", "ping queries received.", st.pings_in)?;
    out.counter("find_node_received", "find_node queries received.", st.find_nodes_in)?;
    out.counter("get_peers_received", "get_peers queries received.", st.get_peers_in)?;
    out.counter("announce_peer_received", "announce_peer queries received.", st.announces_in)?;
    out.counter("sample_infohashes_received", "sample_infohashes queries received.", st.samples_in)?;
    out.counter("unknown_methods_received", "Queries of unknown methods.", st.unknown_methods_in)?;
    out.counters(
        "replies_sent",
        "Replies sent, by the kind of query they answer (`error`: KRPC errors).",
        "type",
        ReplyKind::ALL.map(|k| (k.name(), st.replies.sent(k))),
    )?;
    out.counters(
        "reply_bytes_sent",
        "Bytes of the replies sent, by the kind of query they answer.",
        "type",
        ReplyKind::ALL.map(|k| (k.name(), st.replies.bytes(k))),
    )?;
    out.counter("bad_tokens", "announce_peer refused for a bad token.", st.bad_tokens)?;
    out.counter("announces_refused", "Valid announces the store's caps refused.", st.announces_refused)?;
    out.counter(
        "tokens_withheld",
        "get_peers answered without a token: no room in the store for the swarm.",
        st.tokens_withheld,
    )?;
    out.counter("malformed_dropped", "Malformed datagrams dropped.", st.malformed_dropped)?;
    out.counter("malformed_answered", "Malformed messages answered with error 203.", st.malformed_answered)?;
    out.counters(
        "dropped",
        "What the node dropped, by reason: datagrams over their source's rate (rate_limited), \
         from a blocked source (blocked), or unreadable (malformed); nodes and peers of \
         answers outside our scope (implausible).",
        "reason",
        [
            ("rate_limited", st.rate_limited),
            ("blocked", st.blocked_drops),
            ("malformed", st.malformed_dropped),
            ("implausible", st.implausible_dropped),
        ],
    )?;
    out.counter(
        "pings_suppressed",
        "Unsolicited pings not sent: one pending to that IP, an implausible address, or over budget.",
        st.pings_suppressed,
    )?;

    out.gauge("rate_limiter_tracked_sources", "Sources the rate limiter tracks.", s.limiter_tracked)?;
    out.gauge("rate_limiter_blocked_sources", "Sources blocked now for flooding.", s.limiter_blocked)?;
    out.gauge("rate_limiter_table_bytes", "Bytes of the rate limiter's table (fixed).", s.limiter_bytes)?;
    out.counter("rate_limiter_blocks", "Times a source was blocked for flooding.", s.limiter.blocks)?;
    out.counter(
        "rate_limiter_evictions",
        "Tracked sources pushed out by newer ones (many sources, maybe spoofed).",
        s.limiter.evictions,
    )?;

    out.counter("queries_sent", "KRPC queries sent.", st.queries_out)?;
    out.counter("responses_received", "Answers to our queries.", st.responses_in)?;
    out.counter("errors_received", "KRPC errors received.", st.errors_in)?;
    out.counter("unmatched_responses", "Answers matching no query of ours.", st.unmatched_responses)?;
    out.counter("query_timeouts", "Queries that got no answer.", st.timeouts)?;
    out.counter("query_retries", "Queries sent again after a timeout.", st.retries)?;
    out.counter("lookups_started", "Lookups started.", st.lookups_started)?;
    out.counter("lookups_done", "Lookups finished.", st.lookups_done)?;
    Ok(())
}

/// Constant values through the encoder, one descriptor each.
struct Out<'a>(DescriptorEncoder<'a>);

impl Out<'_> {
    fn counter(&mut self, name: &str, help: &str, value: u64) -> fmt::Result {
        let metric = ConstCounter::new(value);
        metric.encode(self.0.encode_descriptor(name, help, None, metric.metric_type())?)
    }

    fn gauge(&mut self, name: &str, help: &str, value: usize) -> fmt::Result {
        let metric = ConstGauge::new(value as u64);
        metric.encode(self.0.encode_descriptor(name, help, None, metric.metric_type())?)
    }

    fn counters<'l>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        values: impl IntoIterator<Item = (&'l str, u64)>,
    ) -> fmt::Result {
        let mut family = self.0.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (value, n) in values {
            ConstCounter::new(n).encode(family.encode_family(&[(label, value)])?)?;
        }
        Ok(())
    }

    fn gauges<'l>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        values: impl IntoIterator<Item = (&'l str, usize)>,
    ) -> fmt::Result {
        let mut family = self.0.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (value, n) in values {
            ConstGauge::new(n as u64).encode(family.encode_family(&[(label, value)])?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
