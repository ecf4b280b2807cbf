//! The event loop of the simulator: sans-IO endpoints joined by simulated links, driven in
//! virtual time. A priority queue holds (time, event); the clock jumps straight to the next
//! event, so a minute of traffic costs only the work of its packets. No sockets, no sleeping,
//! no clock reads after the fixed epoch. Every run is bounded by a step count and by the
//! virtual-time limit its caller passes to `run_until`.

use std::any::Any;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt;
use std::time::{Duration, Instant};

use super::link::Link;

/// A protocol core seen from the network: the uTP connection (through a small adapter that
/// also plays the application) or the TCP-like model.
pub trait Endpoint: Any {
    fn handle_datagram(&mut self, now: Instant, data: &[u8]);
    /// Called once `next_deadline` has passed.
    fn handle_timeout(&mut self, now: Instant);
    /// Writes one datagram into `out` (cleared by the caller) and returns its size on the
    /// wire, lower-layer headers included; `None` when nothing is due now.
    fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> Option<usize>;
    fn next_deadline(&self) -> Option<Instant>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimError {
    StepLimit {
        steps: u64,
        at: Duration,
    },
    /// An endpoint asked to be woken at the same instant over and over without progress.
    Spin {
        node: usize,
        at: Duration,
    },
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::StepLimit { steps, at } => write!(f, "step limit of {steps} reached at t={at:?}"),
            SimError::Spin { node, at } => write!(f, "node {node} spins on its timer at t={at:?}"),
        }
    }
}

enum Event {
    Deliver { node: usize, data: Vec<u8> },
    Timer { node: usize },
}

struct Entry {
    at: Instant,
    /// Insertion order: ties leave in FIFO order, which keeps runs deterministic.
    seq: u64,
    event: Event,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Entry) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    /// Reversed, so the max-heap pops the earliest event.
    fn cmp(&self, other: &Entry) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

struct Node {
    endpoint: Box<dyn Endpoint>,
    /// Where this node's datagrams go: through which link to which node.
    route: Option<(usize, usize)>,
    /// The earliest timer event queued for it, so equal deadlines are not queued twice.
    timer: Option<Instant>,
    /// Timer firings at one instant in a row, to catch a core that never lets time pass.
    spins: (Instant, u32),
}

pub struct Sim {
    epoch: Instant,
    now: Instant,
    queue: BinaryHeap<Entry>,
    seq: u64,
    links: Vec<Link>,
    nodes: Vec<Node>,
    steps: u64,
    max_steps: u64,
    scratch: Vec<u8>,
}

/// Datagrams one node may emit in a row before the loop moves on (a sanity bound only).
const MAX_BURST: usize = 1 << 16;
const MAX_SPINS: u32 = 10_000;

impl Sim {
    pub fn new(epoch: Instant, max_steps: u64) -> Sim {
        Sim {
            epoch,
            now: epoch,
            queue: BinaryHeap::new(),
            seq: 0,
            links: Vec::new(),
            nodes: Vec::new(),
            steps: 0,
            max_steps,
            scratch: Vec::with_capacity(2048),
        }
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.epoch
    }

    pub fn steps(&self) -> u64 {
        self.steps
    }

    pub fn add_link(&mut self, link: Link) -> usize {
        self.links.push(link);
        self.links.len() - 1
    }

    pub fn link(&self, id: usize) -> &Link {
        &self.links[id]
    }

    pub fn link_mut(&mut self, id: usize) -> &mut Link {
        &mut self.links[id]
    }

    /// Adds an endpoint and wakes it once now, so it can send its first datagrams.
    pub fn add_node(&mut self, endpoint: Box<dyn Endpoint>) -> usize {
        let at = self.now;
        self.nodes.push(Node { endpoint, route: None, timer: None, spins: (at, 0) });
        let id = self.nodes.len() - 1;
        self.push(at, Event::Timer { node: id });
        id
    }

    /// Sends everything `from` emits over `link` to `to`.
    pub fn route(&mut self, from: usize, link: usize, to: usize) {
        self.nodes[from].route = Some((link, to));
    }

    /// The endpoint of a node, as its concrete type (panics on the wrong type: a test bug).
    pub fn node<T: Endpoint>(&self, id: usize) -> &T {
        let endpoint: &dyn Any = &*self.nodes[id].endpoint;
        endpoint.downcast_ref::<T>().expect("node has another endpoint type")
    }

    fn push(&mut self, at: Instant, event: Event) {
        self.seq += 1;
        self.queue.push(Entry { at, seq: self.seq, event });
    }

    /// Processes every event up to `until`, then leaves the clock at `until`.
    pub fn run_until(&mut self, until: Instant) -> Result<(), SimError> {
        while self.queue.peek().is_some_and(|e| e.at <= until) {
            self.step()?;
        }
        self.now = self.now.max(until);
        Ok(())
    }

    /// Runs until `done` holds (checked after every event) or `limit` passes; returns whether
    /// `done` held.
    pub fn run_while_not(&mut self, limit: Instant, mut done: impl FnMut(&Sim) -> bool) -> Result<bool, SimError> {
        while !done(self) {
            if self.queue.peek().is_none_or(|e| e.at > limit) {
                self.now = self.now.max(limit);
                return Ok(false);
            }
            self.step()?;
        }
        Ok(true)
    }

    fn step(&mut self) -> Result<(), SimError> {
        self.steps += 1;
        if self.steps > self.max_steps {
            return Err(SimError::StepLimit { steps: self.max_steps, at: self.elapsed() });
        }
        let Some(entry) = self.queue.pop() else { return Ok(()) };
        self.now = entry.at;
        let now = self.now;
        let id = match entry.event {
            Event::Deliver { node, data } => {
                self.nodes[node].endpoint.handle_datagram(now, &data);
                node
            }
            Event::Timer { node } => {
                let n = &mut self.nodes[node];
                if n.timer == Some(now) {
                    n.timer = None;
                }
                if n.endpoint.next_deadline().is_some_and(|d| d <= now) {
                    n.spins = if n.spins.0 == now { (now, n.spins.1 + 1) } else { (now, 1) };
                    if n.spins.1 > MAX_SPINS {
                        return Err(SimError::Spin { node, at: self.elapsed() });
                    }
                    n.endpoint.handle_timeout(now);
                }
                node
            }
        };
        self.service(id);
        Ok(())
    }

    /// Sends what a node has to send and books its next wake-up.
    fn service(&mut self, id: usize) {
        let now = self.now;
        let mut out = std::mem::take(&mut self.scratch);
        for _ in 0..MAX_BURST {
            out.clear();
            let Some(wire) = self.nodes[id].endpoint.poll_transmit(now, &mut out) else { break };
            let Some((link, to)) = self.nodes[id].route else { continue };
            let arrivals = self.links[link].send(now, wire);
            for at in arrivals.into_iter().flatten() {
                self.push(at, Event::Deliver { node: to, data: out.clone() });
            }
        }
        self.scratch = out;
        if let Some(deadline) = self.nodes[id].endpoint.next_deadline() {
            let deadline = deadline.max(now);
            let node = &mut self.nodes[id];
            if node.timer.is_none_or(|t| deadline < t) {
                node.timer = Some(deadline);
                self.push(deadline, Event::Timer { node: id });
            }
        }
    }
}
