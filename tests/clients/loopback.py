"""Loopback ports for test and benchmark processes.

A port from `bind(("127.0.0.1", 0))` comes out of the kernel's ephemeral range, the same
range the kernel draws source ports from. Nodes that start earlier keep dialling peers
that are not up yet, so a port handed out that way can be taken as a source port (or
by a TCP self-connect to it) before its own node binds it, and that node then fails
with "Address already in use". Ports below `ip_local_port_range` are never picked as
source ports; the probe bind only rules out a listener that is already there.
"""

import random
import socket

_handed_out: set[int] = set()
_rng = random.SystemRandom()


def ephemeral_low() -> int:
    """The lowest port the kernel may pick as a source port."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port under the ephemeral range that nothing listens on and that this process
    has not handed out before."""
    high = ephemeral_low()
    low = max(1024, high - 20000)
    for _ in range(1000):
        port = _rng.randrange(low, high)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {low}..{high}")
