"""Drives `rig toxiproxy` through the toxiproxy-python client (PyPI `toxiproxy-python`),
unchanged: every operation the client offers, each answer asserted. Exit 0 when all hold.

    PYTHONPATH=CACHE python3 tests/conformance/toxiproxy_python.py 127.0.0.1:PORT
"""

import socket
import sys
import threading
import time

import toxiproxy
from toxiproxy.api import APIConsumer
from toxiproxy.exceptions import NotFound, ProxyExists


def echo_server():
    """A TCP echo server on a free loopback port (daemon threads end with the script)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)

    def serve(conn):
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(data)

    def accept():
        while True:
            conn, _ = server.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return "127.0.0.1:%d" % server.getsockname()[1]


def round_trip(listen, payload=b"ping", timeout=5.0):
    """Sends payload through the proxy and returns (echo, seconds)."""
    host, port = listen.rsplit(":", 1)
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=timeout) as conn:
        conn.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = conn.recv(65536)
            if not chunk:
                break
            got += chunk
    return got, time.monotonic() - started


def check(condition, what):
    if not condition:
        print("FAIL: " + what)
        sys.exit(1)
    print("ok: " + what)


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    server = toxiproxy.Toxiproxy()
    server.update_api_consumer(host, int(port))
    upstream = echo_server()

    check(server.running(), "running")
    check(server.version().startswith(b"{") and b"2." in server.version(), "version")
    server.destroy_all()
    check(server.proxies() == {}, "no proxies after destroy_all")

    proxy = server.create(upstream=upstream, name="py_basic")
    check(proxy.name == "py_basic" and proxy.upstream == upstream and proxy.enabled, "create")
    check(not proxy.listen.endswith(":0"), "create shows the bound port")
    try:
        server.create(upstream=upstream, name="py_basic")
        check(False, "a duplicate is refused")
    except ProxyExists:
        check(True, "a duplicate is refused (409)")
    check(set(server.proxies()) == {"py_basic"}, "list")
    check(server.get_proxy("py_basic").listen == proxy.listen, "get")
    got, _ = round_trip(proxy.listen)
    check(got == b"ping", "data flows through the proxy")

    toxics = {
        "latency": {"latency": 300, "jitter": 0},
        "bandwidth": {"rate": 1000},
        "slow_close": {"delay": 10},
        "timeout": {"timeout": 1000},
        "slicer": {"average_size": 64, "size_variation": 8, "delay": 100},
        "limit_data": {"bytes": 4096},
        "reset_peer": {"timeout": 100},
    }
    for kind, attributes in toxics.items():
        proxy.add_toxic(type=kind, name="t_" + kind, stream="upstream", toxicity=0.5,
                        attributes=attributes)
    listed = proxy.toxics()
    check(set(listed) == {"t_" + k for k in toxics}, "every toxic type is added")
    for kind, attributes in toxics.items():
        toxic = listed["t_" + kind]
        check(toxic.type == kind and toxic.stream == "upstream" and toxic.toxicity == 0.5
              and toxic.attributes == attributes, "toxic %s reads back as given" % kind)
    # Update a toxic's attributes (the client has no call for it: its own HTTP layer).
    APIConsumer.post("/proxies/py_basic/toxics/t_latency",
                     json={"attributes": {"latency": 150}, "toxicity": 1.0})
    updated = proxy.get_toxic("t_latency")
    check(updated.attributes["latency"] == 150 and updated.toxicity == 1.0, "update a toxic")
    for kind in toxics:
        if kind != "latency":
            check(proxy.destroy_toxic("t_" + kind), "remove toxic %s" % kind)
    check(set(proxy.toxics()) == {"t_latency"}, "only the latency toxic is left")
    _, took = round_trip(proxy.listen)
    check(took >= 0.15, "the latency toxic delays data (%.3f s)" % took)
    try:
        proxy.destroy_toxic("t_nope")
        check(False, "removing a missing toxic is refused")
    except NotFound:
        check(True, "removing a missing toxic is 404")

    with proxy.down():
        check(not server.get_proxy("py_basic").enabled, "disable")
        try:
            round_trip(proxy.listen, timeout=1.0)
            check(False, "a disabled proxy refuses connections")
        except OSError:
            check(True, "a disabled proxy refuses connections")
    check(server.get_proxy("py_basic").enabled, "enable")
    check(server.reset(), "reset")
    check(proxy.toxics() == {} and server.get_proxy("py_basic").enabled, "reset removed the toxics")

    spaced = server.create(upstream=upstream, name="py proxy")
    check(server.get_proxy("py proxy") is not None, "a name with a space is listed")
    spaced.add_toxic(type="latency", attributes={"latency": 1, "jitter": 0})
    check(set(spaced.toxics()) == {"latency_downstream"}, "a name with a space takes toxics")
    check(spaced.destroy(), "a name with a space is deleted")

    created = server.populate([
        {"name": "py_pop_a", "upstream": upstream, "listen": "127.0.0.1:0"},
        {"name": "py_pop_b", "upstream": upstream, "listen": "127.0.0.1:0"},
    ])
    check(sorted(p.name for p in created) == ["py_pop_a", "py_pop_b"], "populate")
    check(set(server.proxies()) == {"py_basic", "py_pop_a", "py_pop_b"}, "populate lists")
    check(proxy.destroy(), "delete")
    try:
        APIConsumer.get("/proxies/py_basic")
        check(False, "a deleted proxy is gone")
    except NotFound:
        check(True, "a deleted proxy is 404")
    server.destroy_all()
    check(server.proxies() == {}, "destroy_all")
    print("toxiproxy-python: every check passed")


if __name__ == "__main__":
    main()
