//! Counters of a DHT node, for logs and the Prometheus endpoint. Plain numbers the core bumps;
//! nothing here reads a clock.

/// Monotonic counters since the node started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub packets_in: u64,
    pub packets_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub queries_in: u64,
    pub pings_in: u64,
    pub find_nodes_in: u64,
    pub get_peers_in: u64,
    pub announces_in: u64,
    pub samples_in: u64,
    pub unknown_methods_in: u64,
    pub bad_tokens: u64,
    /// Valid announces the store's caps refused.
    pub announces_refused: u64,
    /// get_peers answered without a token because the store had no room for the swarm.
    pub tokens_withheld: u64,
    pub responses_in: u64,
    pub errors_in: u64,
    /// Datagrams that were not KRPC and had no readable transaction id: dropped.
    pub malformed_dropped: u64,
    /// Malformed queries answered with error 203.
    pub malformed_answered: u64,
    /// Datagrams dropped undecoded because their source was over its rate.
    pub rate_limited: u64,
    /// Datagrams dropped undecoded because their source is blocked for flooding.
    pub blocked_drops: u64,
    /// Unsolicited pings not sent: one already pending to that IP, an implausible address,
    /// or over the budget.
    pub pings_suppressed: u64,
    /// Nodes and peers from lookup answers dropped as outside our scope.
    pub implausible_dropped: u64,
    pub unmatched_responses: u64,
    pub queries_out: u64,
    pub queries_dropped: u64,
    pub retries: u64,
    pub timeouts: u64,
    pub announces_acked: u64,
    pub lookups_started: u64,
    pub lookups_done: u64,
    /// Replies sent and their bytes, per kind of reply.
    pub replies: ReplyCounts,
}

/// What a reply of ours answered: the query's method, or an error of any cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplyKind {
    Ping,
    FindNode,
    GetPeers,
    AnnouncePeer,
    SampleInfohashes,
    /// A method we do not know, aimed at a key: answered with nodes, as find_node is.
    Unknown,
    /// A KRPC error (201-204), whatever the query.
    Error,
}

impl ReplyKind {
    pub const ALL: [ReplyKind; 7] = [
        ReplyKind::Ping,
        ReplyKind::FindNode,
        ReplyKind::GetPeers,
        ReplyKind::AnnouncePeer,
        ReplyKind::SampleInfohashes,
        ReplyKind::Unknown,
        ReplyKind::Error,
    ];

    /// The label the metrics use.
    pub fn name(self) -> &'static str {
        match self {
            ReplyKind::Ping => "ping",
            ReplyKind::FindNode => "find_node",
            ReplyKind::GetPeers => "get_peers",
            ReplyKind::AnnouncePeer => "announce_peer",
            ReplyKind::SampleInfohashes => "sample_infohashes",
            ReplyKind::Unknown => "unknown",
            ReplyKind::Error => "error",
        }
    }
}

/// Replies sent and their encoded bytes, per [`ReplyKind`]: which queries cost us the most
/// upload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplyCounts {
    sent: [u64; ReplyKind::ALL.len()],
    bytes: [u64; ReplyKind::ALL.len()],
}

impl ReplyCounts {
    pub fn record(&mut self, kind: ReplyKind, bytes: usize) {
        self.sent[kind as usize] += 1;
        self.bytes[kind as usize] += bytes as u64;
    }

    pub fn sent(&self, kind: ReplyKind) -> u64 {
        self.sent[kind as usize]
    }

    pub fn bytes(&self, kind: ReplyKind) -> u64 {
        self.bytes[kind as usize]
    }
}
