"""benches/resp/round_trip_legs.py: cutting ftrace's record of a run into legs, and the
file offsets its uprobes are placed at. Recording needs root and tracefs; what is
tested here is what turns a record into the table."""

import re
import subprocess
import sys

from conftest import BENCHES, shoal_binary

sys.path.insert(0, str(BENCHES / "resp"))
sys.path.insert(0, str(BENCHES.parent / "tests" / "clients"))
import round_trip_legs as rtl  # noqa: E402

CLIENT, SERVER = 100, 201
KINDS = {14: "PING", 0x2A0: "search"}


def ev(pid, cpu, us, event, rest, comm=None):
    comm = comm or ("python" if pid == CLIENT else "tokio-rt-worker")
    return f" {comm}-{pid} [{cpu:03d}] ..... {us / 1e6:.6f}: {event}: {rest}"


def enter(pid, cpu, us, nr, length):
    return ev(pid, cpu, us, "sys_enter", f"NR {nr} (4, 7f5195594e00, {length:x}, 0, 0, 0)")


def leave(pid, cpu, us, nr, ret):
    return ev(pid, cpu, us, "sys_exit", f"NR {nr} = {ret}")


def record():
    """A PING and a search as ftrace prints them (times in microseconds), with what a
    real record also has: the server's EAGAIN before it parks, a sched event, the
    client's send of something that is not a request, and the server's wake-up on the
    client's vCPU for the search."""
    return [
        "# tracer: nop",
        enter(CLIENT, 0, 1000, 44, 14),
        leave(CLIENT, 0, 1016, 44, 14),
        enter(CLIENT, 0, 1018, 45, 0x100000),
        "  <idle>-0 [001] d..2. 0.001020: sched_switch: prev_comm=swapper/1 ==> next_comm=tokio",
        leave(SERVER, 1, 1024, 45, 14),
        enter(SERVER, 1, 1026, 44, 7),
        leave(SERVER, 1, 1033, 44, 7),
        enter(SERVER, 1, 1034, 45, 0x1CFD2),
        leave(SERVER, 1, 1035, 45, -11),
        leave(CLIENT, 0, 1037, 45, 7),
        enter(CLIENT, 0, 1060, 44, 0x2A0),
        leave(SERVER, 1, 1061, 45, -11),  # a poll of the socket before the bytes are there
        leave(CLIENT, 0, 1075, 44, 0x2A0),
        leave(SERVER, 0, 1082, 45, 0x2A0),
        ev(SERVER, 0, 1090, "walk_in", "(0x55743811c5a0)"),
        ev(SERVER, 0, 1120, "walk_out", "(0x557438113cb9 <- 0x55743811c5a0)"),
        enter(SERVER, 0, 1127, 44, 519),
        leave(SERVER, 0, 1138, 44, 519),
        leave(CLIENT, 1, 1150, 45, 519),
        enter(CLIENT, 1, 1170, 44, 5),  # not a request of the run
        leave(SERVER, 0, 1171, 45, 5),
        enter(SERVER, 0, 1172, 44, 9),
        leave(SERVER, 0, 1173, 44, 9),
        leave(CLIENT, 1, 1180, 45, 9),
        enter(CLIENT, 1, 1190, 44, 14),  # and after it, a PING again
        leave(SERVER, 0, 1200, 45, 14),
    ]


def test_each_request_is_cut_into_its_legs():
    reqs = rtl.requests(record(), CLIENT, KINDS)
    assert [r["kind"] for r in reqs] == ["PING", "search", "PING"]
    ping, search, after = reqs
    assert (ping["c_send"], ping["s_recv"], ping["s_send"], ping["s_sent"],
            ping["c_recv"], ping["next"]) == (1000, 1024, 1026, 1033, 1037, 1060)
    # A receive that found nothing is not the request's arrival.
    assert search["s_recv"] == 1082
    assert (search["walk_in"], search["walk_out"], search["s_send"], search["c_recv"]) == (
        1090, 1120, 1127, 1150)
    assert search["next"] == 1170
    assert ping["s_cpu"] != ping["c_cpu"] and search["s_cpu"] == search["c_cpu"]
    # Nothing of the foreign request's round trip lands on the requests around it.
    assert (search["s_sent"], search["c_recv"]) == (1138, 1150)
    assert after == {"kind": "PING", "c_send": 1190, "c_cpu": 1, "s_recv": 1200, "s_cpu": 0}

    table = rtl.legs(reqs)
    assert table["request leg"] == {"PING": (24 + 10) / 2, "search": 22}
    assert table["server"] == {"PING": 2, "search": 45}
    assert table["index search"] == {"search": 30}
    assert table["server, after the index search"] == {"search": 7}
    assert table["server send"] == {"PING": 7, "search": 11}
    assert table["reply leg"] == {"PING": 11, "search": 23}
    assert table["round trip"] == {"PING": 37, "search": 90}
    assert table["client"] == {"PING": 23, "search": 20}


def test_a_send_that_returns_after_the_next_request_is_its_own():
    """The server's `sendto` can return after the client, woken by it, has sent again
    (the server's core was taken meanwhile): its end belongs to the request it answered."""
    lines = [
        enter(CLIENT, 0, 1000, 44, 14),
        leave(SERVER, 1, 1010, 45, 14),
        enter(SERVER, 1, 1012, 44, 7),
        leave(CLIENT, 0, 1020, 45, 7),
        enter(CLIENT, 0, 1030, 44, 0x2A0),
        leave(SERVER, 1, 1040, 44, 7),
        leave(SERVER, 1, 1045, 45, 0x2A0),
        enter(SERVER, 1, 1080, 44, 519),
        leave(SERVER, 1, 1090, 44, 519),
    ]
    ping, search = rtl.requests(lines, CLIENT, KINDS)
    assert ping["s_sent"] == 1040
    assert (search["s_send"], search["s_sent"]) == (1080, 1090)


def test_a_reply_is_only_the_clients_after_the_server_sent():
    """The client's receive that returns before the server sent (a reply to an earlier
    request still in its buffer) is not this request's reply leg."""
    lines = [
        enter(CLIENT, 0, 1000, 44, 14),
        leave(CLIENT, 0, 1001, 45, 7),
        leave(SERVER, 1, 1010, 45, 14),
        enter(SERVER, 1, 1012, 44, 7),
        leave(CLIENT, 0, 1020, 45, 7),
    ]
    (ping,) = rtl.requests(lines, CLIENT, KINDS)
    assert ping["c_recv"] == 1020


def test_uprobe_offsets_point_at_the_functions_bytes():
    """The offset in the file holds the bytes objdump disassembles at the symbol's
    address: what a uprobe at that offset would trap."""
    binary = shoal_binary()
    symbols = subprocess.run(["nm", binary], capture_output=True, text=True,
                             check=True).stdout
    with open(binary, "rb") as f:
        for prefix in rtl.SEARCH_SYMBOLS.values():
            addr = int(next(line.split()[0] for line in symbols.splitlines()
                            if len(line.split()) == 3 and line.split()[2].startswith(prefix)),
                       16)
            dump = subprocess.run(["objdump", "-d", f"--start-address={addr:#x}",
                                   f"--stop-address={addr + 16:#x}", binary],
                                  capture_output=True, text=True, check=True).stdout
            expected = bytes(int(b, 16) for line in dump.splitlines()
                             if re.match(r"^\s+[0-9a-f]+:\t", line)
                             for b in line.split("\t")[1].split())
            assert len(expected) >= 8
            offset = rtl.file_offset(binary, prefix)
            f.seek(offset)
            assert f.read(len(expected)) == expected
