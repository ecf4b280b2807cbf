//! The swarm harness's own speed and what it simulates: one seeder and 50 leechers of mixed
//! capacities (`Scenario::mixed`) run to completion in virtual time. Prints the wall time,
//! the virtual time to completion, events per second of wall time, and each class's
//! completion times. Options: `--seed N`, `--size-mib N`, `--runs N`, `--magnet`.

use std::time::{Duration, Instant};

use kadswarm::swarm::harness::scenario::Scenario;

#[allow(clippy::disallowed_methods)]
fn wall_now() -> Instant {
    Instant::now()
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok())
}

fn secs(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seed = arg(&args, "--seed").unwrap_or(2026u64);
    let runs = arg(&args, "--runs").unwrap_or(3u64);
    let mut scenario = Scenario::mixed(seed);
    if let Some(mib) = arg::<usize>(&args, "--size-mib") {
        scenario.size = mib << 20;
    }
    scenario.magnet = args.iter().any(|a| a == "--magnet");
    println!(
        "swarm harness: 1 seeder + {} leechers, {} MiB in {} KiB pieces, seeds {seed}..{}{}",
        scenario.classes.iter().map(|c| c.count).sum::<usize>(),
        scenario.size >> 20,
        scenario.piece_length >> 10,
        seed + runs - 1,
        if scenario.magnet { ", magnet" } else { "" },
    );
    println!("| seed | wall s | virtual s | events | events/s (wall) | virtual / wall | all done |");
    println!("|------|--------|-----------|--------|-----------------|----------------|----------|");
    let mut last = None;
    for run in 0..runs {
        let s = Scenario { seed: seed + run, ..scenario.clone() };
        let started = wall_now();
        let built = s.run(wall_now()).expect("the generated torrent is valid");
        let wall = started.elapsed();
        let done = (1..built.swarm.len()).filter_map(|i| built.swarm.stats(i).completed_at).max().unwrap_or_default();
        let events = built.swarm.events();
        println!(
            "| {} | {} | {} | {events} | {:.0} | {:.1} | {} |",
            s.seed,
            secs(wall),
            secs(done),
            events as f64 / wall.as_secs_f64(),
            done.as_secs_f64() / wall.as_secs_f64(),
            built.completed,
        );
        last = Some((s, built));
    }
    let Some((s, built)) = last else { return };
    println!("\ncompletion times of the last run (virtual seconds), per class:");
    println!("| class | up KiB/s | down KiB/s | n | min | mean | max |");
    println!("|-------|----------|------------|---|-----|------|-----|");
    for (c, class) in s.classes.iter().enumerate() {
        let times: Vec<Duration> = built.completion_times(c).into_iter().flatten().collect();
        let (Some(min), Some(max)) = (times.iter().min(), times.iter().max()) else { continue };
        let mean = built.mean_completion(c).unwrap_or_default();
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            class.name,
            class.capacity.up >> 10,
            class.capacity.down >> 10,
            times.len(),
            secs(*min),
            secs(mean),
            secs(*max),
        );
    }
    let n = built.swarm.len();
    let uploaded: u64 = (0..n).map(|i| built.swarm.core(i).counters().uploaded).sum();
    let received: u64 = (0..n).map(|i| built.swarm.core(i).counters().received).sum();
    let wire: u64 = (0..n).map(|i| built.swarm.stats(i).wire_sent).sum();
    let dropped: u64 = (0..n).map(|i| built.swarm.stats(i).payload_dropped).sum();
    let discarded: u64 = (0..n).map(|i| built.swarm.stats(i).payload_discarded).sum();
    let mib = |b: u64| b as f64 / 1048576.0;
    println!(
        "\nseeder uploaded {:.1} MiB; all uploaded {:.1} MiB, lost to closed connections {:.1} MiB, \
         discarded on arrival as no longer requested {:.1} MiB, counted as received {:.1} MiB (needed {:.1}); wire bytes {:.1} MiB",
        mib(built.swarm.core(0).counters().uploaded),
        mib(uploaded),
        mib(dropped),
        mib(discarded),
        mib(received),
        mib((s.size * (n - 1)) as u64),
        mib(wire),
    );
}
