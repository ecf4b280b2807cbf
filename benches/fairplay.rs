//! The fair-play experiments of issue 13 in the swarm harness (`swarm::harness::fairplay`):
//! strategic and cheating peers against tit-for-tat and PropShare swarms, each experiment over
//! several seeds. Writes every peer's completion time to `runs.csv`, a summary to
//! `results.md` and completion-time distributions as PNG plots (no text in them: the legend
//! is in `results.md`) into `benches/results/fairplay/` (or `--out DIR`).
//!
//! Options: `--seeds N` (seeds 1..=N, default 5), `--out DIR`, `--only NAME` (experiments
//! whose name contains NAME), `--skip NAME` (leave those out).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kadswarm::swarm::choker::ChokerKind;
use kadswarm::swarm::harness::fairplay::{median, FairPlay, Played, Strategy};
use plotters::prelude::*;

#[allow(clippy::disallowed_methods)]
fn wall_now() -> Instant {
    Instant::now()
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok())
}

/// What a run is made of: the swarm's choker, what every honest leecher plays instead (for
/// the all-BitTyrant swarm), and the strategy of the probe pairs (none for a plain swarm).
#[derive(Clone, Copy)]
struct Experiment {
    name: &'static str,
    choker: ChokerKind,
    everyone: Option<Strategy>,
    probe: Option<Strategy>,
}

fn choker_name(c: ChokerKind) -> &'static str {
    match c {
        ChokerKind::TitForTat => "tit-for-tat",
        ChokerKind::PropShare => "propshare",
        ChokerKind::BitTyrant { .. } => "bittyrant",
    }
}

fn experiments() -> Vec<Experiment> {
    let tft = ChokerKind::TitForTat;
    let prop = ChokerKind::PropShare;
    let e = |name, choker, everyone, probe| Experiment { name, choker, everyone, probe };
    let mut list = vec![
        e("all-tft", tft, None, None),
        e("all-propshare", prop, None, None),
        e("all-bittyrant", tft, Some(Strategy::BitTyrant), None),
    ];
    for (choker, names) in [
        (tft, ["bittyrant-in-tft", "bitthief-in-tft", "sybil4-in-tft", "reveal50-in-tft"]),
        (prop, ["bittyrant-in-propshare", "bitthief-in-propshare", "sybil4-in-propshare", "reveal50-in-propshare"]),
    ] {
        let probes = [
            Strategy::BitTyrant,
            Strategy::BitThief,
            Strategy::Sybil { identities: 4 },
            Strategy::Reveal { hidden_per_mille: 500 },
        ];
        for (name, probe) in names.into_iter().zip(probes) {
            list.push(e(name, choker, None, Some(probe)));
        }
    }
    list
}

/// One peer's line of `runs.csv`.
struct Row {
    experiment: &'static str,
    seed: u64,
    peer: usize,
    /// "population", "probe-honest" or "probe-strategic".
    role: &'static str,
    strategy: String,
    up: u64,
    down: u64,
    joins_at: Duration,
    done: Option<Duration>,
}

struct Outcome {
    exp: Experiment,
    rows: Vec<Row>,
    /// (honest, strategic) completion of every probe pair of every seed.
    pairs: Vec<(Duration, Duration)>,
    all_completed: bool,
    wall: Duration,
}

fn run(exp: Experiment, seeds: u64) -> Outcome {
    let mut rows = Vec::new();
    let mut pairs = Vec::new();
    let mut all_completed = true;
    let started = wall_now();
    for seed in 1..=seeds {
        let mut s = FairPlay::standard(seed, exp.choker);
        if let Some(everyone) = exp.everyone {
            s.all_play(everyone);
        }
        let population = s.peers.len();
        let probe_pairs = exp.probe.map(|p| s.add_probe_pairs(p)).unwrap_or_default();
        let played: Played = s.run(wall_now()).expect("the generated torrent is valid");
        all_completed &= played.completed;
        for (h, x) in &probe_pairs {
            if let (Some(a), Some(b)) = (played.completion(*h), played.completion(*x)) {
                pairs.push((a, b));
            }
        }
        for (i, peer) in played.peers.iter().enumerate() {
            let role = if i < population {
                "population"
            } else if probe_pairs.iter().any(|(h, _)| *h == i) {
                "probe-honest"
            } else {
                "probe-strategic"
            };
            rows.push(Row {
                experiment: exp.name,
                seed,
                peer: i,
                role,
                strategy: peer.strategy.name(),
                up: peer.capacity.up,
                down: peer.capacity.down,
                joins_at: peer.joins_at,
                done: played.completion(i),
            });
        }
    }
    Outcome { exp, rows, pairs, all_completed, wall: started.elapsed() }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn times(o: &Outcome, role: &str) -> Vec<Duration> {
    let mut t: Vec<Duration> = o.rows.iter().filter(|r| r.role == role).filter_map(|r| r.done).collect();
    t.sort();
    t
}

/// Geometric mean of strategic / honest over the pairs: above 1, the strategy finished later.
fn pair_ratio(pairs: &[(Duration, Duration)]) -> Option<f64> {
    if pairs.is_empty() {
        return None;
    }
    let logs: f64 = pairs.iter().map(|(h, x)| (secs(*x) / secs(*h)).ln()).sum();
    Some((logs / pairs.len() as f64).exp())
}

fn write_csv(path: &Path, outcomes: &[Outcome]) -> std::io::Result<()> {
    let mut out = String::from("experiment,choker,seed,peer,role,strategy,up_bps,down_bps,joins_at_s,completion_s\n");
    for o in outcomes {
        for r in &o.rows {
            let done = r.done.map(|d| format!("{:.3}", secs(d))).unwrap_or_default();
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{:.3},{}",
                r.experiment,
                choker_name(o.exp.choker),
                r.seed,
                r.peer,
                r.role,
                r.strategy,
                r.up,
                r.down,
                secs(r.joins_at),
                done
            );
        }
    }
    std::fs::write(path, out)
}

fn fmt_opt(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.1}", secs(d))).unwrap_or_else(|| "-".into())
}

fn summary(outcomes: &[Outcome], seeds: u64) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Fair-play experiments\n\nWritten by `cargo bench --bench fairplay` (benches/fairplay.rs); seeds 1..={seeds}.\n\
         Swarm (`FairPlay::standard`): 40 leechers, upload capacities from the distribution in\n\
         `src/swarm/harness/fairplay.rs`, download 4x upload, Poisson arrivals 1 s apart on average,\n\
         one seed of 256 KiB/s, 8 MiB in 32 KiB pieces, 10-60 ms links, 6 dials per join.\n\
         Probe pairs (experiments `X-in-Y`): for uplinks 48, 64, 96, 128, 192 and 256 KiB/s, one\n\
         honest peer and one playing X, same capacity, both joining at 10 s. Times are from each peer's arrival,\n\
         in virtual seconds. A Sybil is one client with one disk under 4 peer ids on one IP: each of\n\
         its neighbours holds a connection to every identity.\n\
         \"x / honest\" is the geometric mean over the pairs of the strategic peer's time over its\n\
         honest twin's: above 1 the strategy loses, below 1 it gains.\n"
    );
    let _ = writeln!(
        md,
        "| experiment | choker | population median s | population p90 s | honest probes median s | strategic probes median s | x / honest | all done | wall s |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    for o in outcomes {
        let pop = times(o, "population");
        let p90 = pop.get((pop.len() * 9).div_ceil(10).saturating_sub(1)).copied();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.1} |",
            o.exp.name,
            choker_name(o.exp.choker),
            fmt_opt(median(&pop)),
            fmt_opt(p90),
            fmt_opt(median(&times(o, "probe-honest"))),
            fmt_opt(median(&times(o, "probe-strategic"))),
            pair_ratio(&o.pairs).map(|r| format!("{r:.2}")).unwrap_or_else(|| "-".into()),
            o.all_completed,
            secs(o.wall),
        );
    }
    md
}

/// Colours of the plots' curves, in the order the legend in `results.md` names them.
const COLOURS: [RGBColor; 6] = [
    RGBColor(0, 90, 200),
    RGBColor(220, 50, 32),
    RGBColor(0, 150, 70),
    RGBColor(230, 160, 0),
    RGBColor(140, 60, 170),
    RGBColor(90, 90, 90),
];
const COLOUR_NAMES: [&str; 6] = ["blue", "red", "green", "orange", "purple", "grey"];

/// Empirical CDFs of completion times, one curve per series, on a plain grid (vertical lines
/// every 20 s, horizontal every 0.1) and no text, so no font is needed.
fn plot_cdfs(path: &Path, series: &[Vec<Duration>], x_max: f64) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let area = root.margin(20, 20, 20, 20);
    let mut chart = ChartBuilder::on(&area).build_cartesian_2d(0.0..x_max, 0.0..1.0)?;
    let grid = RGBColor(220, 220, 220);
    let mut x = 0.0;
    while x <= x_max {
        chart.draw_series(LineSeries::new([(x, 0.0), (x, 1.0)], grid))?;
        x += 20.0;
    }
    for i in 0..=10 {
        let y = f64::from(i) / 10.0;
        chart.draw_series(LineSeries::new([(0.0, y), (x_max, y)], grid))?;
    }
    for (s, colour) in series.iter().zip(COLOURS) {
        let n = s.len() as f64;
        let mut points = vec![(0.0, 0.0)];
        for (i, t) in s.iter().enumerate() {
            points.push((secs(*t), i as f64 / n));
            points.push((secs(*t), (i + 1) as f64 / n));
        }
        chart.draw_series(LineSeries::new(points, colour.stroke_width(3)))?;
    }
    root.present()?;
    Ok(())
}

/// A named curve: its legend entry and its sorted completion times.
type Series = (String, Vec<Duration>);

/// The plots and their legend (a markdown section).
fn plots(dir: &Path, outcomes: &[Outcome]) -> String {
    let mut md = String::from("\n## Plots\n\nEach PNG shows empirical CDFs of completion time (x: virtual seconds from arrival, from 0 to the largest time plotted rounded up to 100 s, a vertical grid line every 20 s; y: fraction of peers done, 0 to 1, a line every 0.1). The plots have no text; the curves are:\n\n");
    let by_name = |n: &str| outcomes.iter().find(|o| o.exp.name == n);
    let mut figures: Vec<(String, Vec<Series>)> = Vec::new();
    let populations: Vec<Series> = ["all-tft", "all-propshare", "all-bittyrant"]
        .iter()
        .filter_map(|n| by_name(n).map(|o| (format!("{n}: every leecher"), times(o, "population"))))
        .collect();
    figures.push(("mixes.png".into(), populations));
    for o in outcomes.iter().filter(|o| o.exp.probe.is_some()) {
        let series = vec![
            (format!("{}: honest probes", o.exp.name), times(o, "probe-honest")),
            (format!("{}: strategic probes", o.exp.name), times(o, "probe-strategic")),
            (format!("{}: population", o.exp.name), times(o, "population")),
        ];
        figures.push((format!("{}.png", o.exp.name), series));
    }
    for (file, series) in figures {
        if series.is_empty() {
            continue;
        }
        let max = series.iter().flat_map(|(_, s)| s.last()).map(|d| secs(*d)).fold(0.0, f64::max);
        let x_max = ((max / 100.0).ceil() * 100.0).max(100.0);
        let data: Vec<Vec<Duration>> = series.iter().map(|(_, s)| s.clone()).collect();
        match plot_cdfs(&dir.join(&file), &data, x_max) {
            Ok(()) => {
                let _ = writeln!(md, "- `{file}` (x to {x_max:.0} s): ");
                for ((name, _), colour) in series.iter().zip(COLOUR_NAMES) {
                    let _ = writeln!(md, "  {colour} = {name};");
                }
            }
            Err(e) => eprintln!("plot {file}: {e}"),
        }
    }
    md
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seeds = arg(&args, "--seeds").unwrap_or(5u64);
    let dir: PathBuf = arg::<String>(&args, "--out")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results/fairplay"));
    let only: Option<String> = arg(&args, "--only");
    let skip: Option<String> = arg(&args, "--skip");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        std::process::exit(1);
    }
    let mut outcomes = Vec::new();
    let wanted = |e: &Experiment| {
        only.as_deref().is_none_or(|o| e.name.contains(o)) && skip.as_deref().is_none_or(|s| !e.name.contains(s))
    };
    for exp in experiments().into_iter().filter(wanted) {
        let o = run(exp, seeds);
        eprintln!("{}: {:.1} s wall", exp.name, secs(o.wall));
        outcomes.push(o);
    }
    if let Err(e) = write_csv(&dir.join("runs.csv"), &outcomes) {
        eprintln!("runs.csv: {e}");
    }
    let mut md = summary(&outcomes, seeds);
    md.push_str(&plots(&dir, &outcomes));
    println!("{md}");
    if let Err(e) = std::fs::write(dir.join("results.md"), md) {
        eprintln!("results.md: {e}");
    }
}
