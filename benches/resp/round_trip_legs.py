#!/usr/bin/env python3
"""Where a round trip's microseconds go, leg by leg, from the kernel's own clock.

Usage (root: it writes to tracefs):
    python benches/resp/round_trip_legs.py --shoal SHOAL_BIN --data DIR
        [--flat-docs N] [--cycles 1000] [--probe] [--json OUT]

Why: issue #3's bar compares a search's round trip with a PING's (search_ingest.py), and
the client alone sees only their totals. Here one client sends, in turn, a PING, the
benchmark's FT.SEARCH (KNN 10 ef 20, RETURN __vec_score) and the same search with
`NOCONTENT LIMIT 0 0` on another query (a walk, a reply of a few bytes), while ftrace
records both processes' `sendto` and `recvfrom`. Each request is cut into legs:

  request leg      client `sendto` entered -> the server's `recvfrom` returned it
  server           that return -> the server's `sendto` entered (with --probe also split
                   at the entry and return of the index search, a uprobe each)
  server send      the server's `sendto`, entered -> returned
  reply leg        the server's `sendto` entered -> the client's `recvfrom` returned
  client           that return -> the client's next `sendto` (its parse, its clock)

and the medians are printed per kind with their difference from the PING's. The short
search answers whether a reply leg costs more because of the reply or because the client
waited longer for it: its reply is the size of a PING's, its wait the size of a search's.
A uprobe costs 1-2 us a hit on the benchmark VM (docs/benchmarks.md,
session 57); compare spans measured with and without --probe, not across.
"""

import argparse
import json
import os
import re
import statistics
import struct
import subprocess
import sys
from pathlib import Path

from search_ingest import Conn, encode, ingest, load_vectors, start, timed

TRACEFS = Path("/sys/kernel/tracing")
SENDTO, RECVFROM = 44, 45  # x86_64
LINE = re.compile(r"^\s*(?P<comm>.+?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+\S+\s+"
                  r"(?P<ts>\d+\.\d+): (?P<event>\w+): (?P<rest>.*)$")
SPANS = [
    ("request leg", "c_send", "s_recv"),
    ("server", "s_recv", "s_send"),
    ("server, before the index search", "s_recv", "walk_in"),
    ("index search", "walk_in", "walk_out"),
    ("server, after the index search", "walk_out", "s_send"),
    ("server send", "s_send", "s_sent"),
    ("reply leg", "s_send", "c_recv"),
    ("round trip", "c_send", "c_recv"),
    ("client", "c_recv", "next"),
]
SEARCH_SYMBOLS = {
    "hnsw": "_ZN11shoal_index4hnsw9HnswIndex13search_within",
    "flat": "_ZN73_$LT$shoal_index..flat..FlatIndex$u20$as$u20$shoal_index..VectorIndex$GT$6search17",
}


def syscall(rest):
    """`NR 44 (4, 7f.., 2a0, ...)` -> (44, [args]) for sys_enter, `NR 44 = 672` -> (44, 672)."""
    nr, _, tail = rest[3:].partition(" ")
    if tail.startswith("= "):
        return int(nr), int(tail[2:])
    return int(nr), [int(a, 16) for a in tail.strip("()").split(", ")]


def micros(ts):
    """ftrace's `seconds.fraction` in microseconds, exact (µs digits with `mono`, ns
    with some other clocks)."""
    seconds, _, fraction = ts.partition(".")
    return int(seconds) * 1_000_000 + int(fraction) * 10 ** 6 / 10 ** len(fraction)


def requests(lines, client_pid, kinds):
    """The client's requests in order, each a dict of event times in microseconds.

    `kinds` maps a request's byte length to its name; sends of other lengths are not
    requests of the run. A server event belongs to the latest request sent before it,
    and only its first of each sort counts (the server's `recvfrom` returning EAGAIN
    before it parks is skipped)."""
    out, cur = [], None
    for line in lines:
        m = LINE.match(line)
        if m is None:
            continue
        pid, t, event, rest = int(m["pid"]), micros(m["ts"]), m["event"], m["rest"]
        client = pid == client_pid
        if event in ("sys_enter", "sys_exit"):
            nr, val = syscall(rest)
            if client and event == "sys_enter" and nr == SENDTO:
                if cur is not None:
                    cur["next"] = t
                kind = kinds.get(val[2])
                cur = None if kind is None else {"kind": kind, "c_send": t,
                                                 "c_cpu": int(m["cpu"])}
                if cur is not None:
                    out.append(cur)
                continue
            if not client and event == "sys_exit" and nr == SENDTO:
                # The send being left is the one entered last (one connection, one task);
                # it can return after the client has sent its next request.
                for r in reversed(out[-2:]):
                    if "s_send" in r and "s_sent" not in r:
                        r["s_sent"] = t
                        break
                continue
            if cur is None:
                continue
            if not client and event == "sys_exit" and nr == RECVFROM and val > 0:
                cur.setdefault("s_recv", t)
                cur.setdefault("s_cpu", int(m["cpu"]))
            elif not client and event == "sys_enter" and nr == SENDTO and "s_recv" in cur:
                cur.setdefault("s_send", t)
            elif client and event == "sys_exit" and nr == RECVFROM and val > 0 and "s_send" in cur:
                cur.setdefault("c_recv", t)
        elif cur is not None and not client and event in ("walk_in", "walk_out"):
            cur.setdefault(event, t)
    return out


def legs(reqs):
    """Median of each span by kind, over the requests that have both ends."""
    table = {}
    for name, a, b in SPANS:
        row = {}
        for r in reqs:
            if a in r and b in r:
                row.setdefault(r["kind"], []).append(r[b] - r[a])
        if row:
            table[name] = {k: statistics.median(v) for k, v in row.items()}
    return table


def file_offset(binary, prefix):
    """The file offset of the first symbol starting with `prefix`, as uprobes want it:
    its address moved from its loadable segment's addresses to the segment's bytes."""
    symbols = subprocess.run(["nm", str(binary)], capture_output=True, text=True,
                             check=True).stdout.split("\n")
    addr = next((int(s.split()[0], 16) for s in symbols
                 if len(s.split()) == 3 and s.split()[2].startswith(prefix)), None)
    if addr is None:
        raise SystemExit(f"{binary}: no symbol {prefix}*")
    with open(binary, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            raise SystemExit(f"{binary}: not a 64-bit ELF file")
        phoff, = struct.unpack_from("<Q", head, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    for i in range(phnum):
        p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from(
            "<IIQQQQ", table, i * phentsize)
        if p_type == 1 and p_vaddr <= addr < p_vaddr + p_filesz:
            return addr - p_vaddr + p_offset
    raise SystemExit(f"{binary}: {prefix} is in no loadable segment")


class Trace:
    """ftrace on the given threads while in the `with` block: the two syscalls, and
    uprobes at the index search if asked. Leaves tracefs as it found it (its buffer size,
    clock and other uprobes), also when setting up fails; the record is in `lines`."""

    EVENTS = ("raw_syscalls/sys_enter", "raw_syscalls/sys_exit")
    PROBES = ("walk_in", "walk_out")

    def __init__(self, pids, probe=None):
        self.pids, self.probe, self.lines = pids, probe, []
        self.saved = {}

    @staticmethod
    def write(name, text, append=False):
        """One write(2) of `text`. Truncating `uprobe_events` removes every uprobe on the
        machine, so ours are added and removed by appending; and Python's append mode
        seeks to the end, which tracefs refuses."""
        flags = os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC)
        fd = os.open(TRACEFS / name, flags)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    @staticmethod
    def read(name):
        return (TRACEFS / name).read_text()

    def __enter__(self):
        if not (TRACEFS / "tracing_on").exists():
            subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACEFS)], check=True)
        # `trace_clock` lists them all with the current one in brackets.
        self.saved = {"buffer_size_kb": self.read("buffer_size_kb").split()[0],
                      "trace_clock": re.search(r"\[(\w+)\]", self.read("trace_clock"))[1]}
        try:
            self.write("tracing_on", "0")
            self.write("buffer_size_kb", "65536")
            self.write("trace_clock", "mono")
            self.write("trace", "")
            self.write("set_event_pid", " ".join(map(str, self.pids)))
            # Only what the legs are cut at: every traced event adds to the spans.
            only = f"id == {SENDTO} || id == {RECVFROM}"
            for event in self.EVENTS:
                self.write(f"events/{event}/filter", only)
                self.write(f"events/{event}/enable", "1")
            if self.probe:
                binary, offset = self.probe
                self.remove_probes()
                self.write("uprobe_events", f"p:walk_in {binary}:0x{offset:x}\n"
                                            f"r:walk_out {binary}:0x{offset:x}\n", append=True)
                for name in self.PROBES:
                    self.write(f"events/uprobes/{name}/enable", "1")
            self.write("tracing_on", "1")
        except BaseException:
            self.restore()
            raise
        return self

    def __exit__(self, *exc):
        try:
            self.write("tracing_on", "0")
            # Read before the uprobes go: removing a dynamic event empties the buffer.
            self.lines = self.read("trace").splitlines()
        finally:
            self.restore()

    def remove_probes(self):
        for name in self.PROBES:
            if (TRACEFS / "events" / "uprobes" / name).exists():
                self.write(f"events/uprobes/{name}/enable", "0")
                self.write("uprobe_events", f"-:{name}\n", append=True)

    def restore(self):
        """Undoes `__enter__` step by step; a step that fails does not keep the others
        from running."""
        steps = [lambda: self.write("tracing_on", "0")]
        for event in self.EVENTS:
            steps.append(lambda e=event: self.write(f"events/{e}/enable", "0"))
            steps.append(lambda e=event: self.write(f"events/{e}/filter", "0"))
        steps.append(self.remove_probes)
        steps.append(lambda: self.write("set_event_pid", ""))
        steps.append(lambda: self.write("trace", ""))
        steps += [lambda k=k, v=v: self.write(k, v) for k, v in self.saved.items()]
        failed = None
        for step in steps:
            try:
                step()
            except OSError as e:
                failed = failed or e
        if failed is not None:
            print(f"round_trip_legs: tracefs not fully restored: {failed}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shoal", required=True, help="release shoal binary")
    ap.add_argument("--data", required=True, help="dataset directory (make bench-ann's)")
    ap.add_argument("--flat-docs", type=int, default=0,
                    help="a FLAT index of the first N base vectors instead of the "
                         "benchmark's HNSW index of them all (fixed_cost.py uses 10)")
    ap.add_argument("--cycles", type=int, default=1000,
                    help="PING, search, short search: this many of each [1000]")
    ap.add_argument("--probe", action="store_true",
                    help="uprobes at the index search's entry and return")
    ap.add_argument("--json")
    args = ap.parse_args()
    if os.geteuid() != 0:
        ap.error("tracefs needs root")
    data = Path(args.data)
    base = load_vectors(data / "base.fvecs")
    algo = "flat" if args.flat_docs > 0 else "hnsw"
    if algo == "flat":
        base = base[:args.flat_docs]
    queries = load_vectors(data / "queries.fvecs")
    proc, port = start(args.shoal)
    try:
        conn = Conn(port)
        if algo == "hnsw":
            ingest(conn, base)
        else:
            conn.call(encode("FT.CREATE", "idx", "ON", "HASH", "PREFIX", "1", "v:", "SCHEMA",
                             "vec", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32", "DIM",
                             base.shape[1], "DISTANCE_METRIC", "L2"))
            for i, v in enumerate(base):
                conn.call(encode("HSET", f"v:{i}", "vec", v.tobytes()))
        knn = "*=>[KNN 10 @vec $q EF_RUNTIME 20]"
        full = [encode("FT.SEARCH", "idx", knn, "PARAMS", "2", "q", q.tobytes(), "RETURN",
                       "1", "__vec_score", "DIALECT", "2") for q in queries]
        short = [encode("FT.SEARCH", "idx", knn, "PARAMS", "2", "q", q.tobytes(),
                        "NOCONTENT", "LIMIT", "0", "0", "DIALECT", "2") for q in queries]
        ping = encode("PING")
        kinds = {len(ping): "PING", len(full[0]): "search", len(short[0]): "short search"}
        if len(kinds) != 3:
            raise SystemExit("the three requests must differ in length")
        # The short search walks another query: right after the same query's walk it
        # would find that walk's lines in the caches (29 against 45 µs, session 57).
        half = len(queries) // 2
        cycle = [(ping, full[i % len(full)], short[(i + half) % len(short)])
                 for i in range(args.cycles)]
        for requests_ in cycle[:200]:  # warm-up, untraced
            for r in requests_:
                timed(conn, r)
        tids = [int(t) for t in os.listdir(f"/proc/{proc.pid}/task")]
        probe = (Path(args.shoal).resolve(), file_offset(args.shoal, SEARCH_SYMBOLS[algo])) \
            if args.probe else None
        client = {k: [] for k in kinds.values()}
        with Trace(tids + [os.getpid()], probe) as trace:
            for requests_ in cycle:
                for r, kind in zip(requests_, ("PING", "search", "short search")):
                    client[kind].append(timed(conn, r))
        reqs = requests(trace.lines, os.getpid(), kinds)
        if len(reqs) != 3 * args.cycles:
            print(f"round_trip_legs: {len(reqs)} requests in the record, {3 * args.cycles} "
                  "sent (events lost, or a record format this parser does not know)",
                  file=sys.stderr)
    finally:
        proc.terminate()
        proc.wait(timeout=60)

    table = legs(reqs)
    order = ["PING", "search", "short search"]
    print(f"{algo}, {len(base)} documents, {args.cycles} cycles"
          f"{', uprobes on the index search' if probe else ''}")
    print("| span, p50 µs | " + " | ".join(order) + " | search − PING | short − PING |")
    print("|---|" + "---:|" * 5)
    for name, row in table.items():
        cells = [f"{row[k]:.1f}" if k in row else "" for k in order]
        diffs = [f"{row[k] - row['PING']:+.1f}" if k in row and "PING" in row else ""
                 for k in ("search", "short search")]
        print(f"| {name} | " + " | ".join(cells + diffs) + " |")
    print("| client's own clock, round trip | " + " | ".join(
        f"{statistics.median(client[k]):.1f}" for k in order) + " | | |")
    apart = sum(1 for r in reqs if "s_cpu" in r and r["s_cpu"] != r["c_cpu"])
    print(f"server and client on different vCPUs for {apart} of {len(reqs)} requests")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "algo": algo, "docs": len(base), "cycles": args.cycles, "probe": bool(probe),
            "legs_p50_us": table,
            "client_p50_us": {k: statistics.median(v) for k, v in client.items()},
            "apart": apart, "requests": len(reqs)}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
