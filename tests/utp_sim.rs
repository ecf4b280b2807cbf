//! uTP (BEP 29) with LEDBAT (RFC 6817) in an in-process simulator with virtual time: the
//! production sans-IO connection runs over simulated links (tests/utp_sim/). Shows that bulk
//! transfers arrive byte-exact over lossy, reordering, duplicating links, and that LEDBAT
//! fills an idle bottleneck with a bounded standing queue yet yields to a loss-based flow.
//! Figures are printed; run with `--nocapture` to see them.

#[path = "utp_sim/flows.rs"]
mod flows;
#[path = "utp_sim/harness.rs"]
mod harness;
#[path = "utp_sim/link.rs"]
mod link;
#[path = "utp_sim/measure.rs"]
mod measure;
#[path = "utp_sim/reno.rs"]
mod reno;

use std::time::{Duration, Instant};

use flows::{UtpReceiver, UtpSender};
use harness::Sim;
use kadswarm::utp::conn::{Config, State};
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

/// The competitor's own loss recovery: a finite transfer over a link that loses, reorders and
/// duplicates still completes, so Reno's share later is not an artefact of a stalled model.
#[test]
fn reno_completes_over_a_faulty_link() {
    let t0 = epoch();
    let mut sim = Sim::new(t0, 5_000_000);
    let cfg = LinkConfig::bottleneck(BOTTLENECK_BPS, ONE_WAY, Duration::from_millis(200)).faulty(
        0.02,
        0.01,
        Duration::from_millis(3),
        0.01,
    );
    let fwd = sim.add_link(Link::new(cfg.clone(), 21, t0));
    let back = sim.add_link(Link::new(cfg, 22, t0));
    let tx = sim.add_node(Box::new(RenoSender::new(t0, Some(5000))));
    let rx = sim.add_node(Box::new(RenoReceiver::default()));
    sim.route(tx, fwd, rx);
    sim.route(rx, back, tx);
    let done = sim.run_while_not(t0 + Duration::from_secs(600), |sim| sim.node::<RenoSender>(tx).done()).unwrap();
    let s = sim.node::<RenoSender>(tx).stats();
    println!(
        "reno over 2% loss: 5000 segments in {:.1} s, {} retransmits, {} loss events, {} timeouts",
        sim.elapsed().as_secs_f64(),
        s.retransmits,
        s.loss_events,
        s.timeouts
    );
    assert!(done);
    assert_eq!(sim.node::<RenoReceiver>(rx).delivered_bytes(), 5000 * reno::MSS as u64);
}

const MIB: u64 = 1 << 20;

/// One 50 MiB transfer over a link with `loss` random loss each way, plus 1% of packets
/// reordered (held back up to 3 ms, i.e. up to ~13 packet times) and 1% duplicated; checks it
/// arrives byte-exact and both ends close cleanly, and prints its figures.
fn faulty_transfer(label: &str, loss: f64, seed: u64) {
    const SIZE: u64 = 50 * MIB;
    let t0 = epoch();
    let mut sim = Sim::new(t0, 20_000_000);
    // 50 Mbit/s, 10 ms each way, a 200 ms buffer (above LEDBAT's target, so the delay, not
    // the buffer, steers it); the faults hit both directions, ACKs included.
    let link = |seed| {
        let cfg = LinkConfig::bottleneck(50_000_000, Duration::from_millis(10), Duration::from_millis(200)).faulty(
            loss,
            0.01,
            Duration::from_millis(3),
            0.01,
        );
        Link::new(cfg, seed, t0)
    };
    let fwd = sim.add_link(link(seed));
    let back = sim.add_link(link(seed + 1));
    let tx = sim.add_node(Box::new(UtpSender::new(t0, Config::default(), Some(SIZE))));
    let rx = sim.add_node(Box::new(UtpReceiver::new(Config::default())));
    sim.route(tx, fwd, rx);
    sim.route(rx, back, tx);

    let limit = t0 + Duration::from_secs(3600);
    let done = sim
        .run_while_not(limit, |sim| {
            sim.node::<UtpReceiver>(rx).at_eof() && sim.node::<UtpSender>(tx).conn().all_acked()
        })
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    let elapsed = sim.elapsed();
    let (sender, receiver) = (sim.node::<UtpSender>(tx), sim.node::<UtpReceiver>(rx));
    let s = sender.stats();
    let (f, b) = (sim.link(fwd).stats(), sim.link(back).stats());
    println!(
        "{label}: {} of {} bytes in {:.1} s virtual ({:.2} Mbit/s), sender: {} packets, {} retransmits \
         ({} fast), {} timeouts, cwnd {} B, rtt {:.0} ms; receiver: {} packets received; \
         link fwd: {} random drops, {} tail drops, {} reordered, {} duplicated; back: {} random drops; \
         {} sim steps",
        receiver.received(),
        SIZE,
        elapsed.as_secs_f64(),
        mbps(receiver.received(), elapsed),
        s.packets_sent,
        s.retransmits,
        s.fast_retransmits,
        s.timeouts,
        s.cwnd,
        ms(s.rtt),
        receiver.conn().map_or(0, |c| c.stats().packets_received),
        f.random_drops,
        f.tail_drops,
        f.reordered,
        f.duplicated,
        b.random_drops,
        sim.steps()
    );
    assert!(done, "{label}: transfer finished within the virtual-time limit");
    assert_eq!(receiver.first_mismatch(), None, "{label}: every byte as sent");
    assert_eq!(receiver.received(), SIZE, "{label}: nothing missing, nothing extra");
    assert!(receiver.at_eof(), "{label}: the FIN arrived after the last byte");
    assert_eq!(sender.conn().error(), None, "{label}: no reset or timeout");

    // Both FINs are acked and both ends close cleanly, despite the faults on the way.
    let closed = |sim: &Sim| {
        let (a, b) = (sim.node::<UtpSender>(tx).conn(), sim.node::<UtpReceiver>(rx).conn());
        a.state() == State::Closed && b.is_some_and(|b| b.state() == State::Closed)
    };
    let closed = sim.run_while_not(sim.now() + Duration::from_secs(60), closed).unwrap();
    let (a, b) = (sim.node::<UtpSender>(tx).conn(), sim.node::<UtpReceiver>(rx).conn().unwrap());
    assert!(closed, "{label}: both ends close: {:?} / {:?}", a.state(), b.state());
    assert_eq!((a.error(), b.error()), (None, None), "{label}: closed cleanly");
}

#[test]
fn transfer_50_mib_without_loss_is_byte_exact() {
    faulty_transfer("50 MiB, 0% loss", 0.0, 100);
}

#[test]
fn transfer_50_mib_with_1pct_loss_is_byte_exact() {
    faulty_transfer("50 MiB, 1% loss", 0.01, 200);
}

#[test]
fn transfer_50_mib_with_5pct_loss_is_byte_exact() {
    faulty_transfer("50 MiB, 5% loss", 0.05, 300);
}

fn add_utp(sim: &mut Sim, fwd: usize, back: usize) -> (usize, usize) {
    let tx = sim.add_node(Box::new(UtpSender::new(sim.now(), Config::default(), None)));
    let rx = sim.add_node(Box::new(UtpReceiver::new(Config::default())));
    sim.route(tx, fwd, rx);
    sim.route(rx, back, tx);
    (tx, rx)
}

/// RFC 6817's promise when alone: a full link, and a standing queue near the 100 ms target
/// instead of the whole 1 s buffer a loss-based flow keeps.
#[test]
fn ledbat_alone_fills_the_bottleneck_with_a_bounded_queue() {
    let t0 = epoch();
    let (mut sim, fwd, back) = bottleneck_sim(t0, 5_000_000);
    let (tx, rx) = add_utp(&mut sim, fwd, back);
    let (warm, end) = (t0 + Duration::from_secs(20), t0 + Duration::from_secs(80));
    sim.run_until(warm).expect("warm-up");
    let (bytes0, wire0) = (sim.node::<UtpReceiver>(rx).received(), sim.link(fwd).bytes_serialised(warm));
    let stats0 = sim.node::<UtpSender>(tx).stats();
    let mut queue = Vec::new();
    run_sampled(&mut sim, end, SAMPLE_EVERY, fwd, &mut queue, |_| {}).expect("steady state");
    let span = end - warm;
    let goodput = mbps(sim.node::<UtpReceiver>(rx).received() - bytes0, span);
    let link_mbps = BOTTLENECK_BPS as f64 / 1e6;
    let utilisation = mbps(sim.link(fwd).bytes_serialised(end) - wire0, span) / link_mbps;
    let (median, p95) = (quantile(&queue, 0.5).unwrap(), quantile(&queue, 0.95).unwrap());
    let s = sim.node::<UtpSender>(tx).stats();
    println!(
        "LEDBAT alone, {}..{} s: goodput {goodput:.2} Mbit/s ({:.1}% of the link), link utilisation {:.1}%, \
         bottleneck queuing delay median {:.1} ms p95 {:.1} ms max {:.1} ms ({} samples); \
         sender: {} packets, {} retransmits, {} timeouts, cwnd {} B, rtt {:.0} ms, its own queuing-delay \
         estimate {:.1} ms; tail drops {}",
        (warm - t0).as_secs(),
        (end - t0).as_secs(),
        goodput / link_mbps * 100.0,
        utilisation * 100.0,
        ms(median),
        ms(p95),
        ms(quantile(&queue, 1.0).unwrap()),
        queue.len(),
        s.packets_sent - stats0.packets_sent,
        s.retransmits - stats0.retransmits,
        s.timeouts - stats0.timeouts,
        s.cwnd,
        ms(s.rtt),
        ms(s.queuing_delay),
        sim.link(fwd).stats().tail_drops
    );
    assert!(goodput >= 0.9 * link_mbps, "uTP alone uses at least 90% of the link: {goodput:.2} Mbit/s");
    // The median over a minute of 10 ms samples: robust to the odd spike of a loss episode.
    assert!(median <= Duration::from_millis(125), "standing queue within 100 ms + 25%: {median:?}");
}

/// Runs uTP and a Reno flow on the bottleneck, one starting `stagger` after the other, and
/// returns uTP's share of the goodput from `warm` to `end` (seconds, multiples of 10).
fn compete(label: &str, utp_first: bool, stagger: u64, warm: u64, end: u64) -> f64 {
    let t0 = epoch();
    let (mut sim, fwd, back) = bottleneck_sim(t0, 20_000_000);
    let ten = Duration::from_secs(10);
    let (utp_start, reno_start) = if utp_first { (0, stagger) } else { (stagger, 0) };
    let (rtx, rrx) = add_reno(&mut sim, fwd, back, t0 + Duration::from_secs(reno_start));
    let mut utp = None;

    // A timeline for the report: per 10 s, each flow's goodput and the queue's median.
    let mut last = (0u64, 0u64);
    let (mut at_warm, mut stats0, mut wire0) = (last, None, 0);
    let (mut queue, mut slice) = (Vec::new(), Vec::new());
    let mut timeline = String::new();
    for step in 0..end / 10 {
        if utp.is_none() && step * 10 >= utp_start {
            utp = Some(add_utp(&mut sim, fwd, back));
        }
        let t = t0 + ten * (step + 1) as u32;
        slice.clear();
        run_sampled(&mut sim, t, SAMPLE_EVERY, fwd, &mut slice, |_| {}).expect("run");
        let (utx, urx) = utp.unwrap_or((usize::MAX, usize::MAX));
        let utp_stats = utp.map(|_| sim.node::<UtpSender>(utx).stats()).unwrap_or_default();
        let now = (
            utp.map_or(0, |_| sim.node::<UtpReceiver>(urx).received()),
            sim.node::<RenoReceiver>(rrx).delivered_bytes(),
        );
        timeline += &format!(
            "  t={:>3}s uTP {:.3} Mbit/s, Reno {:.2} Mbit/s, queue median {:.0} ms, uTP cwnd {} B\n",
            (step + 1) * 10,
            mbps(now.0 - last.0, ten),
            mbps(now.1 - last.1, ten),
            ms(quantile(&slice, 0.5).unwrap()),
            utp_stats.cwnd
        );
        last = now;
        if (step + 1) * 10 == warm {
            (at_warm, stats0, wire0) = (now, Some(utp_stats), sim.link(fwd).bytes_serialised(t));
        } else if (step + 1) * 10 > warm {
            queue.extend_from_slice(&slice);
        }
    }
    let (span, end_t) = (Duration::from_secs(end - warm), t0 + Duration::from_secs(end));
    let (utp_bytes, reno_bytes) = (last.0 - at_warm.0, last.1 - at_warm.1);
    let share = utp_bytes as f64 / (utp_bytes + reno_bytes) as f64;
    let utilisation = mbps(sim.link(fwd).bytes_serialised(end_t) - wire0, span) / (BOTTLENECK_BPS as f64 / 1e6);
    let s = sim.node::<UtpSender>(utp.expect("uTP started").0).stats();
    let s0 = stats0.expect("warm-up ended");
    let r = sim.node::<RenoSender>(rtx);
    print!("{label}:\n{timeline}");
    println!(
        "  {warm}..{end} s: uTP {:.3} Mbit/s ({:.1}%), Reno {:.2} Mbit/s ({:.1}%), link utilisation {:.1}%, \
         queue median {:.0} ms p95 {:.0} ms; uTP: {} packets, {} retransmits, {} timeouts, cwnd {} B, \
         rtt {:.0} ms, its queuing-delay estimate {:.0} ms; Reno: {} segments, {} retransmits, {} loss events, \
         {} timeouts, srtt {:.0} ms",
        mbps(utp_bytes, span),
        share * 100.0,
        mbps(reno_bytes, span),
        (1.0 - share) * 100.0,
        utilisation * 100.0,
        ms(quantile(&queue, 0.5).unwrap()),
        ms(quantile(&queue, 0.95).unwrap()),
        s.packets_sent - s0.packets_sent,
        s.retransmits - s0.retransmits,
        s.timeouts - s0.timeouts,
        s.cwnd,
        ms(s.rtt),
        ms(s.queuing_delay),
        r.stats().segments_sent,
        r.stats().retransmits,
        r.stats().loss_events,
        r.stats().timeouts,
        ms(r.srtt().unwrap_or_default())
    );
    assert!(utilisation >= 0.9, "{label}: the pair still fills the link: {utilisation}");
    share
}

/// RFC 6817 section 2: LEDBAT is a scavenger and must yield to standard TCP. uTP runs alone
/// first (it learns the true base delay), then a Reno flow joins the bottleneck.
#[test]
fn ledbat_yields_to_a_loss_based_flow() {
    let share = compete("LEDBAT vs Reno (Reno joins at 10 s)", true, 10, 40, 160);
    assert!(share <= 0.25, "uTP yields: at most 25% of the throughput, got {:.1}%", share * 100.0);
}

/// The harder order: uTP joins a link whose buffer Reno already keeps full, so the delay it
/// takes for its base includes Reno's standing queue; it must still yield as the queue grows.
#[test]
fn ledbat_joining_a_loss_based_flow_yields() {
    let share = compete("LEDBAT joins Reno (uTP starts at 20 s)", false, 20, 40, 200);
    assert!(share <= 0.25, "uTP yields: at most 25% of the throughput, got {:.1}%", share * 100.0);
}

/// Karn's algorithm (RFC 6298 section 5, BEP 29's timeout): when the path's RTT jumps above the
/// retransmission timeout, acks of retransmitted packets give no RTT sample, so the backed-off
/// timeout must stay until a packet sent once is acked. Otherwise every packet times out and
/// goes twice, for ever, and the estimate never learns the new RTT.
#[test]
fn rto_learns_a_sudden_rtt_increase() {
    let t0 = epoch();
    let (mut sim, fwd, back) = bottleneck_sim(t0, 5_000_000);
    let (tx, _rx) = add_utp(&mut sim, fwd, back);
    sim.run_until(t0 + Duration::from_secs(10)).expect("before");
    // A route change: 40 ms -> 1.2 s round trip.
    sim.link_mut(fwd).set_delay(Duration::from_millis(1180));
    sim.run_until(t0 + Duration::from_secs(20)).expect("settling");
    let before = sim.node::<UtpSender>(tx).stats();
    sim.run_until(t0 + Duration::from_secs(40)).expect("after");
    let s = sim.node::<UtpSender>(tx).stats();
    println!(
        "RTT 40 ms -> 1.2 s at 10 s: 20..40 s {} timeouts, {} retransmits of {} packets; rtt estimate {:.0} ms",
        s.timeouts - before.timeouts,
        s.retransmits - before.retransmits,
        s.packets_sent - before.packets_sent,
        ms(s.rtt)
    );
    assert!(s.rtt >= Duration::from_secs(1), "the estimate follows the path: {:?}", s.rtt);
    assert!(s.timeouts - before.timeouts <= 2, "no timeout per round trip once the RTT is known");
}
