//! The helper programs of the LEDBAT bench, each the bench binary re-run with a flag inside a
//! namespace: the queuing-delay probe (small UDP packets through the bottleneck, bounced by the
//! echo server of `common/udp_echo.rs` on the far side), and a bulk TCP flow (source and
//! counting sink) that competes with uTP for the link. Each prints JSON lines the bench reads
//! and exits on its own after its lifetime, should nobody kill it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::Context;

/// Probe payload: sequence number, send time (µs since the probe started), padding.
const PROBE_LEN: usize = 32;

fn flush_line(line: String) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// Sends a timestamped 32-byte datagram to `target` every `interval` for `lifetime`, and prints
/// `{"seq":N,"rtt_us":R}` for every echo that comes back. Lost probes print nothing.
pub fn probe(target: SocketAddr, interval: Duration, lifetime: Duration) -> anyhow::Result<()> {
    let socket = UdpSocket::bind(("0.0.0.0", 0))?;
    socket.connect(target).with_context(|| format!("connecting to {target}"))?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let sender = socket.try_clone()?;
    let origin = Instant::now();
    std::thread::spawn(move || {
        let mut seq = 0u64;
        let mut next = Instant::now();
        while origin.elapsed() < lifetime {
            let mut pkt = [0u8; PROBE_LEN];
            pkt[..8].copy_from_slice(&seq.to_be_bytes());
            pkt[8..16].copy_from_slice(&(origin.elapsed().as_micros() as u64).to_be_bytes());
            // A full queue drops the probe; that is what the bench counts as lost.
            let _ = sender.send(&pkt);
            seq += 1;
            next += interval;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    });
    let mut buf = [0u8; 64];
    while origin.elapsed() < lifetime + Duration::from_secs(2) {
        let Ok(n) = socket.recv(&mut buf) else { continue };
        if n != PROBE_LEN {
            continue;
        }
        let seq = u64::from_be_bytes(buf[..8].try_into()?);
        let sent = u64::from_be_bytes(buf[8..16].try_into()?);
        let rtt = (origin.elapsed().as_micros() as u64).saturating_sub(sent);
        flush_line(format!("{{\"seq\":{seq},\"rtt_us\":{rtt}}}"))?;
    }
    Ok(())
}

/// Accepts one TCP connection on `bind`, reads it to the end and prints
/// `{"bytes":TOTAL}` every 200 ms. Prints `listening on ADDR` first.
pub fn tcp_sink(bind: SocketAddr, lifetime: Duration) -> anyhow::Result<()> {
    let listener = TcpListener::bind(bind).with_context(|| format!("binding {bind}"))?;
    flush_line(format!("listening on {}", listener.local_addr()?))?;
    let started = Instant::now();
    let (mut stream, _) = listener.accept()?;
    stream.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    let mut last_report = Instant::now();
    while started.elapsed() < lifetime {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => return Err(e.into()),
        }
        if last_report.elapsed() >= Duration::from_millis(200) {
            last_report = Instant::now();
            flush_line(format!("{{\"bytes\":{total}}}"))?;
        }
    }
    flush_line(format!("{{\"bytes\":{total}}}"))
}

/// Writes as fast as TCP takes it to `target` for `lifetime`: a bulk, loss-based flow.
pub fn tcp_source(target: SocketAddr, lifetime: Duration) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(5))?;
    stream.set_write_timeout(Some(Duration::from_millis(200)))?;
    let buf = vec![0u8; 1 << 16];
    let started = Instant::now();
    while started.elapsed() < lifetime {
        match stream.write(&buf) {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The `q`-quantile (0..=1) of `v`, or NaN when empty.
pub fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}
