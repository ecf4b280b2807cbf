"""What the libtorrent test peers (lt_node.py, lt_peer.py, lt_pex.py, lt_lsd.py) share: JSON
lines on stdout, HOST:PORT arguments, the settings of a session bound to one test address,
and making a torrent of a path.

Every session listens on, and dials from, one explicit address (each test process has its
own 127.0.N.1 or namespace address), with UPnP and NAT-PMP off and several connections per
IP allowed, since all test peers may share an address. The DHT limits are raised and its
address filters turned off: a private DHT on loopback is otherwise throttled or ignored.
"""

import argparse
import json
import os
import sys
import time
import warnings

import libtorrent as lt


def emit(obj):
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def host_port(text):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT, got %r" % text)
    return host, int(port)


def count_nodes(alert):
    """Sum the live nodes over the buckets of a dht_stats_alert."""
    return sum(b.get("num_nodes", 0) for b in alert.routing_table if isinstance(b, dict))


def settings(bind_ip, bind_port, dht=False, lsd=False, transport="any"):
    """Session settings; callers adjust the returned dict before lt.session(...)."""
    tcp = transport in ("tcp", "any")
    utp = transport in ("utp", "any")
    return {
        "listen_interfaces": "%s:%d" % (bind_ip, bind_port),
        # Outgoing connections leave from the bound address too, so the other side (and
        # its PEX messages) see this peer's own address.
        "outgoing_interfaces": bind_ip,
        "enable_dht": dht,
        "dht_bootstrap_nodes": "",
        "dht_upload_rate_limit": 1 << 20,
        "dht_block_ratelimit": 100000,
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "dht_ignore_dark_internet": False,
        "enable_lsd": lsd,
        "enable_upnp": False,
        "enable_natpmp": False,
        "allow_multiple_connections_per_ip": True,
        "enable_incoming_tcp": tcp,
        "enable_outgoing_tcp": tcp,
        "enable_incoming_utp": utp,
        "enable_outgoing_utp": utp,
        "alert_mask": lt.alert_category.error | lt.alert_category.status,
    }


def make_torrent(path, piece_size=0, torrent_out=None):
    """A v1+v2 torrent of `path` (file or directory), hashed from disk; written to
    `torrent_out` too when given."""
    with warnings.catch_warnings():
        # add_files and create_torrent(file_storage) are deprecated in the 2.x bindings but
        # still the plain way to build a torrent from a path.
        warnings.simplefilter("ignore", DeprecationWarning)
        fs = lt.file_storage()
        lt.add_files(fs, path)
        t = lt.create_torrent(fs, piece_size)
    lt.set_piece_hashes(t, os.path.dirname(os.path.abspath(path)))
    encoded = lt.bencode(t.generate())
    if torrent_out:
        with open(torrent_out, "wb") as f:
            f.write(encoded)
    return lt.torrent_info(lt.bdecode(encoded))


def watch(handle, duration, status_every=0.5, tick=0.1):
    """The main loop of a test peer, for `duration` seconds: emits "finished" once the torrent
    has every piece, and yields (status, due) every `tick` seconds, `due` being True when a
    status line is owed (every `status_every` seconds)."""
    finished = False
    last_status = 0.0
    deadline = time.time() + duration
    while time.time() < deadline:
        st = handle.status()
        if not finished and st.is_seeding:
            finished = True
            emit({"event": "finished"})
        now = time.time()
        due = now - last_status >= status_every
        if due:
            last_status = now
        yield st, due
        time.sleep(tick)
