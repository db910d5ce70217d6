"""The gRPC client API (proto/shoal.proto) against RESP on the same server.

Every rpc is a RESP command run through the same router, so a gRPC client and a redis-py
client must see the same keys, the same distances, the same index state and the same
error text; these tests ask both and compare. The stubs are generated from the proto in
the repository at test time, so a change to the proto is tested as it stands.
"""

import base64
import functools
import importlib
import json
import pathlib
import sys
import time

import grpc
import grpc_tools
import numpy as np
import pytest
import redis
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2
from grpc_tools import protoc

from conftest import ROOT, ClusterServer, Server, cluster_groups, wait_for
from loopback import free_port

DIM = 8
TIMEOUT = 30  # seconds for any one call: a hung server fails the test, not the run


@pytest.fixture(scope="module")
def pb(tmp_path_factory):
    """shoal_pb2 and its service stub, compiled from the repository's proto."""
    out = tmp_path_factory.mktemp("shoal-stubs")
    proto = ROOT / "proto"
    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    rc = protoc.main(["grpc_tools.protoc", f"-I{proto}", f"-I{well_known}",
                      f"--python_out={out}", f"--grpc_python_out={out}",
                      str(proto / "shoal.proto")])
    assert rc == 0, "protoc could not compile proto/shoal.proto"
    sys.path.insert(0, str(out))
    try:
        messages = importlib.import_module("shoal_pb2")
        messages.ShoalStub = importlib.import_module("shoal_pb2_grpc").ShoalStub
    finally:
        sys.path.remove(str(out))
    return messages


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`shoal dev` with the gRPC API on its own port; with SHOAL_CLUSTER_GROUPS, three
    `shoal node` processes each serving the API, called on node 2 while RESP goes to
    node 1, so the two fronts are different routers. Named like conftest's fixture so
    that `r` (a clean redis-py client) talks to this server."""
    groups = cluster_groups()
    if groups:
        s = ClusterServer(tmp_path_factory.mktemp("shoal-grpc-cluster"), 3, groups,
                          api=True).start()
        s.api_port = s.api_ports[1]
        yield s
        s.stop()
        return
    for _ in range(3):
        api_port = free_port()
        s = Server(tmp_path_factory.mktemp("shoal-grpc"), "--api", f"127.0.0.1:{api_port}")
        try:
            s.start()
        except RuntimeError:
            continue  # most likely the api port was taken before shoal bound it
        s.api_port = api_port
        break
    else:
        raise RuntimeError("shoal dev --api did not start")
    yield s
    s.stop()


class Api:
    """The Shoal stub with a deadline on every call."""

    def __init__(self, stub):
        self._stub = stub

    def __getattr__(self, name):
        return functools.partial(getattr(self._stub, name), timeout=TIMEOUT)


@pytest.fixture(scope="module")
def channel(server):
    ch = grpc.insecure_channel(f"127.0.0.1:{server.api_port}")
    grpc.channel_ready_future(ch).result(timeout=TIMEOUT)
    yield ch
    ch.close()


@pytest.fixture(scope="module")
def api(channel, pb):
    return Api(pb.ShoalStub(channel))


def resp(server, *args):
    """A raw RESP2 reply, as test_cluster.py reads FT.SEARCH."""
    return server.client(protocol=2).execute_command(*args)


def parse_search(res, nocontent=False):
    """RESP2 FT.SEARCH: total and [(key, {field: bytes})]."""
    if nocontent:
        return res[0], [(k.decode(), {}) for k in res[1:]]
    return res[0], [(res[i].decode(), {f.decode(): v for f, v in zip(res[i + 1][::2],
                                                                   res[i + 1][1::2])})
                    for i in range(1, len(res), 2)]


def without(fields, name):
    return {k: v for k, v in dict(fields).items() if k != name}


def create_g(api, pb):
    """Index `g` over `g:` hashes, made through gRPC: n NUMERIC, t TAG, v FLAT L2."""
    api.CreateIndex(pb.CreateIndexRequest(
        index="g", on=pb.HASH, prefixes=["g:"],
        fields=[pb.Field(name="n", numeric=pb.NumericField()),
                pb.Field(name="t", tag=pb.TagField()),
                pb.Field(name="v", vector=pb.VectorField(algorithm=pb.FLAT, dim=DIM,
                                                          metric=pb.L2))]))


@pytest.fixture
def docs(r, api, pb):
    """300 documents streamed through BulkUpsert; returns their vectors."""
    create_g(api, pb)
    vectors = np.random.default_rng(5).standard_normal((300, DIM)).astype(np.float32)

    def stream():
        for i, v in enumerate(vectors):
            yield pb.Document(key=f"g:{i}",
                              fields={"n": str(i % 50).encode(), "t": f"t{i % 3}".encode()},
                              vectors={"v": pb.FloatVector(values=v.tolist())})

    assert api.BulkUpsert(stream()).upserted == 300
    return vectors


def test_knn_is_the_same_over_grpc_resp_and_brute_force(server, r, api, pb, docs):
    # Stored exactly as a RESP client writes it: FLOAT32 little-endian.
    assert r.hgetall("g:17") == {b"n": b"17", b"t": b"t2", b"v": docs[17].astype("<f4").tobytes()}
    rng = np.random.default_rng(9)
    for _ in range(3):
        q = rng.standard_normal(DIM).astype(np.float32)
        dist = ((docs.astype(np.float64) - q.astype(np.float64)) ** 2).sum(axis=1)
        exact = np.argsort(dist)[:10]
        total, want = parse_search(resp(
            server, "FT.SEARCH", "g", "*=>[KNN 10 @v $q AS __distance]",
            "PARAMS", "2", "q", q.tobytes(), "LIMIT", "0", "10", "DIALECT", "2"))
        assert [k for k, _ in want] == [f"g:{i}" for i in exact]
        by_floats = api.Search(pb.SearchRequest(
            index="g", vector_field="v", k=10, floats=pb.FloatVector(values=q.tolist())))
        by_bytes = api.Search(pb.SearchRequest(index="g", vector_field="v", k=10,
                                               raw=q.tobytes()))
        for res in (by_floats, by_bytes):
            assert res.total == total
            assert [h.key for h in res.hits] == [k for k, _ in want]
            for hit, (_, fields), i in zip(res.hits, want, exact):
                assert hit.distance == pytest.approx(float(fields["__distance"]), abs=1e-5)
                assert hit.distance == pytest.approx(dist[i], rel=1e-5, abs=1e-5)
                assert without(hit.fields, "__distance") == without(fields, "__distance")
        # A page of keys only: LIMIT 4 10 NOCONTENT, the distances still there.
        page = api.Search(pb.SearchRequest(index="g", vector_field="v", k=10, offset=4,
                                           keys_only=True, raw=q.tobytes()))
        _, resp_page = parse_search(resp(
            server, "FT.SEARCH", "g", "*=>[KNN 10 @v $q AS __distance]", "NOCONTENT",
            "PARAMS", "2", "q", q.tobytes(), "LIMIT", "4", "10", "DIALECT", "2"), nocontent=True)
        assert [h.key for h in page.hits] == [k for k, _ in resp_page]
        assert [h.key for h in page.hits] == [f"g:{i}" for i in exact[4:]]
        assert [dict(h.fields) for h in page.hits] == [{}] * 6
        assert [h.distance for h in page.hits] == pytest.approx(
            [float(d) for d in dist[exact[4:]]], rel=1e-5)


def test_filtered_search_with_return_fields_matches_resp(server, r, api, pb, docs):
    flt = "@t:{t1} @n:[10 20]"
    chosen = [i for i in range(300) if i % 3 == 1 and 10 <= i % 50 <= 20]
    # Without a vector: the filter alone, every match on one page (no SORTBY: as a set).
    total, want = parse_search(resp(server, "FT.SEARCH", "g", flt, "RETURN", "2", "n", "t",
                                    "LIMIT", "0", "100", "DIALECT", "2"))
    res = api.Search(pb.SearchRequest(index="g", filter=flt, k=100, return_fields=["n", "t"]))
    assert res.total == total == len(chosen)
    assert {h.key: dict(h.fields) for h in res.hits} == dict(want)
    assert dict(want) == {f"g:{i}": {"n": str(i % 50).encode(), "t": b"t1"} for i in chosen}
    assert all(h.distance == 0 for h in res.hits)
    # The same bounds as PARAMS.
    res = api.Search(pb.SearchRequest(index="g", filter="@t:{t1} @n:[$lo $hi]", k=100,
                                      params={"lo": b"10", "hi": b"20"}, keys_only=True))
    assert res.total == total
    assert sorted(h.key for h in res.hits) == sorted(k for k, _ in want)
    # KNN inside the filter, the distance under a name of ours.
    q = np.random.default_rng(3).standard_normal(DIM).astype(np.float32)
    dist = ((docs[chosen].astype(np.float64) - q) ** 2).sum(axis=1)
    nearest = [chosen[j] for j in np.argsort(dist)[:5]]
    total, want = parse_search(resp(
        server, "FT.SEARCH", "g", f"({flt})=>[KNN 5 @v $q AS d]", "RETURN", "2", "n", "d",
        "PARAMS", "2", "q", q.tobytes(), "LIMIT", "0", "5", "DIALECT", "2"))
    res = api.Search(pb.SearchRequest(index="g", filter=flt, vector_field="v", k=5,
                                      floats=pb.FloatVector(values=q.tolist()),
                                      return_fields=["n"], distance_field="d"))
    assert res.total == total
    assert [h.key for h in res.hits] == [k for k, _ in want] == [f"g:{i}" for i in nearest]
    for hit, (_, fields), i in zip(res.hits, want, nearest):
        assert hit.distance == pytest.approx(float(fields["d"]), abs=1e-5)
        assert without(hit.fields, "d") == {"n": str(i % 50).encode()} == without(fields, "d")


def test_documents_round_trip_between_grpc_and_resp(r, api, pb):
    v = [1.5, -2.0, 0.25]
    assert api.Upsert(pb.Document(key="d:1", fields={"name": b"ada", "bin": b"\x00\xff"},
                                  vectors={"v": pb.FloatVector(values=v)})).upserted == 1
    stored = r.hgetall("d:1")
    assert stored == {b"name": b"ada", b"bin": b"\x00\xff",
                      b"v": np.array(v, dtype="<f4").tobytes()}
    got = api.Get(pb.GetRequest(key="d:1"))
    assert got.found and got.json == ""
    assert dict(got.fields) == {k.decode(): val for k, val in stored.items()}
    # Written by RESP, read by gRPC.
    r.hset("d:2", mapping={"a": "1", "b": b"\x01\x02"})
    assert dict(api.Get(pb.GetRequest(key="d:2")).fields) == {"a": b"1", "b": b"\x01\x02"}
    # JSON both ways.
    doc = {"name": "ada", "tags": ["x", "y"], "n": 3, "nested": {"ok": True}}
    assert api.Upsert(pb.Document(key="j:1", json=json.dumps(doc))).upserted == 1
    assert json.loads(r.execute_command("JSON.GET", "j:1")) == doc
    got = api.Get(pb.GetRequest(key="j:1"))
    assert got.found and not got.fields and json.loads(got.json) == doc
    r.execute_command("JSON.SET", "j:2", "$", json.dumps({"k": [1, 2]}))
    assert json.loads(api.Get(pb.GetRequest(key="j:2")).json) == {"k": [1, 2]}
    missing = api.Get(pb.GetRequest(key="nothing"))
    assert not missing.found and not missing.fields and missing.json == ""
    # DEL's count, both ways.
    assert api.Delete(pb.DeleteRequest(keys=["d:1", "j:1", "nothing"])).deleted == 2
    assert r.exists("d:1", "j:1") == 0
    assert r.delete("d:2", "nothing") == 1
    assert api.Delete(pb.DeleteRequest(keys=["d:2", "j:2"])).deleted == 1
    assert r.dbsize() == 0


def scalar_info(raw):
    """FT.INFO's plain string and number values, as text (IndexInfoResponse.fields)."""
    out = {}
    for k, v in zip(raw[::2], raw[1::2]):
        if isinstance(v, int):
            out[k.decode()] = str(v)
        elif isinstance(v, bytes):
            out[k.decode()] = v.decode()
    return out


def test_index_admin_matches_resp(server, r, api, pb, docs):
    info = api.IndexInfo(pb.IndexInfoRequest(index="g"))
    want = r.ft("g").info()
    assert info.index == "g"
    assert info.num_docs == int(want["num_docs"]) == 300
    assert info.num_records == int(want["num_records"])
    assert info.hash_indexing_failures == int(want["hash_indexing_failures"]) == 0
    assert info.backfill_complete_percent == pytest.approx(
        float(want["backfill_complete_percent"]))
    assert info.state == "ready"
    assert dict(info.fields) == scalar_info(resp(server, "FT.INFO", "g"))
    # A second index, ON JSON, then FT._LIST from both sides.
    api.CreateIndex(pb.CreateIndexRequest(
        index="j", on=pb.JSON, prefixes=["j:"],
        fields=[pb.Field(name="$.n", alias="n", numeric=pb.NumericField())]))
    listed = api.ListIndexes(pb.ListIndexesRequest()).indexes
    assert sorted(listed) == sorted(x.decode() for x in resp(server, "FT._LIST")) == ["g", "j"]
    api.DropIndex(pb.DropIndexRequest(index="j"))
    assert list(api.ListIndexes(pb.ListIndexesRequest()).indexes) == ["g"]
    assert r.dbsize() == 300
    # DD drops the documents with the index.
    api.DropIndex(pb.DropIndexRequest(index="g", delete_documents=True))
    assert resp(server, "FT._LIST") == []
    assert r.dbsize() == 0


def resp_error_text(exc: redis.ResponseError) -> str:
    """The error line as it went over the wire: redis-py strips a known code (ERR, ...)
    from the message and keeps it apart."""
    return f"{exc.status_code} {exc}" if exc.status_code else str(exc)


BAD_VECTOR = b"\x00" * (4 * DIM - 4)

ERROR_CASES = {
    "search-missing-index": (
        lambda api, pb: api.Search(pb.SearchRequest(index="nope")),
        ["FT.SEARCH", "nope", "*", "LIMIT", "0", "10", "DIALECT", "2"]),
    "info-missing-index": (
        lambda api, pb: api.IndexInfo(pb.IndexInfoRequest(index="nope")),
        ["FT.INFO", "nope"]),
    "drop-missing-index": (
        lambda api, pb: api.DropIndex(pb.DropIndexRequest(index="nope")),
        ["FT.DROPINDEX", "nope"]),
    "create-existing-index": (
        create_g,
        ["FT.CREATE", "g", "ON", "HASH", "PREFIX", "1", "g:", "SCHEMA", "n", "NUMERIC"]),
    "wrong-type": (
        lambda api, pb: api.Upsert(pb.Document(key="s:1", fields={"a": b"1"})),
        ["HSET", "s:1", "a", "1"]),
    "bad-json": (
        lambda api, pb: api.Upsert(pb.Document(key="j:bad", json="{not json")),
        ["JSON.SET", "j:bad", "$", "{not json"]),
    "bad-filter": (
        lambda api, pb: api.Search(pb.SearchRequest(index="g", filter="@n:[1")),
        ["FT.SEARCH", "g", "@n:[1", "LIMIT", "0", "10", "DIALECT", "2"]),
    # The exact command the server builds for a KNN request.
    "short-vector": (
        lambda api, pb: api.Search(pb.SearchRequest(index="g", vector_field="v",
                                                    raw=BAD_VECTOR)),
        ["FT.SEARCH", "g", "(*)=>[KNN 10 @v $__vector AS __distance]", "LIMIT", "0", "10",
         "PARAMS", "2", "__vector", BAD_VECTOR, "DIALECT", "2"]),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_errors_carry_the_resp_text(server, r, api, pb, case):
    create_g(api, pb)
    r.set("s:1", "a string")
    call, command = ERROR_CASES[case]
    with pytest.raises(redis.ResponseError) as resp_err:
        resp(server, *command)
    with pytest.raises(grpc.RpcError) as grpc_err:
        call(api, pb)
    assert grpc_err.value.code() != grpc.StatusCode.OK
    assert grpc_err.value.details() == resp_error_text(resp_err.value)
    # Nothing was written by either failed call.
    assert r.exists("j:bad") == 0 and r.get("s:1") == b"a string"


def node_info(server, node_id):
    """INFO cluster from node `node_id`: on processes, through its own RESP port; on
    `shoal dev`, which hands each new RESP connection to the next of its routing nodes
    (`--routers`; node 1 alone by default) as the gRPC API does its calls, through the
    connection that reached it."""
    if isinstance(server, ClusterServer):
        client = redis.Redis(host="127.0.0.1", port=server.ports[node_id - 1][0], protocol=2)
        try:
            return client.info("cluster")
        finally:
            client.close()
    seen = []
    for _ in range(12):
        client = server.client(protocol=2)
        try:
            info = client.info("cluster")
        finally:
            client.close()
        if info.get("shoal_node_id") == node_id:
            return info
        seen.append(info.get("shoal_node_id"))
    pytest.fail(f"no RESP connection reached node {node_id}; reached {seen}")


def test_cluster_status_matches_info_cluster(server, api, pb):
    deadline = time.time() + 10
    while True:
        status = api.ClusterStatus(pb.ClusterStatusRequest())
        if all(g.leader for g in status.groups) or time.time() > deadline:
            break
        time.sleep(0.05)
    assert len(status.groups) == 3
    assert len({g.group for g in status.groups}) == 3
    assert all(g.leader != 0 for g in status.groups), status
    for g in status.groups:
        assert (g.local_role == "leader") == (g.leader == status.node_id), g
    info = node_info(server, status.node_id)
    assert int(info["shoal_shard_groups"]) == 3
    assert {k for k in info if k.startswith("group")} == {f"group{g.group}"
                                                          for g in status.groups}
    for g in status.groups:
        line = info[f"group{g.group}"]
        assert (line["leader"], line["local_role"]) == (g.leader, g.local_role), line
        # Three nodes, three replicas: every node votes in every group.
        assert str(line["voters"]) == "1|2|3"


def reflect(channel, request):
    """One reflection exchange, over grpc.reflection.v1 or else v1alpha (the messages
    are the same on the wire; grpcio-reflection only ships v1alpha's)."""
    for package in ("grpc.reflection.v1", "grpc.reflection.v1alpha"):
        call = channel.stream_stream(
            f"/{package}.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
        responses = call(iter([request]), timeout=TIMEOUT)
        try:
            return next(responses)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise
        finally:
            responses.cancel()
    pytest.fail("the server answers neither reflection v1 nor v1alpha")


def test_reflection_serves_the_proto(channel, pb):
    listed = reflect(channel, reflection_pb2.ServerReflectionRequest(list_services=""))
    assert "shoal.v1.Shoal" in {s.name for s in listed.list_services_response.service}
    res = reflect(channel, reflection_pb2.ServerReflectionRequest(
        file_containing_symbol="shoal.v1.Shoal"))
    files = [descriptor_pb2.FileDescriptorProto.FromString(b)
             for b in res.file_descriptor_response.file_descriptor_proto]
    served = next(f for f in files if f.package == "shoal.v1")
    ours = descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(ours)

    def methods(f):
        return [(s.name, m.name, m.input_type, m.output_type, m.client_streaming,
                 m.server_streaming) for s in f.service for m in s.method]

    assert methods(served) == methods(ours)
    assert sorted(m.name for m in served.message_type) == sorted(
        m.name for m in ours.message_type)


def basic(user, password):
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return [("authorization", f"Basic {token}")]


def test_calls_run_as_the_user_their_credentials_name(server, r, api, pb, docs):
    """ACL users apply to gRPC as to RESP: Basic credentials in the metadata, the same
    rules, the same words; no credentials is `default`."""
    query = pb.SearchRequest(index="g", filter="*", k=3, vector_field="v",
                             floats=pb.FloatVector(values=docs[0].tolist()))
    r.execute_command("ACL", "SETUSER", "reader", "on", ">r-secret", "~g:*", "+@read",
                      "+@search", "-ft.create", "-ft.dropindex")
    r.execute_command("ACL", "SETUSER", "other", "on", ">o-secret", "~x:*", "+@all")
    try:
        hits = api.Search(query, metadata=basic("reader", "r-secret")).hits
        assert hits[0].key == "g:0"
        assert api.Get(pb.GetRequest(key="g:1"), metadata=basic("reader", "r-secret")).found
        cases = [
            # (call, request, credentials, status, text)
            ("Upsert", pb.Document(key="g:new", fields={"n": b"1"}), basic("reader", "r-secret"),
             grpc.StatusCode.PERMISSION_DENIED,
             "NOPERM User reader has no permissions to run the 'hset' command"),
            ("DropIndex", pb.DropIndexRequest(index="g"), basic("reader", "r-secret"),
             grpc.StatusCode.PERMISSION_DENIED,
             "NOPERM User reader has no permissions to run the 'ft.dropindex' command"),
            ("Search", query, basic("other", "o-secret"), grpc.StatusCode.PERMISSION_DENIED,
             "NOPERM The user doesn't have a permission to execute a command"),
            ("Get", pb.GetRequest(key="g:1"), basic("other", "o-secret"),
             grpc.StatusCode.PERMISSION_DENIED, "NOPERM No permissions to access a key"),
            ("Search", query, basic("reader", "wrong"), grpc.StatusCode.UNAUTHENTICATED,
             "WRONGPASS invalid username-password pair or user is disabled."),
            ("Search", query, [("authorization", "Bearer xyz")], grpc.StatusCode.UNAUTHENTICATED,
             "authorization must be `Basic base64(user:password)`"),
        ]
        for call, request, metadata, code, text in cases:
            with pytest.raises(grpc.RpcError) as e:
                getattr(api, call)(request, metadata=metadata)
            assert (e.value.code(), e.value.details()) == (code, text), (call, metadata)
        # Lock `default`: a call without credentials is now refused, as a RESP
        # connection that has not logged in (on every node once it has refreshed its
        # users, within a second: a revocation is not pushed).
        r.execute_command("ACL", "SETUSER", "default", "resetpass", ">d-secret")

        def refused():
            try:
                api.ListIndexes(pb.ListIndexesRequest())
                return False
            except grpc.RpcError:
                return True

        wait_for(lambda: all([refused() for _ in range(6)]), timeout=10,
                 what="every node to refuse calls without credentials")
        with pytest.raises(grpc.RpcError) as e:
            api.ListIndexes(pb.ListIndexesRequest())
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert e.value.details().startswith("NOAUTH")
        assert "g" in api.ListIndexes(pb.ListIndexesRequest(),
                                      metadata=basic("default", "d-secret")).indexes
    finally:
        admin = server.client(protocol=2, password="d-secret")
        try:
            admin.ping()
        except redis.AuthenticationError:
            admin = server.client(protocol=2)
        admin.execute_command("ACL", "SETUSER", "default", "nopass")
        admin.execute_command("ACL", "DELUSER", "reader", "other")

    def listed():
        try:
            return api.ListIndexes(pb.ListIndexesRequest()).indexes is not None
        except grpc.RpcError:
            return False

    # On processes the API is another node's router, which reads the users again within
    # a second (its forced re-reads are budgeted, and the refusals above spent them).
    wait_for(listed, timeout=10, what="calls without credentials to be served again")
