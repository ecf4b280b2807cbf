#!/usr/bin/env python3
"""A libtorrent DHT node for kadswarm's queries-per-second bench (benches/qps.rs).

Starts one libtorrent session with only its DHT running, bound to the given
loopback address, with the DHT rate limits raised out of the way
(dht_upload_rate_limit, dht_block_ratelimit) so that what is measured is how
fast the node answers, not how fast it is allowed to. It contacts nobody: no
bootstrap routers, no LSD, UPnP or NAT-PMP.

Prints one JSON line once the UDP socket listens:

  {"event":"ready","addr":"IP:PORT"}

then idles until it is killed, or until --duration seconds have passed (a
bound in case the bench dies without cleaning up).

Example:
  python3 lt_dht_server.py --bind 127.0.51.1:0
"""

import argparse
import json
import sys
import time

import libtorrent as lt

# Both settings are C ints that libtorrent multiplies (the send quota may hold
# 3 s of dht_upload_rate_limit; a source is blocked after 10 s worth of
# dht_block_ratelimit), so "unlimited" must stay well below 2**31 / 10.
UPLOAD_BYTES_PER_SEC = 1 << 28
QUERIES_PER_IP_PER_SEC = 1 << 26


def emit(obj):
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bind", required=True,
                   help="IP:PORT to listen on; port 0 picks a free one")
    p.add_argument("--duration", type=float, default=600.0,
                   help="exit after this many seconds at the latest")
    p.add_argument("--ready-timeout", type=float, default=10.0,
                   help="give up if the socket does not listen within this")
    return p.parse_args()


def make_session(bind):
    host, _, port = bind.rpartition(":")
    settings = {
        "listen_interfaces": "%s:%s" % (host, port),
        "outgoing_interfaces": host,
        "max_retry_port_bind": 0,
        "enable_dht": True,
        "dht_bootstrap_nodes": "",
        # Bytes per second the DHT may send (default 8000) and queries per
        # second one IP may send before it is blocked (default 5).
        "dht_upload_rate_limit": UPLOAD_BYTES_PER_SEC,
        "dht_block_ratelimit": QUERIES_PER_IP_PER_SEC,
        # The socket buffers kadswarm and the bench's echo server ask for.
        "recv_socket_buffer_size": 4 << 20,
        "send_socket_buffer_size": 4 << 20,
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "dht_ignore_dark_internet": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "alert_mask": int(lt.alert_category.status | lt.alert_category.error),
    }
    return lt.session(settings)


def wait_listening(ses, timeout):
    """The bound UDP address, from the listen alerts; None on failure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ses.wait_for_alert(100)
        for a in ses.pop_alerts():
            if isinstance(a, lt.listen_succeeded_alert):
                if a.socket_type == lt.socket_type_t.udp:
                    return "%s:%d" % (a.address, a.port)
            elif isinstance(a, lt.listen_failed_alert):
                emit({"event": "error", "message": a.message()})
                return None
    emit({"event": "error", "message": "not listening after %.0fs" % timeout})
    return None


def main():
    args = parse_args()
    ses = make_session(args.bind)
    addr = wait_listening(ses, args.ready_timeout)
    if addr is None:
        return 1
    emit({"event": "ready", "addr": addr})
    deadline = time.monotonic() + args.duration
    while time.monotonic() < deadline:
        # Keep the alert queue drained; nothing here is on the DHT's path.
        ses.wait_for_alert(500)
        ses.pop_alerts()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
