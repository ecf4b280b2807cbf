//! The metrics: every series present and well formed in both text formats, and the HTTP side
//! bounded (404 elsewhere, endless or huge request heads cut off, a connection cap).
//! Servers listen on 127.0.113.1-127.0.116.1 only; every wait is bounded.

// These tests measure real time: reading the clock is their job.
#![allow(clippy::disallowed_methods)]

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::*;
use crate::net::limiter::LimiterStats;

fn snapshot() -> Snapshot {
    let mut s = Snapshot {
        routing_nodes: 42,
        buckets: 7,
        info_hashes: 3,
        stored_peers: 10,
        running_lookups: 2,
        uptime: Duration::from_secs(99),
        unknown_datagrams: 4,
        limiter: LimiterStats { allowed: 1000, over_limit: 12, blocked_drops: 13, blocks: 2, evictions: 5 },
        limiter_tracked: 77,
        limiter_blocked: 1,
        limiter_bytes: 1 << 20,
        pool_nodes: 31,
        bootstrap: crate::dht::node::BootstrapStats {
            verify_pings: 40,
            reverify_pings: 41,
            bad_cookies: 43,
            added: 44,
            refused_invalid_id: 45,
            ..Default::default()
        },
        ..Default::default()
    };
    s.clients.insert("LT".to_string(), 5);
    s.clients.insert("UT".to_string(), 6);
    let st = &mut s.stats;
    st.queries_in = 100;
    st.get_peers_in = 7;
    st.timeouts = 8;
    st.malformed_dropped = 9;
    st.rate_limited = 12;
    st.blocked_drops = 13;
    st.implausible_dropped = 14;
    st.pings_suppressed = 15;
    st.announces_refused = 16;
    st.tokens_withheld = 17;
    st.replies.record(ReplyKind::Ping, 60);
    st.replies.record(ReplyKind::Ping, 61);
    st.replies.record(ReplyKind::GetPeers, 300);
    st.replies.record(ReplyKind::Error, 50);
    s
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses text exposition strictly enough for our output: every line a `# HELP`, `# TYPE`
/// (or, in OpenMetrics, the final `# EOF`) or a sample `name{labels} value` after its TYPE.
/// Returns the samples by `name{labels}`.
fn parse(text: &str, openmetrics: bool) -> BTreeMap<String, f64> {
    let mut types: HashMap<&str, &str> = HashMap::new();
    let mut samples = BTreeMap::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line == "# EOF" {
            assert!(openmetrics, "# EOF in Prometheus text");
            assert!(lines.peek().is_none(), "lines after # EOF");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(valid_name(name), "HELP of a bad name: {line:?}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("bad TYPE line {line:?}"));
            assert!(valid_name(name), "TYPE of a bad name: {line:?}");
            assert!(["counter", "gauge"].contains(&kind), "unexpected type in {line:?}");
            assert!(types.insert(name, kind).is_none(), "{name} typed twice");
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line:?}");
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value in {line:?}"));
        value.parse::<f64>().unwrap_or_else(|e| panic!("bad value in {line:?}: {e}"));
        let name = series.split('{').next().unwrap();
        assert!(valid_name(name), "bad metric name in {line:?}");
        let labels = &series[name.len()..];
        if !labels.is_empty() {
            let inner = labels.strip_prefix('{').and_then(|l| l.strip_suffix('}'));
            let inner = inner.unwrap_or_else(|| panic!("bad label set in {line:?}"));
            for pair in inner.split(',') {
                let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("bad label {pair:?} in {line:?}"));
                assert!(valid_name(k), "bad label name in {line:?}");
                assert!(v.len() >= 2 && v.starts_with('"') && v.ends_with('"'), "unquoted label value in {line:?}");
            }
        }
        // OpenMetrics types a counter by its family name; its sample adds `_total`.
        let family = match name.strip_suffix("_total") {
            Some(f) if openmetrics && types.get(f) == Some(&"counter") => f,
            _ => name,
        };
        assert!(types.contains_key(family), "sample {line:?} before its TYPE");
        assert!(samples.insert(series.to_string(), value.parse().unwrap()).is_none(), "{series} twice");
    }
    if openmetrics {
        assert!(text.ends_with("# EOF\n"), "OpenMetrics text must end with # EOF");
    }
    samples
}

/// Series and the values `snapshot()` gives them: the old names that docs and operators use,
/// and the new ones.
const EXPECTED: &[(&str, f64)] = &[
    ("kadswarm_routing_table_nodes", 42.0),
    ("kadswarm_routing_table_buckets", 7.0),
    ("kadswarm_routing_table_nodes_by_client{client=\"LT\"}", 5.0),
    ("kadswarm_stored_info_hashes", 3.0),
    ("kadswarm_stored_peers", 10.0),
    ("kadswarm_store_estimated_bytes", 10.0 * BYTES_PER_PEER_ESTIMATE as f64),
    ("kadswarm_uptime_seconds", 99.0),
    ("kadswarm_dht_pool_nodes", 31.0),
    ("kadswarm_pool_pings_sent_total{why=\"verify\"}", 40.0),
    ("kadswarm_pool_pings_sent_total{why=\"reverify\"}", 41.0),
    ("kadswarm_pool_bad_cookies_total", 43.0),
    ("kadswarm_pool_changes_total{change=\"added\"}", 44.0),
    ("kadswarm_pool_refused_total{reason=\"invalid_id\"}", 45.0),
    ("kadswarm_non_dht_datagrams_total", 4.0),
    ("kadswarm_queries_received_total", 100.0),
    ("kadswarm_get_peers_received_total", 7.0),
    ("kadswarm_query_timeouts_total", 8.0),
    ("kadswarm_malformed_dropped_total", 9.0),
    ("kadswarm_dropped_total{reason=\"rate_limited\"}", 12.0),
    ("kadswarm_dropped_total{reason=\"blocked\"}", 13.0),
    ("kadswarm_dropped_total{reason=\"malformed\"}", 9.0),
    ("kadswarm_dropped_total{reason=\"implausible\"}", 14.0),
    ("kadswarm_pings_suppressed_total", 15.0),
    ("kadswarm_announces_refused_total", 16.0),
    ("kadswarm_tokens_withheld_total", 17.0),
    ("kadswarm_rate_limiter_tracked_sources", 77.0),
    ("kadswarm_rate_limiter_blocked_sources", 1.0),
    ("kadswarm_rate_limiter_table_bytes", 1048576.0),
    ("kadswarm_rate_limiter_blocks_total", 2.0),
    ("kadswarm_rate_limiter_evictions_total", 5.0),
    ("kadswarm_replies_sent_total{type=\"ping\"}", 2.0),
    ("kadswarm_replies_sent_total{type=\"get_peers\"}", 1.0),
    ("kadswarm_replies_sent_total{type=\"find_node\"}", 0.0),
    ("kadswarm_replies_sent_total{type=\"error\"}", 1.0),
    ("kadswarm_reply_bytes_sent_total{type=\"ping\"}", 121.0),
    ("kadswarm_reply_bytes_sent_total{type=\"get_peers\"}", 300.0),
    ("kadswarm_reply_bytes_sent_total{type=\"announce_peer\"}", 0.0),
    ("kadswarm_reply_bytes_sent_total{type=\"sample_infohashes\"}", 0.0),
];

fn assert_expected(samples: &BTreeMap<String, f64>) {
    for (series, value) in EXPECTED {
        assert_eq!(samples.get(*series), Some(value), "{series}; have {:?}", samples.keys().collect::<Vec<_>>());
    }
    for kind in ReplyKind::ALL {
        assert!(samples.contains_key(&format!("kadswarm_replies_sent_total{{type=\"{}\"}}", kind.name())));
    }
}

#[test]
fn every_series_is_well_formed_prometheus_text() {
    let text = render(&snapshot());
    let samples = parse(&text, false);
    assert_expected(&samples);
    assert!(text.contains("# TYPE kadswarm_queries_received_total counter\nkadswarm_queries_received_total 100\n"));
    assert!(text.contains("# TYPE kadswarm_routing_table_nodes gauge\nkadswarm_routing_table_nodes 42\n"));
}

#[test]
fn every_series_is_well_formed_openmetrics_text() {
    let metrics = Metrics::new(Arc::new(Mutex::new(snapshot())));
    let text = metrics.encode(Format::OpenMetrics);
    let samples = parse(&text, true);
    assert_expected(&samples);
    assert!(text.contains("# TYPE kadswarm_queries_received counter\nkadswarm_queries_received_total 100\n"));
}

#[test]
fn a_scrape_reads_the_latest_snapshot() {
    let shared = Arc::new(Mutex::new(Snapshot::default()));
    let metrics = Metrics::new(shared.clone());
    assert!(metrics.encode(Format::Prometheus).contains("kadswarm_routing_table_nodes 0\n"));
    shared.lock().unwrap().routing_nodes = 5;
    assert!(metrics.encode(Format::Prometheus).contains("kadswarm_routing_table_nodes 5\n"));
}

// ---------------------------------------------------------------------------------------------
// Over HTTP

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, n, 1)
}

async fn start(n: u8, config: ServeConfig) -> SocketAddr {
    let listener = TcpListener::bind((ip(n), 0)).await.expect("bind metrics listener");
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_with(listener, Arc::new(Mutex::new(snapshot())), config));
    addr
}

/// Sends `request`, reads until the server closes (at most 5 s): (status line, headers in
/// lower case, body), or None if it closed without a word.
async fn try_exchange(addr: SocketAddr, request: &str) -> Option<(String, String, String)> {
    let mut c = TcpStream::connect(addr).await.expect("connect");
    // A server that closes first may reset the connection under our feet: that is no answer.
    c.write_all(request.as_bytes()).await.ok()?;
    let mut raw = Vec::new();
    timeout(Duration::from_secs(5), c.read_to_end(&mut raw)).await.expect("the server closes after one answer").ok()?;
    if raw.is_empty() {
        return None;
    }
    let raw = String::from_utf8(raw).expect("UTF-8 answer");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no end of head in {raw:?}"));
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    Some((status.to_string(), headers.to_lowercase(), body.to_string()))
}

async fn exchange(addr: SocketAddr, request: &str) -> (String, String, String) {
    try_exchange(addr, request).await.unwrap_or_else(|| panic!("no answer to {request:?}"))
}

#[tokio::test]
async fn scrapes_over_http_in_both_formats() {
    let addr = start(113, ServeConfig::default()).await;
    let (status, headers, body) = exchange(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(headers.contains("content-type: text/plain; version=0.0.4"), "{headers}");
    assert!(headers.contains(&format!("content-length: {}", body.len())), "{headers}");
    assert_expected(&parse(&body, false));

    let (status, headers, body) = exchange(
        addr,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n\r\n",
    )
    .await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(headers.contains("content-type: application/openmetrics-text; version=1.0.0"), "{headers}");
    assert_expected(&parse(&body, true));

    // HTTP/1.0, as the old responder and many a shell script speak it.
    let (status, _, body) = exchange(addr, "GET /metrics HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.0 200 OK");
    assert!(body.contains("kadswarm_routing_table_nodes 42\n"));
}

#[tokio::test]
async fn other_paths_and_methods_are_refused() {
    let addr = start(114, ServeConfig::default()).await;
    for path in ["/", "/metrics/", "/metricsx", "/favicon.ico"] {
        let (status, _, body) = exchange(addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")).await;
        assert_eq!(status, "HTTP/1.1 404 Not Found", "GET {path}");
        assert!(!body.contains("kadswarm_"), "GET {path} leaked metrics");
    }
    let (status, headers, _) =
        exchange(addr, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc").await;
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    assert!(headers.contains("allow: get, head"), "{headers}");
    let (status, _, body) = exchange(addr, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.is_empty(), "HEAD answered with a body");
}

/// Reads until the server closes the connection (or answers): how long that took, and what
/// it sent. Fails after `limit`.
async fn wait_closed(c: &mut tokio::net::tcp::OwnedReadHalf, limit: Duration) -> (Duration, String) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match timeout(limit.saturating_sub(started.elapsed()), c.read(&mut buf)).await {
            Err(_) => panic!("still open after {limit:?}; got {:?}", String::from_utf8_lossy(&got)),
            Ok(Ok(0)) | Ok(Err(_)) => return (started.elapsed(), String::from_utf8_lossy(&got).into_owned()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// A client that sends a header one byte at a time and never ends it is cut off once the
/// header timeout passes, not when it pleases.
#[tokio::test]
async fn an_endless_header_is_cut_off_in_time() {
    let config = ServeConfig { header_timeout: Duration::from_secs(1), ..ServeConfig::default() };
    let addr = start(115, config).await;
    let (mut rx, mut tx) = TcpStream::connect(addr).await.expect("connect").into_split();
    let dripper = tokio::spawn(async move {
        if tx.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.is_err() {
            return;
        }
        // At most 10 s of one byte every 50 ms.
        for _ in 0..200 {
            if tx.write_all(b"a").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let (took, got) = wait_closed(&mut rx, Duration::from_secs(8)).await;
    dripper.abort();
    assert!(took >= Duration::from_millis(500), "cut off after {took:?}, before the timeout");
    assert!(took < Duration::from_secs(4), "cut off only after {took:?}");
    assert!(!got.contains("kadswarm_"), "a request never finished was answered: {got:?}");

    // A head far bigger than the buffer, sent as fast as possible, is refused well before
    // its end (4 MiB, in 16 KiB writes).
    let (mut rx, mut tx) = TcpStream::connect(addr).await.expect("connect").into_split();
    let flooder = tokio::spawn(async move {
        if tx.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").await.is_err() {
            return 0;
        }
        let line = format!("X-Big: {}\r\n", "b".repeat(16 * 1024 - 10));
        let mut sent = 0;
        for _ in 0..256 {
            if tx.write_all(line.as_bytes()).await.is_err() {
                break;
            }
            sent += line.len();
        }
        sent
    });
    let (took, got) = wait_closed(&mut rx, Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(3), "a huge head took {took:?} to be refused");
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 431"), "unexpected answer to a huge head: {got:?}");
    drop(rx);
    let sent = timeout(Duration::from_secs(5), flooder).await.expect("flooder ends").expect("flooder");
    assert!(sent < 4 * 1024 * 1024, "the server read a whole 4 MiB head");
}

/// Connections beyond the cap are closed on accept; once a slot frees, scrapes work again.
#[tokio::test]
async fn connections_beyond_the_cap_are_closed() {
    let config = ServeConfig { max_connections: 2, ..ServeConfig::default() };
    let addr = start(116, config).await;
    let idle: Vec<TcpStream> = vec![TcpStream::connect(addr).await.unwrap(), TcpStream::connect(addr).await.unwrap()];
    // Let the server accept both before the third arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (mut rx, mut tx) = TcpStream::connect(addr).await.expect("connect").into_split();
    let _ = tx.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (took, got) = wait_closed(&mut rx, Duration::from_secs(3)).await;
    assert!(got.is_empty(), "a connection over the cap was served: {got:?}");
    assert!(took < Duration::from_secs(1), "closing a connection over the cap took {took:?}");
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some((status, _, _)) = try_exchange(addr, "GET /metrics HTTP/1.0\r\n\r\n").await {
            assert_eq!(status, "HTTP/1.0 200 OK");
            break;
        }
        assert!(Instant::now() < deadline, "no slot freed after the idle clients left");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
