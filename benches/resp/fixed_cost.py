#!/usr/bin/env python3
"""What an FT.SEARCH round trip costs besides its walk, against issue #3's allowance.

Usage: python benches/resp/fixed_cost.py --shoal SHOAL_BIN --data DIR
           [--docs 10] [--passes 6] [--json OUT]

Why: issue #3's bar allows a search the in-process walk plus 0.3 x PING over the PING
round trip (search_ingest.py). Here the walk is taken away: a `shoal dev --standalone`
gets a FLAT index of `--docs` documents (a scan of about a microsecond) and is asked
search_ingest.py's FT.SEARCH, same request and reply shape (KNN 10, RETURN
__vec_score), each right after a PING. An ECHO of 500 bytes, the request's size with a
one-string reply, is timed the same way. What is left over the PING is what every
search pays: parsing, the engine's fixed work, the reply, the client's parse of it. The
client's part is measured alone too: hiredis parsing the recorded reply against `+PONG`.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import hiredis

from search_ingest import Conn, encode, latencies, load_vectors, start


def parse_us(reply: bytes, times: int = 20000) -> float:
    """Microseconds for hiredis to parse `reply`, as the benchmark's client does."""
    t0 = time.perf_counter_ns()
    for _ in range(times):
        reader = hiredis.Reader()
        reader.feed(reply)
        reader.gets()
    return (time.perf_counter_ns() - t0) / times / 1000


def raw_reply(conn: Conn, payload: bytes) -> bytes:
    """The bytes of one reply, as they come off the socket."""
    conn.sock.sendall(payload)
    raw = b""
    while True:
        raw += conn.sock.recv(1 << 16)
        reader = hiredis.Reader()
        reader.feed(raw)
        if reader.gets() is not False:
            return raw


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shoal", required=True, help="shoal binary")
    ap.add_argument("--data", type=Path, required=True, help="dataset directory (make bench-ann's)")
    ap.add_argument("--docs", type=int, default=10, help="documents in the FLAT index")
    ap.add_argument("--passes", type=int, default=6, help="passes over the queries")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    base = load_vectors(args.data / "base.fvecs")[: args.docs]
    queries = load_vectors(args.data / "queries.fvecs")
    proc, port = start(args.shoal)
    try:
        conn = Conn(port)
        conn.call(encode("FT.CREATE", "tiny", "ON", "HASH", "PREFIX", "1", "t:", "SCHEMA",
                         "vec", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32", "DIM", base.shape[1],
                         "DISTANCE_METRIC", "L2"))
        for i, v in enumerate(base):
            conn.call(encode("HSET", f"t:{i}", "vec", v.tobytes()))
        searches = [encode("FT.SEARCH", "tiny", "*=>[KNN 10 @vec $q EF_RUNTIME 20]", "PARAMS",
                           "2", "q", q.tobytes(), "RETURN", "1", "__vec_score", "DIALECT", "2")
                    for q in queries]
        echoes = [encode("ECHO", (q.tobytes() * (500 // q.nbytes + 1))[:500]) for q in queries]
        # Every document indexed before timing (FLAT indexes on write, but be sure).
        hits = conn.call(searches[0])[0]
        if hits != min(10, len(base)):
            raise RuntimeError(f"the FLAT index answered {hits} hits")
        latencies(conn, searches, 1)
        rows = {"ping_p50_us": [], "search_over_ping_p50_us": [], "echo_over_ping_p50_us": []}
        for _ in range(args.passes):
            ping, search = latencies(conn, searches, 1)
            ping2, echo = latencies(conn, echoes, 1)
            rows["ping_p50_us"].append(statistics.median(ping))
            rows["search_over_ping_p50_us"].append(
                statistics.median(s - p for p, s in zip(ping, search)))
            rows["echo_over_ping_p50_us"].append(
                statistics.median(e - p for p, e in zip(ping2, echo)))
        reply = raw_reply(conn, searches[0])
        client = {"reply_bytes": len(reply), "search_reply_parse_us": parse_us(reply),
                  "pong_parse_us": parse_us(b"+PONG\r\n")}
        conn.sock.close()
    finally:
        proc.terminate()
        proc.wait(timeout=60)

    allowance = [0.3 * p for p in rows["ping_p50_us"]]
    print(f"| {args.passes} passes | median | range |")
    print("|---|---:|---:|")
    for key, label in (("ping_p50_us", "PING p50, us"),
                       ("search_over_ping_p50_us", f"FT.SEARCH ({len(base)} FLAT docs) over PING, us"),
                       ("echo_over_ping_p50_us", "ECHO of 500 bytes over PING, us")):
        print(f"| {label} | {statistics.median(rows[key]):.1f} | "
              f"{min(rows[key]):.1f}-{max(rows[key]):.1f} |")
    print(f"| the bar's allowance, 0.3 x PING, us | {statistics.median(allowance):.1f} | "
          f"{min(allowance):.1f}-{max(allowance):.1f} |")
    print(f"\nhiredis parse: the {client['reply_bytes']}-byte reply "
          f"{client['search_reply_parse_us']:.2f} us, +PONG {client['pong_parse_us']:.2f} us")
    if args.json:
        args.json.write_text(json.dumps({"docs": len(base), "passes": rows,
                                         "allowance_us": allowance, "client": client},
                                        indent=2))


if __name__ == "__main__":
    main()
