"""TLS session IDs resumed on every worker: OpenSSL's session cache, shared across processes.

Session tickets already resume on any worker (the contexts, and so the ticket keys, are
made before the fork). A TLS 1.2 client that does not do tickets resumes by session ID,
which OpenSSL looks up in a cache inside one process: with SO_REUSEPORT workers it would
resume only when it happens to reach the worker that made the session. This is nginx's
``ssl_session_cache shared:SSL:...``: OpenSSL's external cache callbacks
(``SSL_CTX_sess_set_new_cb``/``_get_cb``) store each new TLS 1.2 session (DER, from
``i2d_SSL_SESSION``) in an anonymous shared mapping made before the fork, and look up an ID
the process does not know there. OpenSSL checks what comes back (session ID context,
expiry, version, cipher) as it checks its own cache.

Python's ``ssl`` module does not expose these callbacks, so they are set with ctypes on
the ``SSL_CTX`` of each ``ssl.SSLContext`` (the first field after the object header of
CPython's ``PySSLContext``; checked by comparing ``SSL_CTX_get_options`` with
``SSLContext.options`` before anything is set, and refused with the reason if the layout
or the library differs). libssl is the one ``_ssl`` is linked against, found in
/proc/self/maps, so the callbacks act on the same library instance.

Layout: ``SLOTS`` slots of ``SLOT_BYTES``, direct-mapped by the first 8 bytes of the
session ID (random, so uniform); a newer session overwrites an older one in its slot. A
slot: DER length (4 bytes, 0 = empty), ID length (1), ID (32), DER. One lock (a POSIX
semaphore shared across the fork) around each copy in or out; a worker that died holding
it makes the others treat the cache as empty after ``LOCK_WAIT`` rather than wait.
TLS 1.3 sessions are not stored: OpenSSL reports them too, but they resume by ticket.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import multiprocessing
import ssl
import struct
from typing import Any

log = logging.getLogger("c10k.server")

SLOTS = 16384
SLOT_BYTES = 1024  # a TLS 1.2 session is ~130-250 bytes of DER (more with a client cert)
HEAD = struct.Struct("<IB32s")
MAX_DER = SLOT_BYTES - HEAD.size
LOCK_WAIT = 0.05  # seconds
TLS1_3_VERSION = 0x0304

NEW_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
GET_CB = ctypes.CFUNCTYPE(
    ctypes.c_void_p,
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_ubyte),
    ctypes.c_int,
    ctypes.POINTER(ctypes.c_int),
)


class SessionStore:
    """Fixed slots in memory shared by the processes forked after it was made."""

    def __init__(self, slots: int = SLOTS) -> None:
        self.slots = slots
        self.mem = mmap.mmap(-1, slots * SLOT_BYTES)  # MAP_SHARED | MAP_ANONYMOUS
        self.lock = multiprocessing.get_context("fork").Lock()
        self.stored = self.found = 0  # this process's counts

    def _offset(self, sid: bytes) -> int:
        return (int.from_bytes(sid[:8], "little") % self.slots) * SLOT_BYTES

    def put(self, sid: bytes, der: bytes) -> bool:
        if not 0 < len(sid) <= 32 or len(der) > MAX_DER:
            return False
        at = self._offset(sid)
        if not self.lock.acquire(timeout=LOCK_WAIT):
            return False
        try:
            self.mem[at + HEAD.size : at + HEAD.size + len(der)] = der
            HEAD.pack_into(self.mem, at, len(der), len(sid), sid)
        finally:
            self.lock.release()
        self.stored += 1
        return True

    def get(self, sid: bytes) -> bytes | None:
        if not 0 < len(sid) <= 32:
            return None
        at = self._offset(sid)
        if not self.lock.acquire(timeout=LOCK_WAIT):
            return None
        try:
            size, n, stored = HEAD.unpack_from(self.mem, at)
            if not size or stored[:n] != sid or n != len(sid):
                return None
            der = self.mem[at + HEAD.size : at + HEAD.size + size]
        finally:
            self.lock.release()
        self.found += 1
        return der


def _libssl_path() -> str:
    """The libssl this process's ``_ssl`` uses (Linux: from /proc/self/maps)."""
    import _ssl  # noqa: F401  (loaded, so its libssl is mapped)

    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = "/" + line.rstrip("\n").partition(" /")[2]
                if "/libssl.so" in path:
                    return path
    except OSError as exc:
        raise OSError(f"cannot read /proc/self/maps: {exc.strerror}") from None
    raise OSError("no shared libssl in this process (is _ssl linked statically?)")


def _load_lib() -> Any:
    lib = ctypes.CDLL(_libssl_path())
    lib.SSL_CTX_get_options.restype = ctypes.c_uint64
    lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
    lib.SSL_CTX_sess_set_new_cb.argtypes = [ctypes.c_void_p, NEW_CB]
    lib.SSL_CTX_sess_set_get_cb.argtypes = [ctypes.c_void_p, GET_CB]
    lib.SSL_SESSION_get_id.restype = ctypes.c_void_p
    lib.SSL_SESSION_get_id.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint)]
    lib.SSL_SESSION_get_protocol_version.argtypes = [ctypes.c_void_p]
    lib.i2d_SSL_SESSION.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.d2i_SSL_SESSION.restype = ctypes.c_void_p
    lib.d2i_SSL_SESSION.argtypes = [
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_void_p),
        ctypes.c_long,
    ]
    return lib


def ssl_ctx_pointer(ctx: ssl.SSLContext, lib: Any) -> int:
    """The ``SSL_CTX *`` inside ``ctx``, checked against the context's own options."""
    ptr = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not ptr or lib.SSL_CTX_get_options(ptr) != ctx.options:
        raise OSError("this Python's ssl.SSLContext layout is not the one expected")
    return int(ptr)


class SharedSessionCache:
    """The store and the callbacks that fill and read it, for any number of contexts."""

    def __init__(self, store: SessionStore | None = None) -> None:
        self.lib = _load_lib()
        self.store = store or SessionStore()
        self._new = NEW_CB(self._on_new)
        self._get = GET_CB(self._on_get)
        self.failed = False

    def install(self, ctx: ssl.SSLContext) -> None:
        ptr = ssl_ctx_pointer(ctx, self.lib)
        # OpenSSL calls the callbacks for as long as the context lives: the context
        # keeps them (freed ctypes trampolines would crash the process).
        ctx._c10k_session_cache = self  # type: ignore[attr-defined]
        self.lib.SSL_CTX_sess_set_new_cb(ptr, self._new)
        self.lib.SSL_CTX_sess_set_get_cb(ptr, self._get)

    def _on_new(self, _ssl: int | None, sess: int | None) -> int:
        # Inside OpenSSL's handshake: never raise (ctypes would print and go on).
        try:
            lib = self.lib
            if lib.SSL_SESSION_get_protocol_version(sess) >= TLS1_3_VERSION:
                return 0
            n = ctypes.c_uint()
            sid = ctypes.string_at(lib.SSL_SESSION_get_id(sess, ctypes.byref(n)), n.value)
            size = lib.i2d_SSL_SESSION(sess, None)
            if not sid or not 0 < size <= MAX_DER:
                return 0
            buf = ctypes.create_string_buffer(size)
            lib.i2d_SSL_SESSION(sess, ctypes.byref(ctypes.c_void_p(ctypes.addressof(buf))))
            self.store.put(sid, buf.raw)
        except Exception:
            self._failed()
        return 0  # OpenSSL keeps its reference; we kept none

    def _on_get(self, _ssl: int | None, sid: Any, length: int, copy: Any) -> int | None:
        try:
            copy[0] = 0  # the session returned is ours to give: no extra reference
            der = self.store.get(ctypes.string_at(sid, length))
            if der is None:
                return None
            buf = ctypes.create_string_buffer(der, len(der))
            pointer = ctypes.c_void_p(ctypes.addressof(buf))
            session: int | None = self.lib.d2i_SSL_SESSION(None, ctypes.byref(pointer), len(der))
            return session
        except Exception:
            self._failed()
            return None

    def _failed(self) -> None:
        if not self.failed:
            self.failed = True
            log.exception("TLS session cache: a callback failed (sessions may not resume)")


_SHARED: SharedSessionCache | None = None
_UNAVAILABLE: str | None = None


def share_sessions(contexts: list[ssl.SSLContext]) -> str | None:
    """Give ``contexts`` the shared session cache (one per process tree: made at the
    first call, before the workers fork, and kept across reloads). Returns None, or why
    the cache cannot be used here (the contexts then keep OpenSSL's per-process one)."""
    global _SHARED, _UNAVAILABLE
    if _UNAVAILABLE is None and _SHARED is None:
        try:
            _SHARED = SharedSessionCache()
        except (OSError, AttributeError) as exc:
            _UNAVAILABLE = str(exc)
    if _SHARED is None:
        return _UNAVAILABLE
    try:
        for ctx in contexts:
            _SHARED.install(ctx)
    except OSError as exc:
        return str(exc)
    return None
