"""The shared TLS session cache without sockets: the store, and OpenSSL resuming a session
made by one SSL_CTX on another (as on two workers) only when the cache is installed.

Handshakes run between two ``ssl.SSLObject``s over memory BIOs; the cross-process part
(workers forked after the store was made) is tests/server/test_server_tls.py's resumption
test with session IDs.
"""

from __future__ import annotations

import os
import ssl

import pytest

from c10k.server.sessioncache import MAX_DER, SessionStore, SharedSessionCache

trustme = pytest.importorskip("trustme", reason="pip install trustme (the test extra)")


def test_sessioncache_store_round_trip_and_misses() -> None:
    store = SessionStore(slots=4)
    sid = os.urandom(32)
    assert store.get(sid) is None
    assert store.put(sid, b"der-bytes")
    assert store.get(sid) == b"der-bytes"
    assert store.get(sid[:16]) is None  # a prefix is another ID
    assert store.get(b"") is None
    assert not store.put(sid, b"x" * (MAX_DER + 1))  # too big: not stored, old one kept
    assert store.get(sid) == b"der-bytes"
    assert not store.put(b"y" * 33, b"der")  # IDs are at most 32 bytes


def test_sessioncache_a_newer_session_takes_the_slot() -> None:
    store = SessionStore(slots=1)
    a, b = os.urandom(32), os.urandom(32)
    store.put(a, b"first")
    store.put(b, b"second, longer")
    assert store.get(a) is None
    assert store.get(b) == b"second, longer"


def test_sessioncache_store_is_shared_with_a_forked_child() -> None:
    store = SessionStore(slots=8)
    sid = os.urandom(32)
    pid = os.fork()
    if pid == 0:
        os._exit(0 if store.put(sid, b"from the child") else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.get(sid) == b"from the child"


class Pair:
    """A CA, a server certificate, and server/client contexts for TLS 1.2 without tickets."""

    def __init__(self) -> None:
        self.ca = trustme.CA()
        self.leaf = self.ca.issue_cert("localhost")
        self.client = ssl.create_default_context()
        self.ca.configure_trust(self.client)
        self.client.maximum_version = ssl.TLSVersion.TLSv1_2
        self.client.options |= ssl.OP_NO_TICKET

    def server(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.leaf.configure_cert(ctx)
        return ctx

    def handshake(
        self, server: ssl.SSLContext, session: ssl.SSLSession | None = None
    ) -> ssl.SSLObject:
        c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
        cl = self.client.wrap_bio(c_in, c_out, server_hostname="localhost", session=session)
        sv = server.wrap_bio(s_in, s_out, server_side=True)
        for _ in range(10):
            for end in (cl, sv):
                try:
                    end.do_handshake()
                except ssl.SSLWantReadError:
                    pass
            s_in.write(c_out.read())
            c_in.write(s_out.read())
        cl.write(b"x")  # the client's session is complete once data flowed
        s_in.write(c_out.read())
        assert sv.read(1) == b"x"
        return cl


@pytest.mark.parametrize("installed", [True, False])
def test_sessioncache_resumes_on_another_context_only_when_installed(installed: bool) -> None:
    pair = Pair()
    one, other = pair.server(), pair.server()  # two SSL_CTXs: two workers' caches
    cache = SharedSessionCache(SessionStore(slots=64))
    if installed:
        cache.install(one)
        cache.install(other)
    first = pair.handshake(one)
    assert not first.session_reused
    again = pair.handshake(other, first.session)
    assert again.session_reused is installed
    assert (cache.store.stored, cache.store.found) == ((1, 1) if installed else (0, 0))


def test_sessioncache_tls13_sessions_are_not_stored() -> None:
    pair = Pair()
    pair.client.maximum_version = ssl.TLSVersion.TLSv1_3
    server = pair.server()
    cache = SharedSessionCache(SessionStore(slots=64))
    cache.install(server)
    pair.handshake(server)
    assert cache.store.stored == 0  # TLS 1.3 resumes by ticket
