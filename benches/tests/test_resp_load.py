"""`shoal-bench resp-load` against the real server: the closed-loop driver that
benches/cluster/cluster_search.py uses with `--driver rust`."""

import json
import socket
import statistics
import subprocess
import sys
import time

import pytest

from conftest import BENCHES, SUBPROCESS_TIMEOUT, shoal_bench_binary, shoal_binary

sys.path.insert(0, str(BENCHES.parent / "tests" / "clients"))
from loopback import free_port  # noqa: E402


# A bound on the CPU microseconds a request of these small indexes costs the debug
# server: loose enough for a slow VM, tight enough to catch nanoseconds taken for them.
UNIT_SLIP_US = 100_000


def encode(*args):
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def requests_file(path, requests):
    path.write_bytes(b"".join(len(r).to_bytes(4, "little") + r for r in requests))
    return path


def call(port, *args):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(encode(*args))
        return s.recv(4096)


@pytest.fixture
def server(tmp_path):
    """One `shoal dev --standalone` on a free port; yields the port."""
    port = free_port()
    log = tmp_path / "shoal.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([shoal_binary(), "dev", "--standalone", "--api", "127.0.0.1:0",
                                 "--resp", f"127.0.0.1:{port}"],
                                stdout=out, stderr=out, stdin=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while b"listening" not in log.read_bytes():
            assert proc.poll() is None, log.read_text(errors="replace")
            assert time.time() < deadline, "shoal did not start"
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def resp_load(*args):
    return subprocess.run([str(a) for a in (shoal_bench_binary(), "resp-load", *args)],
                          capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)


def test_every_planned_request_is_sent_once_and_timed(server, tmp_path):
    """4 connections share 50 measured requests, each after one unmeasured request of
    its own: 50 latencies come back, and the counter the INCRBYs raise ends at 27."""
    reqs = requests_file(tmp_path / "reqs", [encode("INCRBY", "n", 1), encode("PING")])
    # Request j is file entry j % 2: the INCRBYs are the even ones, 25 of the 50
    # measured; each connection's unmeasured first request is its own first entry
    # (connections 0 and 2 start on an INCRBY, 1 and 3 on a PING).
    out = resp_load("--addr", f"127.0.0.1:{server}", "--requests-file", reqs,
                    "--clients", 4, "--requests", 50)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert len(report["latencies_us"]) == 50
    assert all(x > 0 for x in report["latencies_us"])
    assert report["seconds"] >= max(report["latencies_us"]) / 1e6
    # Each request is also timed until its reply reached the socket, which is before
    # the driver read it: never longer than the same request's full latency, in order.
    # (Both are read from clocks a few hundred ns apart: the slack covers that.)
    arrival = report["arrival_latencies_us"]
    assert len(arrival) == 50
    assert all(0 < a <= x + 5 for a, x in zip(arrival, report["latencies_us"]))
    assert report["cpu_seconds"] >= 0
    # The driver's run-queue wait, read from its one thread over the same window: never
    # negative, never longer than the window (its reads bracket it within a few ms).
    assert 0 <= report["wait_seconds"] <= report["seconds"] + 0.5
    assert call(server, "GET", "n") == b"$2\r\n27\r\n"


def test_an_error_reply_fails_the_run(server, tmp_path):
    """A request the server refuses is not timed as if it were answered."""
    reqs = requests_file(tmp_path / "reqs", [encode("NOSUCHCOMMAND", "x")])
    out = resp_load("--addr", f"127.0.0.1:{server}", "--requests-file", reqs,
                    "--clients", 2, "--requests", 4)
    assert out.returncode != 0
    assert "error reply" in out.stderr and "unknown command" in out.stderr
    assert call(server, "PING") == b"+PONG\r\n"


def test_paired_latency_measures_both_servers_in_turns(dataset, tmp_path):
    """benches/resp/paired_latency.py starts two standalone servers (here one binary
    twice), ingests the dataset into each and times FT.SEARCH on both in alternating
    rounds: every round gives each server a positive p50, a positive ratio, and the
    server CPU each pass took."""
    out = tmp_path / "paired.json"
    run = subprocess.run(
        [sys.executable, str(BENCHES / "resp" / "paired_latency.py"),
         "--a", f"x={shoal_binary()}", "--b", f"y={shoal_binary()}",
         "--data", str(dataset), "--rounds", "3", "--json", str(out)],
        capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    assert set(result["rounds"]) == {"x", "y"}
    for rows in result["rounds"].values():
        assert all(len(v) == 3 for v in rows.values())
        assert all(p > 0 for p in rows["search_p50_us"] + rows["ping_p50_us"])
        # A PING and a search cost the server CPU, in microseconds: under a tenth of a
        # second even for this debug build on a slow VM (CI saw 1,146 µs), where a slip
        # to nanoseconds would be a thousand times off.
        assert all(0 < c < UNIT_SLIP_US for c in rows["server_cpu_us_per_pair"])
    assert len(result["a_over_b"]) == 3 and all(r > 0 for r in result["a_over_b"])
    assert len(result["a_minus_b_cpu_us"]) == 3
    assert "over y's: median" in run.stdout
    assert "x's server CPU per pair minus y's" in run.stdout


def test_paired_latency_pipelined_prices_each_server_s_cpu_per_search(dataset, tmp_path):
    """`--pipelined` sends each server all the searches in one write per round: every
    round gives each server a positive CPU and wall time per search, and the paired
    difference is reported."""
    out = tmp_path / "pipelined.json"
    run = subprocess.run(
        [sys.executable, str(BENCHES / "resp" / "paired_latency.py"),
         "--a", f"x={shoal_binary()}", "--b", f"y={shoal_binary()}",
         "--data", str(dataset), "--rounds", "2", "--pipelined", "--json", str(out)],
        capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    for rows in result["pipelined"].values():
        assert len(rows["server_cpu_us_per_search"]) == 2
        assert all(0 < c < UNIT_SLIP_US for c in rows["server_cpu_us_per_search"])
        assert all(w > 0 for w in rows["wall_us_per_search"])
    assert len(result["a_minus_b_cpu_us"]) == 2
    assert "x's server CPU per search minus y's" in run.stdout


def test_fixed_cost_times_a_search_without_a_walk(dataset, tmp_path):
    """benches/resp/fixed_cost.py searches a FLAT index of a few documents right after
    PINGs, ECHOs 500 bytes the same way, and parses the recorded reply with hiredis: each
    figure is positive, and the 10-hit reply takes hiredis longer than `+PONG`."""
    out = tmp_path / "fixed.json"
    run = subprocess.run(
        [sys.executable, str(BENCHES / "resp" / "fixed_cost.py"), "--shoal", shoal_binary(),
         "--data", str(dataset), "--docs", "12", "--passes", "2", "--json", str(out)],
        capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    assert result["docs"] == 12
    assert all(len(v) == 2 for v in result["passes"].values())
    assert all(p > 0 for p in result["passes"]["ping_p50_us"])
    assert result["allowance_us"] == [0.3 * p for p in result["passes"]["ping_p50_us"]]
    client = result["client"]
    assert client["reply_bytes"] > 200
    assert client["search_reply_parse_us"] > client["pong_parse_us"] > 0
    assert "FLAT docs) over PING" in run.stdout


def test_search_ingest_pairs_the_in_process_p50_with_each_round(dataset, tmp_path):
    """benches/resp/search_ingest.py asks one `shoal-bench ann --serve` for the in-process
    p50 before every round through the server, and again after it with the walks spaced
    as that round's searches were: every round has its own positive figures, the bars
    are the medians of the rounds' in-process p50s plus 1.3 x PING, and each round's
    margins are its search p50 minus its own bars."""
    out = tmp_path / "search_ingest.json"
    run = subprocess.run(
        [sys.executable, str(BENCHES / "resp" / "search_ingest.py"), "--shoal", shoal_binary(),
         "--bench", str(shoal_bench_binary()), "--data", str(dataset), "--rounds", "3",
         "--json", str(out)],
        capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    rounds = result["rounds"]
    assert all(len(v) == 3 for v in rounds.values())
    assert all(x > 0 for x in rounds["inprocess_p50_us"] + rounds["ping_p50_us"]
               + rounds["search_p50_us"])
    # Each bar: the median of its in-process term over the rounds plus 1.3 x PING, and
    # each round's margin against its own.
    for term, key, bar, margin, met in (
            ("inprocess_p50_us", "inprocess_p50_us_ef20", "latency_bar_us",
             "round_margin_us", "rounds_met"),
            ("spaced_inprocess_p50_us", "spaced_inprocess_p50_us_ef20",
             "spaced_latency_bar_us", "spaced_round_margin_us", "spaced_rounds_met")):
        assert all(x > 0 for x in rounds[term])
        assert result[key] == statistics.median(rounds[term])
        assert result[bar] == pytest.approx(result[key] + 1.3 * result["ping_p50_us"])
        margins = [s - (i + 1.3 * p) for i, p, s in zip(
            rounds[term], rounds["ping_p50_us"], rounds["search_p50_us"])]
        assert result[margin] == pytest.approx(margins)
        assert result[met] == sum(m <= 0 for m in margins)
    assert "each round against its own bar" in run.stdout
    # The spaced walks: each round asked for its own median gap between a search's
    # reply and the next search, which is at least a round trip, and got that much.
    for gap, away in zip(rounds["search_gap_p50_us"], rounds["spaced_gap_mean_us"]):
        assert gap > 0
        assert away >= max(1, round(gap)) * 0.99
    assert "spaced as the server's searches" in run.stdout


def test_cluster_search_rows_carry_the_latency_at_the_socket(server):
    """cluster_search.load with the Rust driver: a row's p50 and p99 until the replies
    reached the driver's socket sit at or under the same row's p50 and p99, and the
    report prints them beside the driver's."""
    import argparse

    sys.path.insert(0, str(BENCHES / "cluster"))
    import cluster_search as cs

    args = argparse.Namespace(driver="rust", bench=shoal_bench_binary(), requests=200,
                              warmup=0.0, client_rt=False)
    row = cs.load(args, [server], [encode("PING"), encode("ECHO", "x" * 500)], 4, False,
                  [], probe=False)
    assert 0 < row["arrival_p50_ms"] <= row["p50_ms"] + 0.005
    assert 0 < row["arrival_p99_ms"] <= row["p99_ms"] + 0.005
    assert cs.at_socket(row) == f"{row['arrival_p99_ms']:.3f}"
    assert cs.at_socket({"p99_ms": 1.0}) == "—"


def test_paired_range_gives_each_server_recall_and_cpu(dataset, tmp_path):
    """benches/resp/paired_range.py: both servers (one binary twice) find documents
    within each radius, none beyond it, and each round prices each server's CPU."""
    out = tmp_path / "range.json"
    run = subprocess.run(
        [sys.executable, str(BENCHES / "resp" / "paired_range.py"),
         "--a", f"x={shoal_binary()}", "--b", f"y={shoal_binary()}",
         "--data", str(dataset), "--queries", "20", "--ranks", "5,20", "--rounds", "2",
         "--json", str(out)],
        capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    assert set(result["ranks"]) == {"5", "20"}
    for rows in result["ranks"].values():
        assert set(rows) == {"x", "y"}
        for row in rows.values():
            assert 0.5 < row["recall"] <= 1.0
            assert row["beyond"] == 0
            assert len(row["cpu_us"]) == 2 and all(0 < c < UNIT_SLIP_US for c in row["cpu_us"])
    assert "| 20 | y |" in run.stdout
