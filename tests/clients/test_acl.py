"""Users and ACLs as redis-py users meet them: AUTH and HELLO AUTH, command categories,
key patterns, index access through prefixes, and (on a cluster) the same users on
every router, because they live in the cluster map."""

import re
import socket
import struct
import time

import pytest
import redis

from conftest import ClusterServer, Server, cluster_groups, wait_ready

DEFAULT_RULES = "user default on nopass ~* &* +@all"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """As conftest's, but a `shoal dev` cluster hands new connections to all three of
    its nodes' routers in turn (`--routers 3`), so that the tests below reach every
    router there too."""
    groups = cluster_groups()
    if groups:
        s = ClusterServer(tmp_path_factory.mktemp("shoal-cluster"), 3, groups).start()
    else:
        s = Server(tmp_path_factory.mktemp("shoal"), "--routers", "3").start()
    yield s
    s.stop()


@pytest.fixture
def admin(server):
    """The default user's connection; every user it made is gone afterwards and the
    default user is as a new cluster has it."""
    client = server.client(protocol=2, decode_responses=True)
    client.flushall()
    for name in client.execute_command("FT._LIST"):
        client.execute_command("FT.DROPINDEX", name)
    yield client
    # Whether or not a test locked the default user ("nopass" takes any password).
    fresh = login(server, "default", "secret")
    fresh.execute_command("ACL", "SETUSER", "default", "reset", "on", "nopass",
                          "~*", "&*", "+@all")
    for name in fresh.execute_command("ACL", "USERS"):
        if name != "default":
            fresh.execute_command("ACL", "DELUSER", name)
    fresh.close()
    client.close()


def login(server, user, password, port=None, **kwargs):
    kwargs.setdefault("decode_responses", True)
    kwargs.setdefault("protocol", 2)
    return redis.Redis(host="127.0.0.1", port=port or server.port, username=user,
                       password=password, **kwargs)


def router_ports(server):
    """Every router's RESP port: all of a process cluster's nodes (the `shoal dev`
    cluster here hands its one port's connections to its nodes in turn)."""
    ports = getattr(server, "ports", None)
    return [resp for resp, _ in ports] if ports else [server.port]


def test_the_default_user_is_unrestricted_and_needs_no_password(admin):
    assert admin.execute_command("ACL", "WHOAMI") == "default"
    assert admin.execute_command("ACL", "USERS") == ["default"]
    assert admin.execute_command("ACL", "LIST") == [DEFAULT_RULES]
    categories = admin.execute_command("ACL", "CAT")
    for c in ("read", "write", "search", "admin", "dangerous"):
        assert c in categories
    assert "ft.search" in admin.execute_command("ACL", "CAT", "search")
    with pytest.raises(redis.exceptions.AuthenticationError, match="called without any password"):
        admin.execute_command("AUTH", "whatever")


def test_a_user_with_a_password_and_key_patterns(admin, server):
    assert admin.execute_command("ACL", "SETUSER", "alice", "on", ">pw", "~doc:*",
                                 "+@all", "-@dangerous", "+info") == "OK"
    admin.set("other:1", "x")
    alice = login(server, "alice", "pw")
    assert alice.execute_command("ACL", "WHOAMI") == "alice"
    assert alice.set("doc:1", "v") and alice.get("doc:1") == "v"
    with pytest.raises(redis.exceptions.NoPermissionError, match="No permissions to access a key"):
        alice.get("other:1")
    with pytest.raises(redis.exceptions.NoPermissionError,
                       match="User alice has no permissions to run the 'flushall' command"):
        alice.flushall()
    with pytest.raises(redis.exceptions.NoPermissionError, match=re.escape("'acl|setuser'")):
        alice.execute_command("ACL", "SETUSER", "alice", "+@all")
    # A multi-key command needs every key.
    with pytest.raises(redis.exceptions.NoPermissionError):
        alice.delete("doc:1", "other:1")
    assert admin.exists("doc:1", "other:1") == 2
    with pytest.raises(redis.exceptions.AuthenticationError):
        login(server, "alice", "wrong").ping()
    with pytest.raises(redis.exceptions.AuthenticationError):
        login(server, "nobody", "pw").ping()
    # redis-py with RESP3 logs in through HELLO 3 AUTH.
    alice3 = login(server, "alice", "pw", protocol=3)
    assert alice3.execute_command("ACL", "WHOAMI") == "alice"
    # Counted by the node that refused (alice's connection's).
    stats = alice.info("stats")
    assert stats["acl_access_denied_key"] >= 1
    assert stats["acl_access_denied_cmd"] >= 2


def test_read_only_and_write_only_patterns(admin, server):
    admin.execute_command("ACL", "SETUSER", "reader", "on", ">pw", "%R~doc:*", "%W~log:*",
                          "+@all")
    admin.set("doc:1", "v")
    reader = login(server, "reader", "pw")
    assert reader.get("doc:1") == "v"
    with pytest.raises(redis.exceptions.NoPermissionError, match="access a key"):
        reader.set("doc:1", "w")
    assert reader.set("log:1", "entry")
    with pytest.raises(redis.exceptions.NoPermissionError, match="access a key"):
        reader.get("log:1")
    # A write that answers with the value reads it too.
    with pytest.raises(redis.exceptions.NoPermissionError, match="access a key"):
        reader.incrby("log:n", 0)
    with pytest.raises(redis.exceptions.NoPermissionError, match="access a key"):
        reader.set("log:1", "x", get=True)


def test_an_index_is_searchable_only_when_every_prefix_is_readable(admin, server):
    vector = struct.pack("<3f", 1.0, 2.0, 3.0)
    for name, prefixes in (("both", ["vec:", "vector:"]), ("one", ["vector:"])):
        admin.execute_command("FT.CREATE", name, "ON", "HASH", "PREFIX", len(prefixes),
                              *prefixes, "SCHEMA", "v", "VECTOR", "FLAT", "6", "TYPE",
                              "FLOAT32", "DIM", "3", "DISTANCE_METRIC", "L2")
    admin.hset("vector:1", mapping={"v": vector})
    admin.hset("vec:1", mapping={"v": vector})
    wait_ready(admin, "one")
    wait_ready(admin, "both")
    admin.execute_command("ACL", "SETUSER", "user1", "on", ">search_pass", "~vector:*", "&*",
                          "+@all")
    user = login(server, "user1", "search_pass", decode_responses=False)
    query = ["*=>[KNN 2 @v $q]", "PARAMS", "2", "q", vector, "DIALECT", "2"]
    # Exactly valkey-search's case: one of the two prefixes is not the user's.
    with pytest.raises(redis.ResponseError,
                       match="The user doesn't have a permission to execute a command"):
        user.execute_command("FT.SEARCH", "both", *query)
    with pytest.raises(redis.ResponseError, match="permission to execute"):
        user.execute_command("FT.INFO", "both")
    with pytest.raises(redis.ResponseError, match="permission to execute"):
        user.execute_command("FT.DROPINDEX", "both")
    result = user.execute_command("FT.SEARCH", "one", *query)
    assert result[0] == 1 and result[1] == b"vector:1"
    # Creating an index over keys the user may not read is refused too; an index
    # over every key needs every key.
    with pytest.raises(redis.ResponseError, match="permission to execute"):
        user.execute_command("FT.CREATE", "mine", "PREFIX", "1", "vec:", "SCHEMA", "t", "TAG")
    with pytest.raises(redis.ResponseError, match="permission to execute"):
        user.execute_command("FT.CREATE", "all", "SCHEMA", "t", "TAG")
    assert user.execute_command("FT.CREATE", "mine", "PREFIX", "1", "vector:x:", "SCHEMA",
                                "t", "TAG") == b"OK"
    # An index that does not exist answers as it does for everybody.
    with pytest.raises(redis.ResponseError, match="(?i)unknown index|not found|no such"):
        user.execute_command("FT.SEARCH", "nosuch", "*")


def test_search_commands_follow_their_categories(admin, server):
    admin.execute_command("ACL", "SETUSER", "searcher", "on", ">pw", "~*", "-@all", "+@search")
    admin.execute_command("ACL", "SETUSER", "reader", "on", ">pw", "~*", "-@all", "+@read")
    admin.execute_command("FT.CREATE", "idx", "SCHEMA", "t", "TAG")
    searcher = login(server, "searcher", "pw")
    assert searcher.execute_command("FT.SEARCH", "idx", "*")[0] == 0
    with pytest.raises(redis.exceptions.NoPermissionError, match="'get' command"):
        searcher.get("k")
    # An index nobody made answers as it does for everybody, after the router looked
    # again (another router may have just made it).
    with pytest.raises(redis.ResponseError, match="Index with name 'nosuch' not found"):
        searcher.execute_command("FT.SEARCH", "nosuch", "*")
    reader = login(server, "reader", "pw")
    assert reader.execute_command("FT.SEARCH", "idx", "*")[0] == 0
    with pytest.raises(redis.exceptions.NoPermissionError, match="'ft.create' command"):
        reader.execute_command("FT.CREATE", "idx2", "SCHEMA", "t", "TAG")


def test_getuser_dryrun_and_deluser(admin, server):
    admin.execute_command("ACL", "SETUSER", "bob", "on", ">pw", "~b:*", "+get")
    user = admin.execute_command("ACL", "GETUSER", "bob")
    fields = dict(zip(user[::2], user[1::2]))
    assert fields["flags"] == ["on"]
    assert len(fields["passwords"]) == 1 and len(fields["passwords"][0]) == 64
    assert fields["commands"] == "-@all +get"
    assert fields["keys"] == "~b:*"
    assert fields["channels"] == ""
    assert admin.execute_command("ACL", "GETUSER", "nobody") is None
    assert "user bob on #" in " ".join(admin.execute_command("ACL", "LIST"))
    assert admin.execute_command("ACL", "DRYRUN", "bob", "GET", "b:1") == "OK"
    assert "no permissions to run the 'set'" in admin.execute_command(
        "ACL", "DRYRUN", "bob", "SET", "b:1", "x")
    assert "access a key" in admin.execute_command("ACL", "DRYRUN", "bob", "GET", "c:1")
    bob = login(server, "bob", "pw")
    assert bob.get("b:1") is None
    # Passwords are added and removed by value.
    admin.execute_command("ACL", "SETUSER", "bob", ">pw2", "<pw")
    # A revocation: every router refuses the old password within a map refresh.
    until_refused_everywhere(lambda: raw(server.port, "AUTH bob pw")[0].startswith("-WRONGPASS"))
    assert login(server, "bob", "pw2").get("b:1") is None
    with pytest.raises(redis.ResponseError, match="password you are trying to remove"):
        admin.execute_command("ACL", "SETUSER", "bob", "<nope")
    with pytest.raises(redis.ResponseError, match="'default' user cannot be removed"):
        admin.execute_command("ACL", "DELUSER", "default")
    assert admin.execute_command("ACL", "DELUSER", "bob", "nobody") == 1
    # A deleted user's connection must log in again.
    deadline = time.time() + 5
    while True:
        try:
            bob.get("b:1")
        except redis.exceptions.AuthenticationError:
            break
        except redis.ResponseError as e:
            assert "NOAUTH" in str(e)
            break
        assert time.time() < deadline, "a deleted user's connection still works"
        time.sleep(0.1)


def raw(port, *lines):
    """Sends inline commands on a new socket; the first line of each reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        stream = sock.makefile("rb")
        replies = []
        for line in lines:
            sock.sendall(line.encode() + b"\r\n")
            reply = stream.readline().decode().rstrip("\r\n")
            if reply.startswith("%") or reply.startswith("*"):
                stream.read1(65536)
            replies.append(reply)
        return replies


def until_refused_everywhere(refused_on_a_new_connection, timeout=5.0):
    """Waits until new connections are refused six times in a row, so that every node
    of a `shoal dev` cluster (they take new connections in turn) has refused one:
    other routers learn of a revocation within a map refresh (docs/consistency.md)."""
    deadline = time.time() + timeout
    refused = 0
    while refused < 6:
        if refused_on_a_new_connection():
            refused += 1
            continue
        refused = 0
        assert time.time() < deadline, "a revocation did not reach every router"
        time.sleep(0.1)


def refused_anonymously(server):
    until_refused_everywhere(
        lambda: raw(server.port, "GET k") == ["-NOAUTH Authentication required."])


def test_a_locked_default_user_requires_auth(admin, server):
    admin.execute_command("ACL", "SETUSER", "default", ">secret")
    # The connection that locked it stays logged in, as in Redis.
    assert admin.get("k") is None
    refused_anonymously(server)
    # redis-py without credentials fails as it connects: its HELLO 3 (RESP3) or its
    # CLIENT SETINFO (RESP2) is refused.
    with pytest.raises(redis.exceptions.AuthenticationError, match="HELLO must be called"):
        server.client(protocol=3).ping()
    with pytest.raises(redis.exceptions.AuthenticationError, match="Authentication required"):
        server.client(protocol=2).ping()
    hello, auth, after, wrong = raw(server.port, "HELLO 3", "AUTH secret", "GET k",
                                    "AUTH wrong")
    assert hello.startswith("-NOAUTH HELLO must be called with the client already authenticated")
    assert (auth, after) == ("+OK", "$-1")
    assert wrong == "-WRONGPASS invalid username-password pair or user is disabled."
    assert login(server, "default", "secret").ping()
    assert raw(server.port, "HELLO 2 AUTH default secret")[0].startswith("*")


def test_bad_rules_are_refused_in_redis_words(admin):
    with pytest.raises(redis.ResponseError,
                       match="Error in ACL SETUSER modifier '\\+nosuch': Unknown command or category name in ACL"):
        admin.execute_command("ACL", "SETUSER", "carol", "on", "+nosuch")
    with pytest.raises(redis.ResponseError, match="password hash must be exactly 64"):
        admin.execute_command("ACL", "SETUSER", "carol", "#abc")
    with pytest.raises(redis.ResponseError, match="modifier 'bogus': Syntax error"):
        admin.execute_command("ACL", "SETUSER", "carol", "bogus")
    # Nothing of a refused SETUSER was applied.
    assert admin.execute_command("ACL", "GETUSER", "carol") is None
    with pytest.raises(redis.ResponseError, match="unknown subcommand"):
        admin.execute_command("ACL", "NOPE")
    with pytest.raises(redis.ResponseError,
                       match=re.escape("wrong number of arguments for 'acl|getuser'")):
        admin.execute_command("ACL", "GETUSER")


def test_a_refused_command_dooms_its_transaction(admin, server):
    admin.execute_command("ACL", "SETUSER", "dave", "on", ">pw", "~d:*", "+@all")
    dave = login(server, "dave", "pw")
    pipe = dave.pipeline(transaction=True)
    pipe.set("d:1", "x")
    pipe.set("e:1", "x")
    with pytest.raises(redis.ResponseError):
        pipe.execute()
    assert admin.exists("d:1") == 0


def test_exec_checks_the_queued_commands_again(admin, server):
    admin.execute_command("ACL", "SETUSER", "gina", "on", ">pw", "~*", "+@all")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        stream = sock.makefile("rb")

        def send(line):
            sock.sendall(line.encode() + b"\r\n")
            return stream.readline().decode().rstrip("\r\n")

        assert send("AUTH gina pw") == "+OK"
        assert send("MULTI") == "+OK"
        assert send("SET g:1 x") == "+QUEUED"
        assert send("GET g:1") == "+QUEUED"
        admin.execute_command("ACL", "SETUSER", "gina", "-set")
        until_refused_everywhere(
            lambda: raw(server.port, "AUTH gina pw", "SET g:probe x")[1].startswith("-NOPERM"))
        assert send("EXEC") == "*2"
        assert stream.readline().decode().startswith("-NOPERM ACLs rules changed")
        assert stream.readline().decode() == "$-1\r\n"
    assert admin.exists("g:1") == 0


def test_every_router_sees_a_change_at_once(admin, server):
    """Users live in the cluster map: a user made through one router logs in through
    every router right away, and a grant made through one is used through another."""
    admin.execute_command("ACL", "SETUSER", "erin", "on", ">pw", "~*", "-@all", "+get",
                          "+acl|whoami")
    ports = router_ports(server)
    # New connections: a `shoal dev` cluster hands them to its nodes in turn.
    clients = [login(server, "erin", "pw", port=p) for p in ports for _ in range(3)]
    for c in clients:
        assert c.execute_command("ACL", "WHOAMI") == "erin"
        with pytest.raises(redis.exceptions.NoPermissionError):
            c.set("k", "v")
    admin.execute_command("ACL", "SETUSER", "erin", "+set")
    for c in clients:
        assert c.set("k", "v")
    for p in ports:
        listed = login(server, "default", "", port=p).execute_command("ACL", "LIST")
        assert any(line.startswith("user erin on #") and "+set" in line for line in listed)


def test_standalone_users_live_in_the_node(tmp_path):
    server = Server(tmp_path / "standalone", "--standalone").start()
    try:
        admin = server.client(decode_responses=True)
        assert admin.execute_command("ACL", "SETUSER", "frank", "on", ">pw", "~f:*",
                                     "+@all") == "OK"
        frank = login(server, "frank", "pw")
        assert frank.set("f:1", "x")
        with pytest.raises(redis.exceptions.NoPermissionError):
            frank.set("g:1", "x")
        assert admin.execute_command("ACL", "DELUSER", "frank") == 1
        with pytest.raises(redis.exceptions.AuthenticationError):
            login(server, "frank", "pw").ping()
    finally:
        server.stop()
