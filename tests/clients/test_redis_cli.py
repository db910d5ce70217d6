"""A smoke run with redis-cli, the tool operators reach for first."""

import shutil
import subprocess

import pytest


def cli(server, *args, stdin=None):
    return subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(server.port), *args],
        input=stdin, capture_output=True, text=True, timeout=30, check=True,
    ).stdout


@pytest.fixture(autouse=True)
def need_cli():
    if shutil.which("redis-cli") is None:
        pytest.fail("redis-cli missing: scripts/setup.sh installs redis-tools")


def test_smoke(server, r):
    assert cli(server, "PING").strip() == "PONG"
    assert cli(server, "SET", "greeting", "hello").strip() == "OK"
    assert cli(server, "GET", "greeting").strip() == "hello"
    out = cli(server, "FT.CREATE", "idx", "ON", "HASH", "PREFIX", "1", "doc:", "SCHEMA",
              "v", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32", "DIM", "2", "DISTANCE_METRIC", "L2",
              "tag", "TAG")
    assert out.strip() == "OK"
    cli(server, "HSET", "doc:1", "tag", "blue")
    out = cli(server, "FT.SEARCH", "idx", "@tag:{blue}")
    assert "doc:1" in out and "blue" in out
    assert cli(server, "FT._LIST").strip() == "idx"
    assert "search_number_of_indexes:1" in cli(server, "INFO", "search")
    # Piped commands, as operators script them.
    out = cli(server, stdin="SET a 1\nINCR a\nGET a\n")
    assert out.split() == ["OK", "2", "2"]
    assert "wrong number of arguments" in cli(server, "GET")
