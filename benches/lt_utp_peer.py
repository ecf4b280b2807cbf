#!/usr/bin/env python3
"""tests/interop/lt_peer.py with TCP switched off: a libtorrent peer that speaks uTP only.

Same options and JSON events as lt_peer.py (seeder or leecher); the session has
enable_outgoing_tcp and enable_incoming_tcp off and uTP on in both directions, so every
byte a bench measures crosses libtorrent's uTP.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "interop"))

import lt_peer  # noqa: E402

_tcp_session = lt_peer.session_for


def utp_only_session(bind_ip, bind_port, dht):
    ses = _tcp_session(bind_ip, bind_port, dht)
    ses.apply_settings({
        "enable_outgoing_tcp": False,
        "enable_incoming_tcp": False,
        "enable_outgoing_utp": True,
        "enable_incoming_utp": True,
    })
    return ses


lt_peer.session_for = utp_only_session

if __name__ == "__main__":
    sys.exit(lt_peer.main())
