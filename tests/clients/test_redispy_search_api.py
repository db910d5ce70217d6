"""redis-py's high-level search API as a MemoryDB user writes it: Field classes and
IndexDefinition (HASH and JSON), AggregateRequest with load/apply/filter/sort_by(max)/
limit, every reducer MemoryDB lists (COUNT, COUNT_DISTINCT(ISH), SUM, MIN, MAX, AVG,
STDDEV, QUANTILE, TOLIST, FIRST_VALUE, RANDOM_SAMPLE), expressions with `^`, exponents
and string functions, `json().get` with `no_escape` and several paths, and field flags
this index cannot honour refused by name.

Runs over `shoal dev` and, unchanged, through a router over three shard groups, where
the reducers' partial states are merged from every group.
"""

import math
import statistics

import pytest
import redis
from redis.commands.json.path import Path
from redis.commands.search import reducers
from redis.commands.search.aggregation import AggregateRequest, Asc, Desc
from redis.commands.search.field import NumericField, TagField, TextField
from redis.commands.search.index_definition import IndexDefinition, IndexType
from redis.commands.search.query import Query

from conftest import wait_ready

N = 60


def text(value):
    return value.decode() if isinstance(value, bytes) else value


def value(x):
    return [text(v) for v in x] if isinstance(x, list) else text(x)


def rows(result):
    """Aggregate rows as dicts with str keys (lists stay lists of str): from redis-py's
    AggregateResult, or from the raw RESP3 map redis-py leaves when `protocol=3` is
    asked for explicitly."""
    if isinstance(result, dict):
        results = {text(k): v for k, v in result.items()}["results"]
        cells = [{text(k): v for k, v in r.items()}["extra_attributes"] for r in results]
        return [{text(k): value(v) for k, v in c.items()} for c in cells]
    return [dict(zip((text(k) for k in row[::2]), map(value, row[1::2]))) for row in result.rows]


def price(i):
    return i * 1.5


@pytest.fixture
def products(r):
    r.ft("products").create_index(
        [
            TextField("name"),
            NumericField("price", sortable=True),
            TagField("cat", withsuffixtrie=True),
        ],
        definition=IndexDefinition(prefix=["p:"], index_type=IndexType.HASH),
    )
    pipe = r.pipeline(transaction=False)
    for i in range(N):
        pipe.hset(f"p:{i}", mapping={"name": f"n{i:02d}", "price": price(i), "cat": f"c{i % 3}"})
    pipe.execute()
    wait_ready(r, "products")
    return r


def group(c):
    return [i for i in range(N) if i % 3 == c]


@pytest.mark.parametrize("protocol", [2, 3, None])
def test_every_memorydb_reducer(server, products, protocol):
    # None: redis-py's default (RESP3 on the wire, replies turned into its RESP2 types).
    client = server.client(protocol=protocol) if protocol else server.client()
    request = AggregateRequest("*").group_by(
        "@cat",
        reducers.count().alias("count"),
        reducers.count_distinct("@name").alias("distinct"),
        reducers.count_distinctish("@name").alias("distinctish"),
        reducers.sum("@price").alias("sum"),
        reducers.min("@price").alias("min"),
        reducers.max("@price").alias("max"),
        reducers.avg("@price").alias("avg"),
        reducers.stddev("@price").alias("stddev"),
        reducers.quantile("@price", 0.5).alias("median"),
        reducers.quantile("@price", 0.9).alias("p90"),
        reducers.tolist("@name").alias("names"),
        reducers.first_value("@name", Desc("@price")).alias("priciest"),
        reducers.first_value("@name", Asc("@price")).alias("cheapest"),
        reducers.random_sample("@name", 3).alias("sample"),
    ).sort_by(Asc("@cat"))
    got = rows(client.ft("products").aggregate(request))
    assert [row["cat"] for row in got] == ["c0", "c1", "c2"]
    for c, row in enumerate(got):
        members = group(c)
        prices = sorted(price(i) for i in members)
        names = {f"n{i:02d}" for i in members}
        assert int(row["count"]) == len(members)
        assert int(row["distinct"]) == int(row["distinctish"]) == len(members)
        assert float(row["sum"]) == pytest.approx(sum(prices))
        assert (float(row["min"]), float(row["max"])) == (prices[0], prices[-1])
        assert float(row["avg"]) == pytest.approx(statistics.mean(prices))
        # Sample standard deviation (n - 1), as RediSearch's.
        assert float(row["stddev"]) == pytest.approx(statistics.stdev(prices))
        # A value of the group: the smallest with at least q x n values at or below it.
        assert float(row["median"]) == prices[math.ceil(0.5 * len(prices)) - 1]
        assert float(row["p90"]) == prices[math.ceil(0.9 * len(prices)) - 1]
        assert set(row["names"]) == names
        assert row["priciest"] == f"n{members[-1]:02d}"
        assert row["cheapest"] == f"n{members[0]:02d}"
        sample = row["sample"]
        assert len(sample) == 3 and len(set(sample)) == 3 and set(sample) <= names


def test_random_samples_reach_every_member(server, products):
    # Over shard groups each group samples its own rows and the router merges the
    # samples weighted by how many rows each saw; a merge that favoured one group's
    # sample would leave some names never drawn.
    client = server.client(protocol=2)
    request = AggregateRequest("@cat:{c1}").group_by(
        "@cat", reducers.random_sample("@name", 2).alias("s"))
    drawn = set()
    for _ in range(150):
        (row,) = rows(client.ft("products").aggregate(request))
        assert len(row["s"]) == 2
        drawn.update(row["s"])
    assert drawn == {f"n{i:02d}" for i in group(1)}


def test_load_apply_filter_sort_max_and_limit(products):
    request = (
        AggregateRequest("@price:[10 60]")
        .load("@name", "@price")
        .apply(double="@price * 2", square="@price ^ 2", big="1e3 + @price",
               short="substr(@name, 0, 2)", even="contains(@name, '0')")
        .filter("@double > 40 && startswith(@name, 'n')")
        .sort_by(Desc("@double"), max=5)
        .limit(1, 3)
    )
    got = rows(products.ft("products").aggregate(request))
    members = sorted((i for i in range(N) if 10 <= price(i) <= 60 and price(i) * 2 > 40),
                     key=lambda i: -price(i))[:5][1:4]
    assert [row["name"] for row in got] == [f"n{i:02d}" for i in members]
    for row, i in zip(got, members):
        assert float(row["double"]) == price(i) * 2
        assert float(row["square"]) == pytest.approx(price(i) ** 2)
        assert float(row["big"]) == 1000 + price(i)
        assert row["short"] == f"n{i // 10}"
        assert int(row["even"]) == f"n{i:02d}".count("0")


def test_json_index_loads_its_declared_fields(r):
    r.ft("docs").create_index(
        [TextField("$.name", as_name="name"), NumericField("$.price", as_name="price")],
        definition=IndexDefinition(prefix=["j:"], index_type=IndexType.JSON),
    )
    for i in range(6):
        r.json().set(f"j:{i}", Path.root_path(),
                     {"name": f"doc{i}", "price": i * 10, "extra": {"deep": i}})
    wait_ready(r, "docs")
    got = rows(r.ft("docs").aggregate(
        AggregateRequest("@price:[20 40]").load().sort_by(Asc("@price"))))
    assert [(row["name"], float(row["price"])) for row in got] == [
        ("doc2", 20.0), ("doc3", 30.0), ("doc4", 40.0)]
    assert all("extra" not in row for row in got)
    res = r.ft("docs").search(Query("@price:[50 +inf]").return_field("name", as_field="n"))
    assert [(d.id, d.n) for d in res.docs] == [("j:5", "doc5")]

    # redis-py's JSON helpers: the legacy root path, NOESCAPE, several paths.
    assert r.json().get("j:1") == {"name": "doc1", "price": 10, "extra": {"deep": 1}}
    assert r.json().get("j:1", no_escape=True)["name"] == "doc1"
    assert r.json().get("j:1", ".name", ".extra.deep") == {".name": "doc1", ".extra.deep": 1}
    assert r.json().get("j:1", "$.name", ".price") == {"$.name": ["doc1"], ".price": [10]}


def test_field_flags_are_refused_by_name(r):
    for field, flag in [(NumericField("n", sortable=True, no_index=True), "NOINDEX"),
                        (TagField("t", index_missing=True), "INDEXMISSING"),
                        (TextField("x", index_empty=True), "INDEXEMPTY"),
                        (TextField("x", phonetic_matcher="dm:en"), "PHONETIC")]:
        with pytest.raises(redis.ResponseError) as caught:
            r.ft("flags").create_index([field, NumericField("other")])
        assert f"The parameter `{flag}` is not supported" in str(caught.value)
    assert r.execute_command("FT._LIST") == []
