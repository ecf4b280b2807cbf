//! uTP (BEP 29) with LEDBAT (RFC 6817) in an in-process simulator with virtual time: the
//! production sans-IO connection runs over simulated links (tests/utp_sim/). Shows that bulk
//! transfers arrive byte-exact over lossy, reordering, duplicating links, and that LEDBAT
//! fills an idle bottleneck with a bounded standing queue yet yields to a loss-based flow.
//! Figures are printed; run with `--nocapture` to see them.

#[path = "utp_sim/harness.rs"]
mod harness;
#[path = "utp_sim/link.rs"]
mod link;
#[path = "utp_sim/measure.rs"]
mod measure;
#[path = "utp_sim/reno.rs"]
mod reno;

use std::time::{Duration, Instant};

use harness::Sim;
use link::{Link, LinkConfig};
use measure::{mbps, ms, quantile, run_sampled};
use reno::{RenoReceiver, RenoSender};

/// The fixed origin of virtual time; only offsets from it matter.
fn epoch() -> Instant {
    #[allow(clippy::disallowed_methods)]
    Instant::now()
}

const BOTTLENECK_BPS: u64 = 10_000_000;
/// 40 ms base RTT: 20 ms each way.
const ONE_WAY: Duration = Duration::from_millis(20);
const BUFFER: Duration = Duration::from_secs(1);
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// The LEDBAT test network: a 10 Mbit/s, 1 s drop-tail bottleneck forward and a clean
/// return path; returns (sim, forward link, return link).
fn bottleneck_sim(t0: Instant, max_steps: u64) -> (Sim, usize, usize) {
    let mut sim = Sim::new(t0, max_steps);
    let fwd = sim.add_link(Link::new(LinkConfig::bottleneck(BOTTLENECK_BPS, ONE_WAY, BUFFER), 11, t0));
    let back = sim.add_link(Link::new(LinkConfig::bottleneck(BOTTLENECK_BPS, ONE_WAY, BUFFER), 12, t0));
    (sim, fwd, back)
}

fn add_reno(sim: &mut Sim, fwd: usize, back: usize, start: Instant) -> (usize, usize) {
    let tx = sim.add_node(Box::new(RenoSender::new(start, None)));
    let rx = sim.add_node(Box::new(RenoReceiver::default()));
    sim.route(tx, fwd, rx);
    sim.route(rx, back, tx);
    (tx, rx)
}

/// Proves the simulator before uTP runs in it: a loss-based flow alone fills the link and,
/// being loss-based, keeps the 1 s drop-tail buffer far from empty.
#[test]
fn reno_alone_fills_the_link_and_the_buffer() {
    let t0 = epoch();
    let (mut sim, fwd, back) = bottleneck_sim(t0, 5_000_000);
    let (tx, rx) = add_reno(&mut sim, fwd, back, t0);
    let (warm, end) = (t0 + Duration::from_secs(20), t0 + Duration::from_secs(80));
    sim.run_until(warm).expect("warm-up");
    let (bytes0, wire0) = (sim.node::<RenoReceiver>(rx).delivered_bytes(), sim.link(fwd).bytes_serialised(warm));
    let mut queue = Vec::new();
    run_sampled(&mut sim, end, SAMPLE_EVERY, fwd, &mut queue, |_| {}).expect("steady state");
    let span = end - warm;
    let goodput = mbps(sim.node::<RenoReceiver>(rx).delivered_bytes() - bytes0, span);
    let utilisation = mbps(sim.link(fwd).bytes_serialised(end) - wire0, span) / (BOTTLENECK_BPS as f64 / 1e6);
    let (median, p95) = (quantile(&queue, 0.5).unwrap(), quantile(&queue, 0.95).unwrap());
    let s = sim.node::<RenoSender>(tx).stats().clone();
    println!(
        "reno alone: goodput {goodput:.2} Mbit/s, link utilisation {:.1}%, queuing delay median {:.0} ms p95 {:.0} ms, \
         sent {} segments, {} retransmits, {} loss events, {} timeouts, tail drops {}, {} sim steps",
        utilisation * 100.0,
        ms(median),
        ms(p95),
        s.segments_sent,
        s.retransmits,
        s.loss_events,
        s.timeouts,
        sim.link(fwd).stats().tail_drops,
        sim.steps()
    );
    assert!(utilisation >= 0.95, "Reno alone keeps the link busy: {utilisation}");
    assert!(median >= Duration::from_millis(300), "a loss-based flow keeps a big standing queue: {median:?}");
    assert!(s.loss_events > 0 && sim.link(fwd).stats().tail_drops > 0, "it finds the buffer's end");
}
