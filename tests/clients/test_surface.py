"""The rest of the command surface a MemoryDB user reaches: COMMAND's introspection, every
field SPEC.md lists for INFO SEARCH and FT.INFO, the JSON commands besides SET/DEL, TAG
options through FT.CREATE, TOLIST, and VECTOR_RANGE's attributes.

Each test provokes the behaviour through redis-py and checks values, not just presence,
so a field that is listed but wrong fails.
"""

import json
import socket

import numpy as np
import pytest
from redis.commands.search import reducers
from redis.commands.search.aggregation import AggregateRequest
from redis.commands.search.query import Query

from conftest import wait_for, wait_ready


def vec(*xs):
    return np.array(xs, dtype=np.float32).tobytes()


def text(value):
    return value.decode() if isinstance(value, bytes) else value


def flat(pairs):
    """A key/value reply, a RESP2 array or a RESP3 map, as a dict with str keys."""
    if isinstance(pairs, dict):
        return {text(k): v for k, v in pairs.items()}
    return {text(k): v for k, v in zip(pairs[::2], pairs[1::2])}


# --- COMMAND ---------------------------------------------------------------------------


def command_info(entries):
    """COMMAND INFO's entries (Redis 7 layout) by lower-case name."""
    out = {}
    for e in entries:
        out[text(e[0]).lower()] = {
            "arity": e[1], "flags": {text(f) for f in e[2]}, "first_key_pos": e[3],
            "acl_categories": {text(c) for c in e[6]},
        }
    return out


def test_command_info_reports_arity_flags_and_the_search_category(server):
    r = server.client(protocol=2)
    assert r.execute_command("COMMAND COUNT") >= 40
    raw = r.execute_command("COMMAND INFO", "FT.SEARCH", "GET", "HSET", "NOSUCH")
    # One entry per name asked, in order; an unknown one is nil.
    assert len(raw) == 4 and raw[3] is None
    infos = command_info(raw[:3])
    assert set(infos) == {"ft.search", "get", "hset"}
    search, get, hset = infos["ft.search"], infos["get"], infos["hset"]
    # Arity as Redis reports it: negative is "at least".
    assert search["arity"] == -3
    assert get["arity"] == 2
    assert hset["arity"] == -4
    assert "readonly" in search["flags"]
    assert "write" in hset["flags"]
    assert "readonly" in get["flags"] and "write" not in get["flags"]
    assert "@search" in search["acl_categories"]
    assert "@search" not in get["acl_categories"]
    assert "@read" in get["acl_categories"]
    # First key position: GET's key is its first argument, FT.SEARCH names no key.
    assert get["first_key_pos"] == 1 and search["first_key_pos"] == 0


def test_every_ft_command_is_listed_in_the_search_category(server):
    r = server.client(protocol=2)
    names = {text(n).lower() for n in r.execute_command("COMMAND LIST")}
    ft = sorted(n for n in names if n.startswith("ft."))
    assert {"ft.create", "ft.search", "ft.info", "ft.dropindex", "ft._list",
            "ft.aggregate"} <= set(ft)
    infos = command_info(r.execute_command("COMMAND INFO", *ft))
    for name in ft:
        assert "@search" in infos[name]["acl_categories"], name


def test_command_docs_describes_ft_search(server):
    r = server.client(protocol=2)
    docs = flat(r.execute_command("COMMAND DOCS", "FT.SEARCH"))
    assert set(docs) == {"ft.search"}
    entry = flat(docs["ft.search"])
    assert text(entry["group"]) == "search"
    assert "search" in text(entry["summary"]).lower() or "query" in text(entry["summary"]).lower()


# --- INFO SEARCH and FT.INFO ------------------------------------------------------------


def info_text(r, section):
    """INFO <section> as the server sends it, read off a socket of r's server."""
    kwargs = r.connection_pool.connection_kwargs
    with socket.create_connection((kwargs["host"], kwargs["port"])) as s:
        s.sendall(b"*2\r\n$4\r\nINFO\r\n$%d\r\n%s\r\n" % (len(section), section.encode()))
        data = b""
        while b"\r\n" not in data:
            data += s.recv(65536)
        assert data.startswith(b"$"), data[:80]
        header, _, body = data.partition(b"\r\n")
        length = int(header[1:])
        while len(body) < length:
            body += s.recv(65536)
    return body[:length].decode()


SEARCH_SECTIONS = {
    "search_memory": ["search_used_memory_bytes", "search_used_memory_human"],
    "search_index_stats": ["search_number_of_indexes", "search_num_vector_indexes",
                           "search_num_hash_indexes", "search_num_json_indexes",
                           "search_total_indexed_keys", "search_total_indexed_vector",
                           "search_total_index_size", "search_max_index_lag_ms"],
    "search_ingestion": ["search_background_indexing_status", "search_ingestion_paused"],
    "search_backfill": ["search_num_active_backfills",
                        "search_current_backfill_progress_percentage"],
    "search_query": ["search_num_active_queries"],
}


def test_info_search_has_every_section_and_field_and_counts_what_is_indexed(r):
    r.execute_command("FT.CREATE", "h", "ON", "HASH", "PREFIX", "1", "h:", "SCHEMA",
                      "v", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32", "DIM", "2",
                      "DISTANCE_METRIC", "L2", "t", "TAG")
    r.execute_command("FT.CREATE", "tags", "ON", "HASH", "PREFIX", "1", "h:", "SCHEMA",
                      "t", "TAG")
    r.execute_command("FT.CREATE", "j", "ON", "JSON", "PREFIX", "1", "j:", "SCHEMA",
                      "$.v", "AS", "v", "VECTOR", "HNSW", "6", "TYPE", "FLOAT32", "DIM", "2",
                      "DISTANCE_METRIC", "L2")
    for i in range(30):
        r.hset(f"h:{i}", mapping={"v": vec(i, i), "t": "a"})
    for i in range(7):
        r.execute_command("JSON.SET", f"j:{i}", "$", json.dumps({"v": [i, 0]}))
    for name in ("h", "tags", "j"):
        wait_ready(r, name)

    # Read as the text the server sends: redis-py would flatten the sections away.
    raw = info_text(r, "SEARCH")
    sections, section = {}, None
    for line in raw.splitlines():
        if line.startswith("# "):
            section = line[2:].strip()
            sections[section] = {}
        elif ":" in line:
            key, value = line.split(":", 1)
            sections[section][key] = value
    for name, fields in SEARCH_SECTIONS.items():
        assert name in sections, (name, list(sections))
        for field in fields:
            assert field in sections[name], (name, field)
    stats = sections["search_index_stats"]
    assert int(stats["search_number_of_indexes"]) == 3
    assert int(stats["search_num_vector_indexes"]) == 2
    assert int(stats["search_num_hash_indexes"]) == 2
    assert int(stats["search_num_json_indexes"]) == 1
    assert int(stats["search_total_indexed_vector"]) == 37
    # Every index counts its documents: 30 + 30 + 7.
    assert int(stats["search_total_indexed_keys"]) == 67
    assert int(stats["search_total_index_size"]) > 37 * 2 * 4
    assert int(sections["search_memory"]["search_used_memory_bytes"]) > 0
    assert sections["search_memory"]["search_used_memory_human"][-1] in "BKMG"
    assert int(sections["search_backfill"]["search_num_active_backfills"]) == 0
    assert int(sections["search_query"]["search_num_active_queries"]) == 0
    assert sections["search_ingestion"]["search_ingestion_paused"] in ("no", "0")


def test_ft_info_has_every_field_spec_lists_with_the_index_s_values(r):
    r.execute_command("FT.CREATE", "fi", "ON", "HASH", "PREFIX", "2", "a:", "b:", "SCHEMA",
                      "v", "VECTOR", "HNSW", "10", "TYPE", "FLOAT32", "DIM", "4",
                      "DISTANCE_METRIC", "COSINE", "M", "8", "EF_CONSTRUCTION", "50",
                      "t", "TAG", "n", "NUMERIC")
    for i in range(5):
        r.hset(f"a:{i}", mapping={"v": vec(1, i, 0, 0), "t": "x", "n": i})
    r.hset("b:bad", mapping={"v": vec(1, 2), "t": "y"})  # wrong size: a failure
    wait_ready(r, "fi")
    info = flat(r.execute_command("FT.INFO", "fi"))
    assert text(info["index_name"]) == "fi"
    definition = flat(info["index_definition"])
    assert text(definition["key_type"]) == "HASH"
    assert [text(p) for p in definition["prefixes"]] == ["a:", "b:"]
    assert float(definition["default_score"]) == 1.0
    attributes = [flat(a) for a in info["attributes"]]
    by_name = {text(a["identifier"]): a for a in attributes}
    assert set(by_name) == {"v", "t", "n"}
    assert text(by_name["t"]["type"]) == "TAG" and text(by_name["n"]["type"]) == "NUMERIC"
    v = by_name["v"]
    assert text(v["type"]) == "VECTOR" and text(v["attribute"]) == "v"
    index = flat(v["index"])
    assert int(index["dimensions"]) == 4
    assert text(index["distance_metric"]) == "COSINE"
    assert text(index["data_type"]) == "FLOAT32"
    assert int(index["size"]) == 5
    assert int(index["capacity"]) >= 5
    algorithm = flat(index["algorithm"])
    assert text(algorithm["name"]) == "HNSW"
    assert int(algorithm["m"]) == 8
    assert int(algorithm["ef_construction"]) == 50
    assert int(algorithm["ef_runtime"]) > 0
    assert int(info["num_docs"]) == 6
    assert int(info["num_records"]) >= 5
    assert int(info["hash_indexing_failures"]) == 1
    assert int(info["backfill_in_progress"]) == 0
    assert float(info["backfill_complete_percent"]) == 1.0
    assert int(info["mutation_queue_size"]) == 0
    # valkey-search's form: whole seconds and the unit.
    delay, unit = text(info["recent_mutations_queue_delay"]).split()
    assert int(delay) >= 0 and unit == "sec"
    assert text(info["state"]) == "ready"


# --- JSON -------------------------------------------------------------------------------


def test_json_get_mget_type_numincrby_arrappend(r):
    doc = {"name": "lamp", "price": 10, "ratio": 0.5, "tags": ["a"], "dims": {"h": 2},
           "ok": True, "none": None}
    assert r.execute_command("JSON.SET", "doc:1", "$", json.dumps(doc)) in (b"OK", "OK", True)
    r.execute_command("JSON.SET", "doc:2", "$", json.dumps({"name": "desk", "price": 3}))
    r.set("plain", "x")

    def get(*args):
        raw = r.execute_command("JSON.GET", *args)
        return None if raw is None else json.loads(raw)

    assert get("doc:1") == doc  # no path: the root, legacy form (the value itself)
    assert get("doc:1", "$.price") == [10]  # JSONPath: every match, in an array
    assert get("doc:1", ".dims.h") == 2  # legacy path: the value alone
    assert get("doc:1", "$.nothing") == []
    assert get("doc:1", "$.name", "$.price") == {"$.name": ["lamp"], "$.price": [10]}
    assert get("missing") is None

    mget = r.execute_command("JSON.MGET", "doc:1", "doc:2", "missing", "plain", "$.name")
    assert [None if m is None else json.loads(m) for m in mget] == [["lamp"], ["desk"], None, None]

    types = r.execute_command("JSON.TYPE", "doc:1", "$.*")
    # In the document's own order, as RedisJSON keeps an object's members.
    assert [text(t) for t in types] == ["string", "integer", "number", "array", "object",
                                         "boolean", "null"]
    assert list(get("doc:1", "$")[0]) == list(doc)
    assert text(r.execute_command("JSON.TYPE", "doc:1", ".tags")) == "array"
    assert r.execute_command("JSON.TYPE", "missing") is None

    assert json.loads(r.execute_command("JSON.NUMINCRBY", "doc:1", "$.price", 5)) == [15]
    assert json.loads(r.execute_command("JSON.NUMINCRBY", "doc:1", "$.ratio", 0.25)) == [0.75]
    # A path that matches a non-number gives null in its place.
    assert json.loads(r.execute_command("JSON.NUMINCRBY", "doc:1", "$.name", 1)) == [None]
    assert get("doc:1", "$.price") == [15]
    with pytest.raises(Exception):
        r.execute_command("JSON.NUMINCRBY", "missing", "$.price", 1)

    assert r.execute_command("JSON.ARRAPPEND", "doc:1", "$.tags", '"b"', '"c"') == [3]
    assert get("doc:1", "$.tags") == [["a", "b", "c"]]
    # Not an array: null in its place.
    assert r.execute_command("JSON.ARRAPPEND", "doc:1", "$.name", '"x"') == [None]
    with pytest.raises(Exception, match="WRONGTYPE"):
        r.execute_command("JSON.GET", "plain")


def test_json_numincrby_reindexes_a_numeric_field(r):
    r.execute_command("FT.CREATE", "jn", "ON", "JSON", "PREFIX", "1", "jn:", "SCHEMA",
                      "$.n", "AS", "n", "NUMERIC")
    for i in range(3):
        r.execute_command("JSON.SET", f"jn:{i}", "$", json.dumps({"n": i}))
    wait_ready(r, "jn")
    r.execute_command("JSON.NUMINCRBY", "jn:0", "$.n", 10)
    ids = sorted(d.id for d in r.ft("jn").search(Query("@n:[5 +inf]").dialect(2)).docs)
    assert ids == ["jn:0"]


# --- TAG options, TOLIST, VECTOR_RANGE attributes ---------------------------------------


def test_tag_separator_and_case_sensitivity_through_ft_create(r):
    r.execute_command("FT.CREATE", "tg", "PREFIX", "1", "tg:", "SCHEMA",
                      "colors", "TAG", "SEPARATOR", ";", "codes", "TAG", "CASESENSITIVE")
    r.hset("tg:1", mapping={"colors": "Red;blue", "codes": "AB"})
    r.hset("tg:2", mapping={"colors": "green,red", "codes": "ab"})
    wait_ready(r, "tg")

    def ids(query):
        return sorted(d.id for d in r.ft("tg").search(Query(query).dialect(2)).docs)

    # `;` splits, `,` does not; matching folds case unless CASESENSITIVE.
    assert ids("@colors:{red}") == ["tg:1"]
    assert ids("@colors:{BLUE}") == ["tg:1"]
    assert ids("@colors:{green\\,red}") == ["tg:2"]
    assert ids("@codes:{AB}") == ["tg:1"]
    assert ids("@codes:{ab}") == ["tg:2"]


def test_tolist_collects_every_distinct_value_of_a_group(r):
    r.execute_command("FT.CREATE", "tl", "PREFIX", "1", "tl:", "SCHEMA",
                      "cat", "TAG", "name", "TAG")
    rows = [("a", "x"), ("a", "y"), ("a", "x"), ("b", "z")]
    for i, (cat, name) in enumerate(rows):
        r.hset(f"tl:{i}", mapping={"cat": cat, "name": name})
    wait_ready(r, "tl")
    req = AggregateRequest("*").group_by("@cat", reducers.tolist("@name").alias("names"))
    res = r.ft("tl").aggregate(req)
    got = {}
    for row in res.rows:
        fields = {text(k): v for k, v in zip(row[::2], row[1::2])}
        got[text(fields["cat"])] = sorted(text(n) for n in fields["names"])
    assert got == {"a": ["x", "y"], "b": ["z"]}


def test_vector_range_yields_the_distance_under_its_name_and_honours_the_radius(r):
    r.execute_command("FT.CREATE", "vr", "PREFIX", "1", "vr:", "SCHEMA",
                      "v", "VECTOR", "HNSW", "6", "TYPE", "FLOAT32", "DIM", "2",
                      "DISTANCE_METRIC", "L2", "t", "TAG")
    for i in range(10):
        r.hset(f"vr:{i}", mapping={"v": vec(i, 0), "t": "even" if i % 2 == 0 else "odd"})
    wait_ready(r, "vr")
    # L2 here is the squared distance: within 9 of (0, 0) are x = 0..3.
    q = Query("@v:[VECTOR_RANGE $r $q]=>{$YIELD_DISTANCE_AS: dist; $EPSILON: 0.5}") \
        .sort_by("dist").return_fields("dist").dialect(2).paging(0, 20)
    res = r.ft("vr").search(q, query_params={"r": 9, "q": vec(0, 0)})
    assert [d.id for d in res.docs] == ["vr:0", "vr:1", "vr:2", "vr:3"]
    assert [float(d.dist) for d in res.docs] == [0.0, 1.0, 4.0, 9.0]
    # Combined with a filter.
    q = Query("@t:{even} @v:[VECTOR_RANGE 9 $q]=>{$YIELD_DISTANCE_AS: dist}") \
        .sort_by("dist").return_fields("dist").dialect(2)
    res = r.ft("vr").search(q, query_params={"q": vec(0, 0)})
    assert [d.id for d in res.docs] == ["vr:0", "vr:2"]


# --- the cluster `make run` starts -------------------------------------------------------


def test_three_nodes_in_zones_a_b_c_and_every_group_in_all_three(server):
    """`shoal dev` (and the 3-process cluster of the cluster pass): 3 nodes in zones
    a, b, c, and each of the 3 groups with a voter in every zone."""
    client = server.client(protocol=2, decode_responses=True)
    # Every node reports itself to the map within a second of starting.
    info = wait_for(lambda: (i := client.info("cluster")) and int(i["shoal_nodes"]) == 3 and i,
                    what="three nodes in the map")
    assert int(info["shoal_shard_groups"]) == 3
    zones = {i: info[f"node{i}"]["zone"] for i in (1, 2, 3)}
    assert zones == {1: "a", 2: "b", 3: "c"}
    for g in range(3):
        voters = [int(v) for v in str(info[f"group{g}"]["voters"]).split("|") if v]
        assert sorted(zones[v] for v in voters) == ["a", "b", "c"], (g, voters)
