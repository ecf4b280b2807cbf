//! The `--metrics` endpoint: the node's counters in the Prometheus text format over a minimal
//! HTTP/1.0 responder (GET /metrics). Requests are bounded in size and time, so a scraper that
//! misbehaves cannot hold memory or a task for long.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::dht::driver::Snapshot;

const MAX_REQUEST: usize = 8 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn serve(listener: TcpListener, snapshot: Arc<Mutex<Snapshot>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let snap = snapshot.lock().map(|s| s.clone()).unwrap_or_default();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, respond(stream, &snap)).await;
        });
    }
}

async fn respond(mut stream: TcpStream, snap: &Snapshot) -> std::io::Result<()> {
    let mut req = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < MAX_REQUEST {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        req.extend_from_slice(&buf[..n]);
    }
    let first_line = req.split(|&b| b == b'\n').next().unwrap_or_default();
    let (status, body) = if first_line.starts_with(b"GET /metrics") {
        ("200 OK", render(snap))
    } else {
        ("404 Not Found", "try GET /metrics\n".to_string())
    };
    let head = format!(
        "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// Renders the snapshot in the Prometheus text exposition format.
pub fn render(s: &Snapshot) -> String {
    let st = &s.stats;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP kadswarm_{name} {help}\n# TYPE kadswarm_{name} {kind}\nkadswarm_{name} {value}");
    };
    metric("routing_table_nodes", "gauge", "Nodes in the routing table.", s.routing_nodes as u64);
    metric("routing_table_buckets", "gauge", "Buckets in the routing table.", s.buckets as u64);
    metric("stored_info_hashes", "gauge", "Info-hashes with announced peers.", s.info_hashes as u64);
    metric("stored_peers", "gauge", "Announced peers stored.", s.stored_peers as u64);
    metric("running_lookups", "gauge", "Lookups in progress.", s.running_lookups as u64);
    metric("uptime_seconds", "counter", "Seconds since start.", s.uptime.as_secs());
    metric("packets_received_total", "counter", "Datagrams received by the DHT.", st.packets_in);
    metric("packets_sent_total", "counter", "Datagrams sent by the DHT.", st.packets_out);
    metric("bytes_received_total", "counter", "DHT bytes received.", st.bytes_in);
    metric("bytes_sent_total", "counter", "DHT bytes sent.", st.bytes_out);
    metric("queries_received_total", "counter", "KRPC queries received.", st.queries_in);
    metric("ping_received_total", "counter", "ping queries received.", st.pings_in);
    metric("find_node_received_total", "counter", "find_node queries received.", st.find_nodes_in);
    metric("get_peers_received_total", "counter", "get_peers queries received.", st.get_peers_in);
    metric("announce_peer_received_total", "counter", "announce_peer queries received.", st.announces_in);
    metric("sample_infohashes_received_total", "counter", "sample_infohashes queries received.", st.samples_in);
    metric("unknown_methods_received_total", "counter", "Queries of unknown methods.", st.unknown_methods_in);
    metric("bad_tokens_total", "counter", "announce_peer refused for a bad token.", st.bad_tokens);
    metric("malformed_dropped_total", "counter", "Malformed datagrams dropped.", st.malformed_dropped);
    metric("malformed_answered_total", "counter", "Malformed messages answered with error 203.", st.malformed_answered);
    metric("non_dht_datagrams_total", "counter", "Datagrams that were not KRPC.", s.unknown_datagrams);
    metric("queries_sent_total", "counter", "KRPC queries sent.", st.queries_out);
    metric("responses_received_total", "counter", "Answers to our queries.", st.responses_in);
    metric("errors_received_total", "counter", "KRPC errors received.", st.errors_in);
    metric("unmatched_responses_total", "counter", "Answers matching no query of ours.", st.unmatched_responses);
    metric("query_timeouts_total", "counter", "Queries that got no answer.", st.timeouts);
    metric("query_retries_total", "counter", "Queries sent again after a timeout.", st.retries);
    metric("lookups_started_total", "counter", "Lookups started.", st.lookups_started);
    metric("lookups_done_total", "counter", "Lookups finished.", st.lookups_done);
    let _ =
        writeln!(out, "# HELP kadswarm_routing_table_nodes_by_client Routing-table nodes per client (their KRPC `v`).");
    let _ = writeln!(out, "# TYPE kadswarm_routing_table_nodes_by_client gauge");
    for (client, n) in &s.clients {
        // Client codes are two alphanumerics, `??` or `none`: nothing to escape.
        let _ = writeln!(out, "kadswarm_routing_table_nodes_by_client{{client=\"{client}\"}} {n}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let mut s = Snapshot { routing_nodes: 42, ..Default::default() };
        s.stats.get_peers_in = 7;
        s.clients.insert("LT".to_string(), 5);
        let text = render(&s);
        assert!(text.contains("kadswarm_routing_table_nodes_by_client{client=\"LT\"} 5\n"));
        assert!(text.contains("kadswarm_routing_table_nodes 42\n"));
        assert!(
            text.contains("# TYPE kadswarm_get_peers_received_total counter\nkadswarm_get_peers_received_total 7\n")
        );
    }

    #[tokio::test]
    async fn serves_over_http() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let snap = Arc::new(Mutex::new(Snapshot { routing_nodes: 3, ..Default::default() }));
        tokio::spawn(serve(listener, snap));
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.unwrap();
        let mut body = String::new();
        c.read_to_string(&mut body).await.unwrap();
        assert!(body.starts_with("HTTP/1.0 200 OK"));
        assert!(body.contains("kadswarm_routing_table_nodes 3"));
    }
}
