"""TLS on the RESP port and the gRPC API, and mutual TLS between nodes.

A node given a certificate speaks only TLS on its client ports (as MemoryDB with
in-transit encryption does); with a CA, clients must present a certificate it signed.
The clients are the ones users run: redis-py with `ssl=True` (a `rediss://` URL),
redis-cli `--tls`, and grpcio's secure channel. The certificates come from a
throwaway CA (trustme) made per module.
"""

import signal
import subprocess

import grpc
import numpy as np
import pytest
import redis
import trustme
from redis.commands.search.query import Query

from conftest import ClusterServer, Server, wait_for, wait_ready
from loopback import free_port

DIM = 4


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """PEM files: a CA (ca.pem) that signs the dev server's certificate (server, for
    127.0.0.1 and localhost) and a client's (client); a CA for nodes only (nodes-ca.pem)
    that signs the cluster nodes' certificate (node); a certificate from a third CA
    (stranger)."""
    d = tmp_path_factory.mktemp("pki")
    ca, nodes_ca = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    nodes_ca.cert_pem.write_to_path(str(d / "nodes-ca.pem"))
    for name, cert in (("server", ca.issue_cert("127.0.0.1", "localhost")),
                       ("client", ca.issue_cert("client@shoal.test")),
                       ("node", nodes_ca.issue_cert("127.0.0.1")),
                       ("stranger", trustme.CA().issue_cert("stranger@shoal.test"))):
        cert.private_key_pem.write_to_path(str(d / f"{name}.key"))
        for i, pem in enumerate(cert.cert_chain_pems):
            pem.write_to_path(str(d / f"{name}.pem"), append=i > 0)
    return d


def tls_args(pki, cert="server"):
    return ["--tls-cert-file", str(pki / f"{cert}.pem"), "--tls-key-file", str(pki / f"{cert}.key"),
            "--tls-ca-cert-file", str(pki / "ca.pem")]


@pytest.fixture(scope="module")
def server(tmp_path_factory, pki):
    """`shoal dev` (the embedded cluster, one node so that INFO's per-node counters are
    the whole server's) with TLS on RESP and the gRPC API."""
    api_port = free_port()
    s = Server(tmp_path_factory.mktemp("shoal-tls"), "--api", f"127.0.0.1:{api_port}",
               "--nodes", "1", *tls_args(pki))
    s.api_port = api_port
    s.start()
    yield s
    assert s.alive(), "the server died during the TLS tests"
    s.stop()


def tls_client(server, pki, who="client", **kwargs):
    return redis.Redis(host="127.0.0.1", port=server.port, ssl=True,
                       ssl_ca_certs=str(pki / "ca.pem"),
                       ssl_certfile=str(pki / f"{who}.pem"), ssl_keyfile=str(pki / f"{who}.key"),
                       socket_timeout=10, **kwargs)


def grpc_code(channel):
    """The status of a call to a method no server has: UNIMPLEMENTED once the
    connection is up, UNAVAILABLE when it could not be made (a refused handshake)."""
    call = channel.unary_unary("/shoal.test.Nothing/Nothing")
    with pytest.raises(grpc.RpcError) as e:
        call(b"", timeout=10)
    return e.value.code()


def creds(pki, who=None, root="ca"):
    """Channel credentials trusting `root`'s certificates, presenting `who`'s."""
    if who is None:
        return grpc.ssl_channel_credentials(root_certificates=(pki / f"{root}.pem").read_bytes())
    return grpc.ssl_channel_credentials(
        root_certificates=(pki / f"{root}.pem").read_bytes(),
        private_key=(pki / f"{who}.key").read_bytes(),
        certificate_chain=(pki / f"{who}.pem").read_bytes())


def assert_only_signed_callers_connect(pki, target, root, signed, others):
    """A gRPC port with TLS that wants client certificates: `signed` gets through the
    handshake; plaintext, no certificate, or each of `others` does not."""
    with grpc.secure_channel(target, creds(pki, signed, root)) as channel:
        assert grpc_code(channel) == grpc.StatusCode.UNIMPLEMENTED
    with grpc.insecure_channel(target) as channel:
        assert grpc_code(channel) == grpc.StatusCode.UNAVAILABLE
    for who in (None, *others):
        with grpc.secure_channel(target, creds(pki, who, root)) as channel:
            assert grpc_code(channel) == grpc.StatusCode.UNAVAILABLE, who


def stats(server, pki):
    return tls_client(server, pki).info("stats")


def test_redis_py_over_tls_searches_as_over_plaintext(server, pki):
    r = tls_client(server, pki)
    assert r.ping()
    r.flushall()
    r.execute_command("FT.CREATE", "tls_idx", "ON", "HASH", "PREFIX", "1", "t:", "SCHEMA",
                      "tag", "TAG", "vec", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32", "DIM",
                      str(DIM), "DISTANCE_METRIC", "L2")
    pipe = r.pipeline()  # a MULTI/EXEC over TLS
    for i in range(50):
        v = np.full(DIM, float(i), dtype=np.float32)
        pipe.hset(f"t:{i}", mapping={"tag": "even" if i % 2 == 0 else "odd",
                                     "vec": v.tobytes()})
    pipe.execute()
    wait_ready(r, "tls_idx")
    q = (Query("(@tag:{odd})=>[KNN 3 @vec $v AS score]").sort_by("score")
         .return_fields("score").dialect(2))
    res = r.ft("tls_idx").search(q, {"v": np.full(DIM, 10.0, dtype=np.float32).tobytes()})
    # 9 and 11 tie at 4, then 7 and 13 at 36.
    assert {d.id for d in res.docs[:2]} == {"t:9", "t:11"}
    assert res.docs[2].id in ("t:7", "t:13")
    assert [float(d.score) for d in res.docs] == [4.0, 4.0, 36.0]
    # RESP3 over TLS, and a large reply (many TLS records).
    r3 = tls_client(server, pki, protocol=3)
    big = "x" * 300_000
    r3.set("big", big)
    assert r3.get("big").decode() == big


def test_a_rediss_url_works(server, pki):
    url = (f"rediss://127.0.0.1:{server.port}/0?ssl_ca_certs={pki / 'ca.pem'}"
           f"&ssl_certfile={pki / 'client.pem'}&ssl_keyfile={pki / 'client.key'}")
    assert redis.Redis.from_url(url).ping()


def test_plaintext_and_unauthorised_clients_are_refused_and_the_server_keeps_serving(server, pki):
    before = int(stats(server, pki)["tls_handshake_failures"])
    # Plaintext on the TLS port: the answer is a TLS alert, not RESP.
    with pytest.raises((redis.ConnectionError, redis.exceptions.InvalidResponse)):
        redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=5).ping()
    # No client certificate, while the CA requires one.
    with pytest.raises(redis.ConnectionError):
        redis.Redis(host="127.0.0.1", port=server.port, ssl=True,
                    ssl_ca_certs=str(pki / "ca.pem"), socket_timeout=5).ping()
    # A certificate from another CA.
    with pytest.raises(redis.ConnectionError):
        tls_client(server, pki, who="stranger").ping()
    # A client that does not trust the server's CA gives up itself.
    with pytest.raises(redis.ConnectionError):
        redis.Redis(host="127.0.0.1", port=server.port, ssl=True,
                    ssl_certfile=str(pki / "client.pem"), ssl_keyfile=str(pki / "client.key"),
                    socket_timeout=5).ping()
    assert tls_client(server, pki).ping()
    wait_for(lambda: int(stats(server, pki)["tls_handshake_failures"]) >= before + 3,
             timeout=10, what="the refused handshakes to be counted")


def test_redis_cli_tls(server, pki):
    out = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(server.port), "--tls",
         "--cacert", str(pki / "ca.pem"), "--cert", str(pki / "client.pem"),
         "--key", str(pki / "client.key"), "PING"],
        capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "PONG", out.stderr


def test_grpc_api_over_tls(server, pki):
    # Reflection lists the service over TLS; other channels get no connection.
    target = f"127.0.0.1:{server.api_port}"
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
    with grpc.secure_channel(target, creds(pki, "client")) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=30)
        names = [s.name for reply in replies for s in reply.list_services_response.service]
        assert "shoal.v1.Shoal" in names or any(n.endswith(".Shoal") for n in names), names
    assert_only_signed_callers_connect(pki, target, "ca", "client", ["stranger"])


def test_a_node_refuses_to_start_with_unusable_tls_files(tmp_path, pki):
    (tmp_path / "empty.pem").write_text("")
    s = Server(tmp_path / "data", "--tls-cert-file", str(tmp_path / "empty.pem"),
               "--tls-key-file", str(pki / "server.key"), "--standalone")
    with pytest.raises(RuntimeError):
        s.start()
    assert "no PEM certificate" in s.log.read_text()


def test_mutual_tls_between_nodes(tmp_path_factory, pki):
    """Three `shoal node` processes whose Raft transport and routed commands run over
    mutual TLS with the nodes' own CA: writes through one node are replicated and read
    through another; only a node certificate opens a node's peer port (a client's,
    although the nodes accept it on RESP, does not: that port runs commands without
    the ACL check)."""
    data = tmp_path_factory.mktemp("tls-cluster")
    cluster = ClusterServer(data, nodes=3, groups=2, extra=[
        *tls_args(pki, cert="node"), "--tls-peer-ca-cert-file", str(pki / "nodes-ca.pem")])
    original_client = cluster.client

    def client(**kwargs):
        kwargs.setdefault("ssl", True)
        kwargs.setdefault("ssl_ca_certs", str(pki / "nodes-ca.pem"))
        kwargs.setdefault("socket_timeout", 10)
        kwargs.setdefault("ssl_certfile", str(pki / "client.pem"))
        kwargs.setdefault("ssl_keyfile", str(pki / "client.key"))
        return original_client(**kwargs)

    cluster.client = client
    cluster.start()
    try:
        r1 = cluster.client()
        for i in range(40):  # over both groups, routed by node 1 to their leaders
            r1.set(f"k{i}", i)
        node3 = redis.Redis(host="127.0.0.1", port=cluster.ports[2][0], ssl=True,
                            ssl_ca_certs=str(pki / "nodes-ca.pem"),
                            ssl_certfile=str(pki / "client.pem"),
                            ssl_keyfile=str(pki / "client.key"), socket_timeout=10)
        assert [int(v) for v in node3.mget([f"k{i}" for i in range(40)])] == list(range(40))
        # Node 3's own replicas caught up over the TLS transport (a stale local read).
        node3.execute_command("READONLY")
        wait_for(lambda: node3.get("k39") == b"39", timeout=20,
                 what="node 3's replica to apply the writes")
        # The peer port wants a CA-signed client certificate.
        assert_only_signed_callers_connect(pki, f"127.0.0.1:{cluster.ports[0][1]}",
                                           "nodes-ca", "node", ["client", "stranger"])
        assert cluster.alive()
    finally:
        cluster.stop(signal.SIGTERM)
