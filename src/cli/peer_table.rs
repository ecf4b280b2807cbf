//! `--peers` on `get` and `seed`: the connected peers the way µTorrent and qBittorrent users
//! read them (address, flag letters, client, rates, progress; the letters are explained in
//! `swarm::session::view` and in `--help`). On a terminal, a table under the progress bar,
//! redrawn in place with it; otherwise a plain-text table on stdout every
//! [`PEERS_EVERY`]; with `--json`, a `{"event":"peers","peers":[...]}` line every
//! [`PEERS_EVERY`] with the same fields.

use std::io::Write;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressStyle};

use crate::session::torrent::PeerView;
use crate::swarm::peer_source::PeerSource;

/// How often a peers event or a plain-text table is printed (the terminal table follows the
/// progress, every second).
pub const PEERS_EVERY: Duration = Duration::from_secs(2);
/// Rows of the table at most, the busiest peers first; the rest are counted in a last line.
pub const MAX_ROWS: usize = 30;

/// One peer as a JSON object (the `peers` of a peers event).
pub fn peer_json(v: &PeerView) -> serde_json::Value {
    let sources: Vec<&str> =
        PeerSource::ALL.into_iter().filter(|s| v.flags.found.contains(*s)).map(|s| s.name()).collect();
    serde_json::json!({
        "addr": v.addr.to_string(),
        "flags": v.flags.letters(),
        "client": v.client,
        "down_rate": v.down_rate,
        "up_rate": v.up_rate,
        "downloaded": v.downloaded,
        "uploaded": v.uploaded,
        "pieces": v.pieces.map(|(have, _)| have),
        "total_pieces": v.pieces.map(|(_, total)| total),
        "progress": v.progress(),
        "transport": if v.flags.utp { "utp" } else { "tcp" },
        "incoming": v.flags.incoming,
        "sources": sources,
    })
}

pub fn peers_event(views: &[PeerView]) -> serde_json::Value {
    serde_json::json!({"event": "peers", "peers": views.iter().map(peer_json).collect::<Vec<_>>()})
}

/// The peers as a plain-text table (no escape sequences): a header, then at most `max_rows`
/// peers, busiest first, then how many more there are.
pub fn table(views: &[PeerView], max_rows: usize) -> String {
    let mut rows: Vec<&PeerView> = views.iter().collect();
    rows.sort_by_key(|v| (std::cmp::Reverse(v.down_rate + v.up_rate), v.addr));
    let cells: Vec<[String; 6]> = rows
        .iter()
        .take(max_rows)
        .map(|v| {
            [
                v.addr.to_string(),
                v.flags.letters(),
                v.client.clone().unwrap_or_else(|| "-".into()),
                format!("{}/s", HumanBytes(v.down_rate)),
                format!("{}/s", HumanBytes(v.up_rate)),
                v.progress().map_or_else(|| "-".into(), |p| format!("{:.1}%", p * 100.0)),
            ]
        })
        .collect();
    let header = ["PEER", "FLAGS", "CLIENT", "DOWN", "UP", "HAS"];
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |row: [&str; 6]| {
        let mut out = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            // Rates and progress are numbers: right-aligned.
            if i >= 3 {
                out.push_str(&format!("{cell:>w$}"));
            } else {
                out.push_str(&format!("{cell:<w$}"));
            }
            if i + 1 < row.len() {
                out.push_str("  ");
            }
        }
        out.trim_end().to_string()
    };
    let mut out = vec![line(header)];
    for row in &cells {
        out.push(line(row.each_ref().map(String::as_str)));
    }
    if rows.len() > max_rows {
        out.push(format!("... and {} more", rows.len() - max_rows));
    }
    if rows.is_empty() {
        out.push("(no peers connected)".into());
    }
    out.join("\n")
}

/// Where `--peers` output goes.
enum Mode {
    /// Under the progress bar, redrawn in place.
    Terminal(ProgressBar),
    /// A plain table on stdout every [`PEERS_EVERY`].
    Plain,
    /// A peers event on stdout every [`PEERS_EVERY`].
    Json,
}

/// The `--peers` display of one command.
pub struct PeerDisplay {
    mode: Mode,
    next: Option<Instant>,
    started: Instant,
}

impl PeerDisplay {
    /// JSON events with `json`; a table under `bars` when there is a terminal to draw on;
    /// plain text on stdout otherwise.
    pub fn new(json: bool, bars: Option<&MultiProgress>, now: Instant) -> PeerDisplay {
        let mode = match (json, bars) {
            (true, _) => Mode::Json,
            (false, Some(multi)) => {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                Mode::Terminal(bar)
            }
            (false, None) => Mode::Plain,
        };
        PeerDisplay { mode, next: None, started: now }
    }

    /// Called with every progress tick: redraws the table, or prints if one is due.
    pub fn tick(&mut self, now: Instant, views: &[PeerView]) {
        if let Mode::Terminal(bar) = &self.mode {
            bar.set_message(table(views, MAX_ROWS));
            return;
        }
        if self.next.is_some_and(|t| now < t) {
            return;
        }
        self.next = Some(now + PEERS_EVERY);
        let text = match self.mode {
            Mode::Json => peers_event(views).to_string(),
            _ => {
                let secs = now.saturating_duration_since(self.started).as_secs();
                format!("peers after {secs} s:\n{}\n", table(views, MAX_ROWS))
            }
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::peer_source::PeerSources;
    use crate::swarm::session::PeerFlags;

    fn view(n: u8, down: u64, client: Option<&str>) -> PeerView {
        let mut found = PeerSources::default();
        found.insert(PeerSource::Dht);
        PeerView {
            addr: std::net::SocketAddr::from(([127, 0, n, 1], 6881)),
            flags: PeerFlags { am_interested: true, am_choking: true, found, utp: true, ..PeerFlags::default() },
            client: client.map(str::to_string),
            down_rate: down,
            up_rate: 0,
            downloaded: 0,
            uploaded: 0,
            pieces: Some((n as usize, 10)),
        }
    }

    #[test]
    fn the_table_is_plain_and_busiest_first_within_its_rows() {
        let views = vec![view(1, 10, Some("a")), view(2, 5000, None), view(3, 20, Some("qBittorrent 4.5.2"))];
        let t = table(&views, 2);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("PEER"), "{t}");
        assert!(lines[1].starts_with("127.0.2.1:6881") && lines[1].contains("D HP"), "{t}");
        assert!(lines[2].starts_with("127.0.3.1:6881") && lines[2].contains("qBittorrent 4.5.2"), "{t}");
        assert_eq!(lines[3], "... and 1 more");
        assert!(lines[1].ends_with("20.0%"), "{t}");
        assert!(!t.contains('\u{1b}'), "no escape sequences: {t:?}");
        assert_eq!(table(&[], 5).lines().last(), Some("(no peers connected)"));
    }

    #[test]
    fn json_has_the_table_s_fields() {
        let j = peer_json(&view(4, 7, None));
        assert_eq!(j["addr"], "127.0.4.1:6881");
        assert_eq!(j["flags"], "D HP");
        assert_eq!(j["client"], serde_json::Value::Null);
        assert_eq!(j["down_rate"], 7);
        assert_eq!((j["pieces"].as_u64(), j["total_pieces"].as_u64()), (Some(4), Some(10)));
        assert_eq!(j["transport"], "utp");
        assert_eq!(j["sources"], serde_json::json!(["dht"]));
        assert_eq!(peers_event(&[]), serde_json::json!({"event": "peers", "peers": []}));
    }
}
