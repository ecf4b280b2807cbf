//! A UDP echo server: one thread, blocking `recv_from` then `send_to`, nothing else. The `qps`
//! bench measures it as the ceiling of loopback UDP; the `ledbat_netns` bench bounces its
//! queuing-delay probes off it. It exits on its own when idle or old, should nobody kill it.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;

/// The echo server exits after this many seconds without a datagram, in case nobody kills it.
const ECHO_IDLE_EXIT_SECS: u64 = 30;
const ECHO_MAX_LIFETIME: Duration = Duration::from_secs(3600);
/// The buffers kadswarm asks for.
const SOCKET_BUFFER: usize = 4 << 20;

/// Echoes every datagram to its sender until idle or old. Runs in a child process (the bench
/// binary re-run with a flag) so it can be pinned, measured, or placed in a network namespace.
pub fn echo_server(bind: &str) -> anyhow::Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    let addr: SocketAddr = bind.parse().with_context(|| format!("bad address {bind}"))?;
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into()).with_context(|| format!("binding {addr}"))?;
    let socket: std::net::UdpSocket = socket.into();
    socket.set_read_timeout(Some(Duration::from_secs(1)))?;
    println!("listening on {}", socket.local_addr()?);
    std::io::stdout().flush()?;
    let started = Instant::now();
    let mut idle_secs = 0u64;
    let mut buf = [0u8; 2048];
    let mut since_check = 0u32;
    // Bounded in time: the lifetime is checked every 64k datagrams and on every idle second.
    loop {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                let _ = socket.send_to(&buf[..n], from);
                idle_secs = 0;
                since_check += 1;
                if since_check < 65_536 {
                    continue;
                }
                since_check = 0;
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                idle_secs += 1;
                if idle_secs >= ECHO_IDLE_EXIT_SECS {
                    return Ok(());
                }
            }
            Err(e) => return Err(e.into()),
        }
        if started.elapsed() >= ECHO_MAX_LIFETIME {
            return Ok(());
        }
    }
}
