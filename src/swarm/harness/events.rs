//! What happens in the harness, one event at a time: dials, frames leaving an uplink and
//! landing at a core, closed connections noticed, core timers, disk completions. Each event
//! feeds a core an input (through its behaviour), then carries out every action the core
//! queued, then queues the core's next wake-up — the same loop the tokio driver
//! (`session::driver`) runs, with the links and the disk simulated.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::disk::MemDisk;
use super::link::Frame;
use super::{Conn, End, Swarm};
use crate::swarm::bitfield::Bitfield;
use crate::swarm::session::DiskOp;
use crate::swarm::session::{limits, Action, CloseReason, Hello, Input, PeerOrigin, TorrentEvent};
use crate::torrent::Metainfo;
use crate::wire::message::decode_frame;

/// Message id of `piece` (BEP 3), and the bytes before its payload: length prefix, id,
/// index, begin.
const PIECE_ID: u8 = 7;
const PIECE_HEADER: usize = 13;

pub(super) enum Event {
    /// The handshakes of a dial are done: both cores take the connection.
    Dial {
        a: usize,
        b: usize,
        /// The identities of `a` and `b` that connect (see [`Swarm::dial_as`]).
        identities: (u16, u16),
        latency: Duration,
    },
    /// The frame on the air at this link's uplink has left.
    UplinkDone {
        link: usize,
    },
    /// A frame of connection `conn` has wholly arrived at `node`.
    Deliver {
        node: usize,
        conn: usize,
        bytes: Vec<u8>,
    },
    /// The other end closed connection `conn`, and `node` now notices.
    Gone {
        node: usize,
        conn: usize,
    },
    Timer {
        node: usize,
    },
    Disk {
        node: usize,
        op: DiskOp,
    },
    /// The node leaves the swarm.
    Leave {
        node: usize,
    },
    /// Metadata fetched from peers, to parse and open storage for.
    Install {
        node: usize,
        info_bytes: Vec<u8>,
    },
}

/// Block payload bytes in an encoded frame (0 unless it is a `piece`).
fn payload_of(frame: &[u8]) -> u64 {
    match frame.get(4) {
        Some(&PIECE_ID) if frame.len() >= PIECE_HEADER => (frame.len() - PIECE_HEADER) as u64,
        _ => 0,
    }
}

impl Swarm {
    /// Handles the next event due by `limit`; false when there is none.
    pub(super) fn step(&mut self, limit: Instant) -> bool {
        let Some(event) = self.clock.next_before(limit) else { return false };
        self.events += 1;
        let now = self.clock.now();
        match event {
            Event::Dial { a, b, identities, latency } => self.on_dial(now, a, b, identities, latency),
            Event::UplinkDone { link } => self.on_uplink_done(now, link),
            Event::Deliver { node, conn, bytes } => self.on_deliver(now, node, conn, bytes),
            Event::Gone { node, conn } => {
                let key = self.conns[conn].ends[self.conns[conn].side_of(node)].key;
                if self.nodes[node].peers.get(&key) == Some(&conn) {
                    self.forget_conn(node, conn);
                    self.feed(node, now, Input::PeerGone { key });
                }
                self.after(node);
            }
            Event::Timer { node } => {
                let n = &mut self.nodes[node];
                if n.scheduled != Some(now) {
                    return true; // superseded by an earlier wake-up
                }
                n.scheduled = None;
                if n.core.next_deadline().is_some_and(|t| t <= now) {
                    n.core.handle_timeout(now);
                }
                self.after(node);
            }
            Event::Disk { node, op } => {
                if let Some(input) = self.nodes[node].disk.as_mut().and_then(|d| d.run(op)) {
                    self.feed(node, now, input);
                }
                self.after(node);
            }
            Event::Install { node, info_bytes } => self.on_install(now, node, info_bytes),
            Event::Leave { node } => {
                self.nodes[node].gone = true;
                self.nodes[node].core.close_all();
                self.after(node);
            }
        }
        true
    }

    fn on_dial(&mut self, now: Instant, a: usize, b: usize, (ia, ib): (u16, u16), latency: Duration) {
        let hello = |addr, outgoing| Hello {
            addr,
            origin: PeerOrigin { outgoing, utp: false, ..Default::default() },
            peer_id: [0; 20],
            supports_ext: true,
            supports_dht: false,
        };
        if self.same_machine(a, b) || self.nodes[a].gone || self.nodes[b].gone {
            // One machine does not trade with itself over the network, and who left is gone.
            self.nodes[a].stats.refused += 1;
            return;
        }
        let (addr_a, addr_b) = (seen_as(self.nodes[a].addr, ia, ib), seen_as(self.nodes[b].addr, ib, ia));
        let key_a = match self.nodes[a].core.connect(now, hello(addr_b, true)) {
            Ok(k) => k,
            Err(_) => {
                self.nodes[a].stats.refused += 1;
                return self.after(a);
            }
        };
        let key_b = match self.nodes[b].core.connect(now, hello(addr_a, false)) {
            Ok(k) => k,
            Err(_) => {
                // The dialler took it; it now learns the other side hung up.
                self.nodes[b].stats.refused += 1;
                self.feed(a, now, Input::PeerGone { key: key_a });
                self.after(b);
                return self.after(a);
            }
        };
        let limits_of =
            |s: &Swarm, n: usize| limits::frame_limits(s.nodes[n].core.metainfo().map(|m| m.info.piece_count()));
        let conn = self.conns.len();
        self.conns.push(Conn {
            ends: [
                End { node: a, key: key_a, limits: limits_of(self, a) },
                End { node: b, key: key_b, limits: limits_of(self, b) },
            ],
            latency,
            last_arrival: [None, None],
        });
        self.nodes[a].peers.insert(key_a, conn);
        self.nodes[b].peers.insert(key_b, conn);
        self.after(a);
        self.after(b);
    }

    /// A frame has left `link`'s uplink: the sending core learns its socket took the bytes,
    /// the frame travels on, and the uplink starts on the next one. The sender is the end of
    /// the frame's connection on this link (identities of one machine never share a
    /// connection, so there is exactly one).
    fn on_uplink_done(&mut self, now: Instant, link: usize) {
        let Some(on_air) = self.links[link].uplink.on_air.take() else { return };
        let Frame { conn: c, bytes } = on_air.frame;
        let side = usize::from(self.nodes[self.conns[c].ends[0].node].link != link);
        let node = self.conns[c].ends[side].node;
        let key = self.conns[c].ends[side].key;
        if self.nodes[node].peers.get(&key) == Some(&c) {
            let len = bytes.len();
            self.nodes[node].stats.wire_sent += len as u64;
            let to = 1 - side;
            let receiver = self.conns[c].ends[to].node;
            let latency = self.conns[c].latency;
            let rx_link = self.nodes[receiver].link;
            let at = self.links[rx_link].downlink.arrival(on_air.started, now, latency, len);
            self.conns[c].last_arrival[to] = Some(at);
            self.clock.schedule(at, Event::Deliver { node: receiver, conn: c, bytes });
            self.feed(node, now, Input::Written { key, bytes: len });
        } else {
            self.nodes[node].stats.payload_dropped += payload_of(&bytes);
        }
        self.start_uplink(link);
        self.after(node);
    }

    fn on_deliver(&mut self, now: Instant, node: usize, c: usize, bytes: Vec<u8>) {
        let side = self.conns[c].side_of(node);
        let sender = self.conns[c].ends[1 - side].node;
        let key = self.conns[c].ends[side].key;
        let payload = payload_of(&bytes);
        if self.nodes[node].peers.get(&key) != Some(&c) {
            // It closed the connection: what was still on the way is lost.
            self.nodes[sender].stats.payload_dropped += payload;
            return;
        }
        self.nodes[sender].stats.payload_delivered += payload;
        if payload > 0 {
            *self.nodes[node].stats.payload_from.entry(sender).or_default() += payload;
        }
        self.nodes[node].stats.wire_received += bytes.len() as u64;
        match decode_frame(&bytes, &self.conns[c].ends[side].limits) {
            Ok(Some((msg, used))) if used == bytes.len() => {
                let before = self.nodes[node].core.counters().received;
                self.feed(node, now, Input::Message { key, msg });
                let counted = self.nodes[node].core.counters().received - before;
                self.nodes[node].stats.payload_discarded += payload.saturating_sub(counted);
            }
            // A frame the core's limits refuse: the peer task would drop the connection.
            _ => {
                self.nodes[node].stats.protocol_closes += 1;
                self.close(now, node, c);
                self.feed(node, now, Input::PeerGone { key });
            }
        }
        self.after(node);
    }

    fn on_install(&mut self, now: Instant, node: usize, info_bytes: Vec<u8>) {
        let n = &mut self.nodes[node];
        let input = match Metainfo::from_info_bytes(info_bytes) {
            Ok(meta) if meta.info_hash == n.core.config().info_hash && n.disk.is_none() => {
                let meta = Arc::new(meta);
                n.disk = Some(MemDisk::empty(Arc::clone(&meta), n.disk_delay));
                let have = Bitfield::new(meta.info.piece_count());
                Input::MetadataInstalled { meta, have }
            }
            _ => {
                n.stats.failed = true;
                Input::InstallFailed
            }
        };
        self.feed(node, now, input);
        self.after(node);
    }

    /// Hands an input to a node's core, through its behaviour.
    pub(super) fn feed(&mut self, node: usize, now: Instant, input: Input) {
        let n = &mut self.nodes[node];
        if let Some(input) = n.behaviour.on_input(now, input) {
            n.core.handle(now, input);
        }
    }

    /// Carries out what a node's core queued, then queues its next wake-up.
    pub(super) fn after(&mut self, node: usize) {
        let now = self.clock.now();
        loop {
            let n = &mut self.nodes[node];
            let Some(action) = n.core.poll_action() else { break };
            if let Some(action) = n.behaviour.on_action(now, action) {
                self.carry_out(now, node, action);
            }
        }
        let n = &mut self.nodes[node];
        if let Some(deadline) = n.core.next_deadline() {
            let deadline = deadline.max(now);
            if n.scheduled.is_none_or(|s| deadline < s) {
                n.scheduled = Some(deadline);
                self.clock.schedule(deadline, Event::Timer { node });
            }
        }
    }

    fn carry_out(&mut self, now: Instant, node: usize, action: Action) {
        let n = &mut self.nodes[node];
        match action {
            Action::Send { key, msg } => {
                let Some(&conn) = n.peers.get(&key) else { return };
                let mut bytes = Vec::with_capacity(msg.encoded_len());
                msg.encode(&mut bytes);
                n.stats.payload_sent += payload_of(&bytes);
                let link = n.link;
                if self.links[link].uplink.push(Frame { conn, bytes }) {
                    self.start_uplink(link);
                }
            }
            Action::Limits { key, limits } => {
                if let Some(&c) = n.peers.get(&key) {
                    let side = self.conns[c].side_of(node);
                    self.conns[c].ends[side].limits = limits;
                }
            }
            Action::Close { key, reason } => {
                if matches!(reason, CloseReason::Protocol(_) | CloseReason::NotReading { .. }) {
                    n.stats.protocol_closes += 1;
                    tracing::debug!(node, ?reason, "simulated node dropped a peer");
                }
                if let Some(&c) = n.peers.get(&key) {
                    self.close(now, node, c);
                }
            }
            Action::Disk(op) => self.queue_disk(now, node, op),
            Action::Install { info_bytes } => {
                let at = now + n.disk_delay;
                self.clock.schedule(at, Event::Install { node, info_bytes });
            }
            // No DHT in the simulated swarm.
            Action::DhtPing { .. } => {}
            Action::Learned { addrs } => n.stats.learned += addrs.len() as u64,
            Action::Event(ev) => match ev {
                TorrentEvent::Complete => {
                    n.stats.completed_at.get_or_insert(self.clock.elapsed());
                    if let Some(after) = n.leaves_after {
                        self.clock.schedule(now + after, Event::Leave { node });
                    }
                }
                TorrentEvent::PieceVerified(index) => n.stats.verified.push((index, self.clock.elapsed())),
                TorrentEvent::PieceFailed(_) => n.stats.pieces_failed += 1,
                TorrentEvent::Failed(_) | TorrentEvent::MetadataUnusable(_) => n.stats.failed = true,
                _ => {}
            },
        }
    }

    fn queue_disk(&mut self, now: Instant, node: usize, op: DiskOp) {
        if let Some(disk) = self.nodes[node].disk.as_mut() {
            let at = disk.due(now);
            self.clock.schedule(at, Event::Disk { node, op });
        }
    }

    fn start_uplink(&mut self, link: usize) {
        let now = self.clock.now();
        if let Some(done) = self.links[link].uplink.start_next(now) {
            self.clock.schedule(done, Event::UplinkDone { link });
        }
    }

    /// `node` closes connection `c`: what it had queued is dropped, and the other end notices
    /// after whatever is still on the way to it has landed.
    fn close(&mut self, now: Instant, node: usize, c: usize) {
        self.forget_conn(node, c);
        let conn = &self.conns[c];
        let other = 1 - conn.side_of(node);
        let at = (now + conn.latency).max(conn.last_arrival[other].unwrap_or(now));
        let other_node = conn.ends[other].node;
        self.clock.schedule(at, Event::Gone { node: other_node, conn: c });
    }

    /// `node` no longer has connection `c`: unmapped, its queued frames dropped.
    fn forget_conn(&mut self, node: usize, c: usize) {
        let key = self.conns[c].ends[self.conns[c].side_of(node)].key;
        let n = &mut self.nodes[node];
        if n.peers.get(&key) == Some(&c) {
            n.peers.remove(&key);
        }
        let dropped: u64 = self.links[n.link].uplink.drop_conn(c).iter().map(|f| payload_of(f)).sum();
        n.stats.payload_dropped += dropped;
    }
}

/// The address under which a node knows identity `theirs` of a machine at `addr` when it
/// talks to it as its own identity `mine`: the machine's IP, a port per pair of identities.
/// A one-identity node on both ends keeps its plain address. A Sybil client keeps apart the
/// connections its identities have to one peer, as the core keeps apart distinct addresses.
pub(super) fn seen_as(addr: std::net::SocketAddr, theirs: u16, mine: u16) -> std::net::SocketAddr {
    let port = addr.port().wrapping_add(theirs).wrapping_add(mine.wrapping_mul(64));
    std::net::SocketAddr::new(addr.ip(), port)
}
