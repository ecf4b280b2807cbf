//! The command-line interface (the contract is `../shared/CLI.md`): argument parsing, exit
//! codes and one module per subcommand.

pub mod common;
pub mod crawl_cmd;
pub mod demo_cmd;
pub mod get_cmd;
pub mod limits_arg;
pub mod node_cmd;
pub mod peer_table;
pub mod peers_cmd;
pub mod seed_cmd;
pub mod swarm_common;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Exit code of a command that ran but could not do its work (no peers found, ...).
pub const EXIT_FAILED: u8 = 1;
/// Exit code for bad input: an unparseable argument, a missing or corrupt file.
pub const EXIT_BAD_INPUT: u8 = 2;

/// An error with the exit code it deserves.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub error: anyhow::Error,
}

impl CliError {
    pub fn bad_input(error: impl Into<anyhow::Error>) -> Self {
        CliError { code: EXIT_BAD_INPUT, error: error.into() }
    }
    pub fn failed(error: impl Into<anyhow::Error>) -> Self {
        CliError { code: EXIT_FAILED, error: error.into() }
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "kadswarm",
    version,
    about = "A BitTorrent Mainline DHT node and trackerless swarm finder",
    long_about = "A BitTorrent Mainline DHT node (BEP 5) and trackerless swarm finder.\n\n\
        Results go to stdout, logs to stderr (-v for more, -q for less, RUST_LOG for tracing \
        filters). Exit codes: 0 success, 1 the work could not be done, 2 bad input."
)]
pub struct Cli {
    /// More log output on stderr (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a long-lived DHT node, usable as a bootstrap router, until SIGINT/SIGTERM.
    ///
    /// Answers ping, find_node, get_peers, announce_peer and sample_infohashes (BEP 51) and
    /// stores announced peers. With --state it keeps its id and routing table across runs.
    /// With --role bootstrap it is a router for joining clients: it answers from a large pool
    /// of verified nodes and stores no peers.
    Node(NodeArgs),
    /// Find the peers of a swarm through the DHT and print them, one IP:PORT a line.
    ///
    /// Exits 0 when at least one peer was found, 1 when none was found before --timeout.
    Peers(PeersArgs),
    /// Download a magnet link or a .torrent file into DIR, verifying every piece.
    ///
    /// Peers come from the DHT, peer exchange with connected peers (PEX), the local network
    /// (LSD multicast), --peer and the magnet's x.pe hints, all kept in one list that tries
    /// peers that worked first and backs off from failing ones (--no-dht, --no-pex and
    /// --no-lsd turn sources off; --json events count the peers each gave). Peers are reached
    /// over uTP or TCP (--transport). Re-running on the same DIR resumes: pieces already there
    /// and verified are not fetched again. Exits 0 when the download is complete (with --seed:
    /// keeps seeding until SIGINT/SIGTERM, --seed-ratio or --seed-time). --upload-limit and
    /// --download-limit cap the byte rates over all peers; the progress shows them.
    Get(GetArgs),
    /// Make a torrent of a file or directory and seed it: prints the magnet URI as the first
    /// line of stdout, announces it to the DHT and the local network (LSD) and serves it over
    /// TCP and uTP until SIGINT/SIGTERM (or --seed-time, --seed-ratio), at most --upload-limit
    /// bytes a second.
    Seed(SeedArgs),
    /// Run a whole swarm on loopback with no network: a few hundred DHT nodes, a seeder of a
    /// generated payload, and a newcomer that finds it through the DHT and downloads it by
    /// magnet (metadata from the swarm, every piece verified). The newcomer's first run.
    Demo(DemoArgs),
    /// Crawl the DHT for swarms and who is in them, and store what is found.
    ///
    /// Walks the DHT asking every node for samples of the info-hashes it stores (BEP 51),
    /// learns info-hashes from the queries that reach its own node (a full node that answers
    /// like any other), and looks up each info-hash once per round with get_peers, scraping
    /// seed and leecher estimates (BEP 33) where nodes support it. Each round writes one
    /// record per swarm to every --out: FILE.jsonl (one JSON object a line), FILE.sqlite or a
    /// postgres:// URL (several crawlers may share one database). Re-running against a store
    /// resumes: its swarms are checked again and new observations added. Ends after
    /// --duration, when --rounds are done, or on SIGINT/SIGTERM, always with everything
    /// reported as stored kept. Polite by default: --rate queries per second in all.
    Crawl(CrawlArgs),
}

/// Options every networked subcommand shares.
#[derive(Args, Debug, Clone)]
pub struct NetArgs {
    /// The one port of the process: the UDP socket of the DHT and uTP, and the TCP listener.
    /// Port 0 picks a free one. `node`, `peers` and `crawl` take it twice, an IPv4 and an IPv6
    /// address, for a dual-stack DHT node (BEP 32) with a routing table per family.
    #[arg(long, value_name = "IP:PORT", default_value = "0.0.0.0:6881")]
    pub bind: Vec<SocketAddr>,
    /// A DHT node or router to join through (repeatable). Replaces the built-in public
    /// routers (router.bittorrent.com:6881, dht.transmissionbt.com:6881,
    /// router.utorrent.com:6881, dht.libtorrent.org:25401).
    #[arg(long, value_name = "HOST:PORT")]
    pub bootstrap: Vec<String>,
    /// Contact no router at all; join only through the nodes of --state.
    #[arg(long, conflicts_with = "bootstrap")]
    pub no_bootstrap: bool,
    /// Where the node keeps its id and routing table between runs (JSON, written atomically).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct NodeArgs {
    #[command(flatten)]
    pub net: NetArgs,
    /// Serve Prometheus metrics over HTTP on this address (GET /metrics).
    #[arg(long, value_name = "IP:PORT")]
    pub metrics: Option<SocketAddr>,
    /// Datagrams per second one source (an IPv4 address or an IPv6 /64) may send on average;
    /// beyond it they are dropped unread and unanswered, and a source that keeps flooding is
    /// blocked for a minute. 0 lifts the limit (for benchmarks driven from a few addresses).
    #[arg(long, value_name = "Q/S", default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub rate_limit: u32,
    /// Datagrams a quiet source may send at once before its rate applies.
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_burst: u32,
    /// normal: an ordinary DHT node. bootstrap: a router like router.utorrent.com. Besides its
    /// routing table it keeps a pool of up to --pool-size nodes, each admitted only after
    /// answering a ping whose transaction id is a keyed cookie for its address (spoofed
    /// sources can plant nothing), with a BEP 42 id for a public address, one per IP, and
    /// re-verified every two hours. find_node and get_peers are answered with the 8 pool
    /// nodes closest to the target, spreading joining clients over the whole pool. It stores
    /// no peers: get_peers gets no token and no values, announce_peer an error. With --state
    /// FILE the pool is saved to FILE.pool (26 bytes a node) and reloaded on start.
    #[arg(long, value_enum, value_name = "normal|bootstrap", default_value_t = RoleArg::Normal)]
    pub role: RoleArg,
    /// Nodes the bootstrap role's pool holds at most (about 34 bytes each in memory).
    #[arg(long, value_name = "N", default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub pool_size: u64,
}

/// `--role`: what a node is for.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleArg {
    Normal,
    Bootstrap,
}

impl From<RoleArg> for crate::dht::node::Role {
    fn from(r: RoleArg) -> Self {
        use crate::dht::node::Role;
        match r {
            RoleArg::Normal => Role::Normal,
            RoleArg::Bootstrap => Role::Bootstrap,
        }
    }
}

#[derive(Args, Debug)]
pub struct PeersArgs {
    /// The swarm: a 40-hex or 32-base32 info-hash, or a magnet URI.
    #[arg(value_name = "TARGET")]
    pub target: String,
    #[command(flatten)]
    pub net: NetArgs,
    /// Give up after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: u64,
    /// One JSON object a line on stdout: {"peer":"IP:PORT","info_hash":"...","source":"dht"}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// A magnet URI, a 40-hex or 32-base32 info-hash, or a .torrent file.
    #[arg(value_name = "SOURCE")]
    pub source: String,
    /// Where the files go. Nothing is ever written outside this directory.
    #[arg(long, short, value_name = "DIR")]
    pub output: PathBuf,
    #[command(flatten)]
    pub net: NetArgs,
    /// A peer to connect to (repeatable), besides those the DHT, PEX and LSD find; tried first
    /// and never given up on.
    #[arg(long, value_name = "IP:PORT")]
    pub peer: Vec<SocketAddr>,
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
    /// Keep seeding after the download completes, until SIGINT/SIGTERM, --seed-ratio or
    /// --seed-time. While seeding, the upload slots go to the peers that take data from us
    /// fastest, each for a few choke rounds in turn (faster uploads spread the pieces sooner).
    #[arg(long)]
    pub seed: bool,
    /// With --seed: stop seeding (exit 0, resume record saved) once this run has uploaded R
    /// times the torrent's size.
    #[arg(long, value_name = "R", requires = "seed", value_parser = crate::cli::limits_arg::parse_ratio)]
    pub seed_ratio: Option<f64>,
    /// With --seed: stop seeding (exit 0, resume record saved) after seeding this many seconds.
    #[arg(long, value_name = "SECS", requires = "seed", value_parser = clap::value_parser!(u64).range(0..=315_360_000))]
    pub seed_time: Option<u64>,
    #[command(flatten)]
    pub upload: UploadLimitArg,
    #[command(flatten)]
    pub choker: ChokerChoice,
    /// Download at most this many bytes a second, over all peers (TCP and uTP). Plain bytes
    /// or with a suffix: 500k, 2M (powers of 1000), 1MiB (powers of 1024). 0: no limit.
    #[arg(long, value_name = "B/S", default_value = "0", value_parser = crate::cli::limits_arg::parse_rate)]
    pub download_limit: u64,
    /// Progress as JSON objects on stdout, one a line.
    #[arg(long)]
    pub json: bool,
    /// Show the connected peers with µTorrent's flag letters (--help lists them).
    #[arg(long, long_help = PEERS_HELP)]
    pub peers: bool,
    /// Peer connections at most.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub max_peers: u64,
}

/// The long help of `--peers`, shared by `get` and `seed`.
const PEERS_HELP: &str = "Show the connected peers: address, flags, client (from the \
    peer's extension handshake, or its peer id), download and upload rates, and how much of \
    the torrent each has. On a terminal a table under the progress; otherwise a plain table \
    on stdout every 2 s; with --json a {\"event\":\"peers\",\"peers\":[...]} line every 2 s.\n\n\
    Flags, as in µTorrent and qBittorrent:\n  \
    D  we download from them (we are interested, they unchoke us)\n  \
    d  we are interested, they choke us\n  \
    U  we upload to them (they are interested, we unchoke them)\n  \
    u  they are interested, we choke them\n  \
    K  they unchoke us, we are not interested\n  \
    ?  we unchoke them, they are not interested\n  \
    O  optimistic unchoke (our extra slot, given in turns)\n  \
    S  snubbed: they unchoke us but sent no data for 60 s\n  \
    I  incoming connection\n  \
    H  found by the DHT;  L  found by local discovery (LSD);  X  found by peer exchange (PEX)\n  \
    P  over uTP\n  \
    E  (encrypted) is never shown: kadswarm does not implement protocol encryption (MSE)";

#[derive(Args, Debug)]
pub struct SeedArgs {
    /// The file or directory to seed.
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    #[command(flatten)]
    pub net: NetArgs,
    /// Also write the .torrent file here.
    #[arg(long, value_name = "FILE")]
    pub torrent_out: Option<PathBuf>,
    /// Piece size in bytes (a power of two, at least 16 KiB); chosen from the size by default.
    #[arg(long, value_name = "BYTES")]
    pub piece_length: Option<u64>,
    /// A peer to connect to (repeatable).
    #[arg(long, value_name = "IP:PORT")]
    pub peer: Vec<SocketAddr>,
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
    /// Peer connections at most.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=5000))]
    pub max_peers: u64,
    #[command(flatten)]
    pub upload: UploadLimitArg,
    #[command(flatten)]
    pub choker: ChokerChoice,
    /// Stop seeding (exit 0) after this many seconds.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(0..=315_360_000))]
    pub seed_time: Option<u64>,
    /// Stop seeding (exit 0) once R times the torrent's size has been uploaded.
    #[arg(long, value_name = "R", value_parser = crate::cli::limits_arg::parse_ratio)]
    pub seed_ratio: Option<f64>,
    /// After the magnet line, JSON objects on stdout, one a line: a progress event every
    /// second (uploaded bytes, upload rate, peers), and peers events with --peers.
    #[arg(long)]
    pub json: bool,
    /// Show the connected peers with µTorrent's flag letters (--help lists them).
    #[arg(long, long_help = PEERS_HELP)]
    pub peers: bool,
}

/// `--upload-limit`, which `get` and `seed` share.
#[derive(Args, Debug, Clone)]
pub struct UploadLimitArg {
    /// Upload at most this many bytes a second, over all peers (TCP and uTP). Plain bytes or
    /// with a suffix: 500k, 2M (powers of 1000), 1MiB (powers of 1024). 0: no limit.
    #[arg(long, value_name = "B/S", default_value = "0", value_parser = crate::cli::limits_arg::parse_rate)]
    pub upload_limit: u64,
}

/// How `get` and `seed` find peers and connect to them.
#[derive(Args, Debug, Clone)]
pub struct DiscoveryArgs {
    /// Do not use the DHT (BEP 5) to find peers or announce.
    #[arg(long)]
    pub no_dht: bool,
    /// Do not exchange peer lists with connected peers (BEP 11 ut_pex).
    #[arg(long)]
    pub no_pex: bool,
    /// Do not announce or listen for peers on the local network (BEP 14 multicast).
    #[arg(long)]
    pub no_lsd: bool,
    /// Peer connections over tcp, utp (BEP 29, on the UDP port the DHT uses) or any: dial uTP
    /// first and fall back to TCP, accept both. With tcp or utp, only that one is dialled and
    /// accepted.
    #[arg(long, value_enum, value_name = "tcp|utp|any", default_value_t = TransportArg::Any)]
    pub transport: TransportArg,
}

/// `--choker`, which `get` and `seed` share.
#[derive(Args, Debug, Clone)]
pub struct ChokerChoice {
    /// How the upload is shared out while downloading. tit-for-tat (BEP 3): the 4 peers that
    /// sent us the most in the last rounds get upload slots, plus one optimistic unchoke.
    /// propshare (Levin et al., "BitTorrent is an Auction", 2008): every peer that sent us
    /// data in the last round is unchoked and gets a part of our upload proportional to what it
    /// sent, with 20% for an optimistic unchoke of a peer that sent nothing; a peer that keeps
    /// us choked through a short trial (32 KiB, or a quarter second of our upload) is not
    /// unchoked again until it sends data; connections from one IP count as one peer for the
    /// optimistic unchoke and the slots. Once complete (and always for `seed`) both use the
    /// seeding turns: the peers that take data fastest, each for 3 rounds in a row at most
    /// before others get a turn; propshare ranks last a peer that passed on none of the pieces
    /// only it got from us.
    #[arg(long, value_enum, value_name = "tit-for-tat|propshare", default_value_t = DEFAULT_CHOKER)]
    pub choker: ChokerArg,
}

/// The choker `get` and `seed` use unless told otherwise.
pub const DEFAULT_CHOKER: ChokerArg = ChokerArg::Propshare;

/// `--choker`: how the upload is shared out (see `swarm::choker`). BitTyrant is a strategic
/// client for the swarm harness only and is not offered here.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChokerArg {
    TitForTat,
    Propshare,
}

impl From<ChokerArg> for crate::swarm::choker::ChokerKind {
    fn from(c: ChokerArg) -> Self {
        use crate::swarm::choker::ChokerKind;
        match c {
            ChokerArg::TitForTat => ChokerKind::TitForTat,
            ChokerArg::Propshare => ChokerKind::PropShare,
        }
    }
}

/// `--transport`: which byte streams carry the peer wire.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportArg {
    Tcp,
    Utp,
    Any,
}

impl From<TransportArg> for crate::session::transport::Transport {
    fn from(t: TransportArg) -> Self {
        use crate::session::transport::Transport;
        match t {
            TransportArg::Tcp => Transport::Tcp,
            TransportArg::Utp => Transport::Utp,
            TransportArg::Any => Transport::Any,
        }
    }
}

#[derive(Args, Debug)]
pub struct CrawlArgs {
    #[command(flatten)]
    pub net: NetArgs,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub duration: u64,
    /// Where to store what is found (repeatable, each gets everything): FILE.jsonl,
    /// FILE.sqlite (or .db) or postgres://USER@HOST/DB.
    #[arg(long, value_name = "FILE|URL", required = true)]
    pub out: Vec<String>,
    /// Queries per second at most, everything the node sends included. The default is safe
    /// beside other traffic on a home connection.
    #[arg(long, value_name = "Q/S", default_value_t = 150, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub rate: u32,
    /// Queries waiting for an answer at most.
    #[arg(long, value_name = "N", default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_in_flight: u64,
    /// Rounds of membership lookups, then stop (each swarm is looked up once a round).
    #[arg(long, value_name = "N", conflicts_with = "interval", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rounds: Option<u32>,
    /// Start a new round every SECS seconds until --duration ends (default 600).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub interval: Option<u64>,
    /// Fetch each new swarm's name and size from one of its members (BEP 9).
    #[arg(long)]
    pub metadata: bool,
    /// Metadata fetches running at once (with --metadata).
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub metadata_concurrency: u64,
    /// Largest info dictionary fetched, in bytes (with --metadata).
    #[arg(long, value_name = "BYTES", default_value_t = 4 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..=16 * 1024 * 1024))]
    pub metadata_max_bytes: u64,
    /// Do not ask for BEP 33 scrapes (seed and leecher estimates).
    #[arg(long)]
    pub no_scrape: bool,
    /// One JSON object a line on stdout: a "stats" event every second and a "done" event.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// DHT nodes to run, each on its own 127.x.y.1 address.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(10..=2000))]
    pub nodes: u64,
    /// Seed of the demo's choices (which node seeds, which one is asked, ...).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Longest wait, in seconds, for the routing tables to fill before the swarm is announced.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub settle: u64,
    /// UDP port of every node (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Size of the generated payload the demo seeds and downloads, in MiB.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub size_mib: u64,
    /// Keep the seeded and downloaded files (they are deleted at the end otherwise).
    #[arg(long)]
    pub keep: bool,
}
