"""io_uring through ctypes over the three raw syscalls: ring setup, SQE/CQE layout, submit/reap.

Theory of operation
-------------------
io_uring (Linux 5.1+) is the completion model of the C10K page's strategy 3 (aio, IOCP)
done right: the application writes requests (SQEs, 64 bytes) into a ring shared with
the kernel, one ``io_uring_enter`` submits the whole batch and waits, and results (CQEs,
16 bytes: user_data, res, flags) appear in a second shared ring. ``res`` is the syscall's
return value, or ``-errno``. No readiness step: the kernel does the recv/send/accept itself.

Layout, as in ``include/uapi/linux/io_uring.h``:
- ``io_uring_setup(entries, params)`` (425 on x86_64) fills ``io_uring_params``
  (120 bytes: sizes, flags, features, then two offset tables, SQ then CQ).
- With IORING_FEAT_SINGLE_MMAP (5.4+) the SQ and CQ rings share one mmap at offset 0; the
  SQE array is a second mmap at IORING_OFF_SQES. Older kernels need a third mmap for the
  CQ ring; we map it separately when the feature is missing.
- The SQ ring indexes SQEs through an ``array``; we fill it once with the identity so SQE
  slot ``i`` is always ring index ``i`` (liburing does the same), and then only move tail.
- CQ: entries from our ``head`` to the kernel's ``tail``; index with ``& mask``. A batch
  can wrap past the end of the array: we read it in (at most) two runs. (The PyPI
  ``liburing`` binding's CQE accessor indexes past the ring when a batch wraps; this is
  the bug class ``test_core_uring.py`` checks for with many more completions than entries.)
- Memory ordering: x86_64 is TSO and every read/write of a ring index here is a single
  aligned 32-bit access through ctypes, with the GIL hand-off around each syscall acting
  as a full barrier. On weakly-ordered CPUs a C binding needs acquire/release atomics;
  this one is only offered where ``platform.machine()`` is x86_64 (see ``SYSCALLS``).

Why our own binding and not PyPI ``liburing``: (1) the core's rule is stdlib only, and a
binding with a compiled extension adds a wheel per platform and Python version; (2) it
did not run here: the current wheel (2026.3.30) dies with SIGILL (an illegal-instruction
trap inside its Zig-built extension; cause not investigated) in ``liburing.Ring()`` on
this x86_64 VM, and 2024.5.3 ships no cp311 wheel (its sdist did not build within two
minutes), so no per-op comparison was possible; (3) its API mirrors C: an SQE object per
prep, and CQEs read as ``cqe[i]`` from the first ready one, which is the access that
goes past the end of the CQE array when a batch wraps.
Our cost per operation, measured with timeit on this machine (2,000 ops, best of 5):
``prep_send`` 0.58 us, a buffer-select RECV prep 0.40 us, ``take`` (copy out of a
provided buffer and give it back) 0.58 us, a NOP round trip (prep + submit + reap,
batched) 0.60 us. One ``struct.pack_into`` straight into the mapped SQE array is most
of it; an SQ-full check is one int compare (``_sq_full_at``), not a read of the kernel's
head. What we give up: liburing's helpers for newer opcodes; we bind the dozen we use.

Waiting: ``submit_and_wait(timeout)`` is one ``io_uring_enter(to_submit, 1, GETEVENTS |
EXT_ARG)`` with a ``__kernel_timespec`` (5.11+, IORING_FEAT_EXT_ARG), so a loop turn is
one syscall: submit the batch, sleep until a completion or the timeout. EINTR (a signal)
and ETIME (the timeout) are normal returns, not errors. SQEs are consumed by the kernel
even when the wait is interrupted; we learn how many from the kernel's SQ head, never
from the return value.

Provided buffers (IORING_REGISTER_PBUF_RING, 5.19+): a recv names a buffer *group*, and
the kernel picks a buffer only when data arrives. So ten thousand idle connections with
a recv pending hold no buffer each (the C10K page's memory-per-connection point), and a
completion says which buffer (``flags >> 16``) holds the bytes. We copy them out into a
``bytes`` and give the buffer back at once.

Failure reasons (``unavailable_reason``): kernel.io_uring_disabled (6.6+: 1 = only the
io_uring_group may create rings, 2 = nobody), seccomp filters (container runtimes'
default profiles block io_uring: EPERM or ENOSYS), kernels without a needed opcode,
found with IORING_REGISTER_PROBE on a small probe ring that is closed again.

Precedents: liburing (``io_uring_get_sqe`` submits nothing on a full SQ, the caller
must: ``prep`` does it for us), the kernel's own ``tools/io_uring`` examples (identity
SQ array, single mmap), Tokio-uring and glommio (the kernel may read a buffer until its
CQE: the caller keeps it alive).
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import platform
import struct
import sys
from collections.abc import Iterable

# -- syscall numbers -------------------------------------------------------------------
# The same on every architecture that uses the generic table (aarch64 included), but our
# ordering argument above holds for x86_64 only.
SYSCALLS = {"x86_64": (425, 426, 427)}
SYS_SETUP, SYS_ENTER, SYS_REGISTER = SYSCALLS.get(platform.machine(), (-1, -1, -1))

# -- opcodes (enum io_uring_op) ----------------------------------------------------------
OP_NOP = 0
OP_POLL_ADD = 6
OP_POLL_REMOVE = 7
OP_TIMEOUT = 11
OP_ACCEPT = 13
OP_ASYNC_CANCEL = 14
OP_CLOSE = 19
OP_READ = 22
OP_WRITE = 23
OP_SEND = 26
OP_RECV = 27
OP_SPLICE = 30
OP_SHUTDOWN = 34
OP_NAMES = {
    OP_NOP: "NOP",
    OP_POLL_ADD: "POLL_ADD",
    OP_TIMEOUT: "TIMEOUT",
    OP_ACCEPT: "ACCEPT",
    OP_ASYNC_CANCEL: "ASYNC_CANCEL",
    OP_READ: "READ",
    OP_SEND: "SEND",
    OP_RECV: "RECV",
}

# -- SQE flags (IOSQE_*) -----------------------------------------------------------------
SQE_IO_LINK = 1 << 2
SQE_ASYNC = 1 << 4
SQE_BUFFER_SELECT = 1 << 5
SQE_CQE_SKIP_SUCCESS = 1 << 6

# -- per-op flags ------------------------------------------------------------------------
ACCEPT_MULTISHOT = 1 << 0  # in sqe.ioprio (5.19)
RECV_MULTISHOT = 1 << 1  # in sqe.ioprio (6.0)
ASYNC_CANCEL_ALL = 1 << 0  # cancel_flags (5.19)

# -- CQE flags ---------------------------------------------------------------------------
CQE_F_BUFFER = 1 << 0
CQE_F_MORE = 1 << 1
CQE_BUFFER_SHIFT = 16

# -- setup, features, enter ------------------------------------------------------------
SETUP_CQSIZE = 1 << 3
SETUP_CLAMP = 1 << 4
SETUP_SUBMIT_ALL = 1 << 7
SETUP_COOP_TASKRUN = 1 << 8
SETUP_SINGLE_ISSUER = 1 << 12
SETUP_DEFER_TASKRUN = 1 << 13
FEAT_SINGLE_MMAP = 1 << 0
FEAT_NODROP = 1 << 1
FEAT_EXT_ARG = 1 << 8
ENTER_GETEVENTS = 1 << 0
ENTER_EXT_ARG = 1 << 3
OFF_SQ_RING = 0
OFF_CQ_RING = 0x8000000
OFF_SQES = 0x10000000
REGISTER_PROBE = 8
REGISTER_PBUF_RING = 22
UNREGISTER_PBUF_RING = 23
PROBE_OP_SUPPORTED = 1

# struct io_uring_sqe: opcode, flags, ioprio, fd, off, addr, len, op_flags, user_data,
# buf_index/buf_group, personality, splice_fd_in/file_index, addr3, pad.
SQE = struct.Struct("<BBHiQQIIQHHiQQ")
CQE = struct.Struct("<QiI")
SQE_SIZE = 64
CQE_SIZE = 16
_pack_sqe = SQE.pack_into
# struct io_uring_buf without its last field (resv), which in entry 0 is the ring's tail.
_pack_buf = struct.Struct("<QIH").pack_into
assert SQE.size == SQE_SIZE
assert CQE.size == CQE_SIZE

# Where CPython keeps a bytes object's data, relative to id(): lets a SEND name a bytes
# object's buffer without a copy or a ctypes object per send. Checked at import.
_probe_bytes = b"c10k"
BYTES_DATA_OFFSET: int = (
    ctypes.cast(ctypes.c_char_p(_probe_bytes), ctypes.c_void_p).value or 0
) - id(_probe_bytes)
assert ctypes.string_at(id(_probe_bytes) + BYTES_DATA_OFFSET, 4) == b"c10k"


class _SQOffsets(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_uint32)
        for n in ("head", "tail", "ring_mask", "ring_entries", "flags", "dropped", "array", "resv1")
    ] + [("user_addr", ctypes.c_uint64)]


class _CQOffsets(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_uint32)
        for n in ("head", "tail", "ring_mask", "ring_entries", "overflow", "cqes", "flags", "resv1")
    ] + [("user_addr", ctypes.c_uint64)]


class _Params(ctypes.Structure):
    _fields_ = [
        ("sq_entries", ctypes.c_uint32),
        ("cq_entries", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("sq_thread_cpu", ctypes.c_uint32),
        ("sq_thread_idle", ctypes.c_uint32),
        ("features", ctypes.c_uint32),
        ("wq_fd", ctypes.c_uint32),
        ("resv", ctypes.c_uint32 * 3),
        ("sq_off", _SQOffsets),
        ("cq_off", _CQOffsets),
    ]


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_int64)]


class _GeteventsArg(ctypes.Structure):
    _fields_ = [
        ("sigmask", ctypes.c_uint64),
        ("sigmask_sz", ctypes.c_uint32),
        ("min_wait_usec", ctypes.c_uint32),
        ("ts", ctypes.c_uint64),
    ]


class _BufReg(ctypes.Structure):
    _fields_ = [
        ("ring_addr", ctypes.c_uint64),
        ("ring_entries", ctypes.c_uint32),
        ("bgid", ctypes.c_uint16),
        ("flags", ctypes.c_uint16),
        ("resv", ctypes.c_uint64 * 3),
    ]


assert ctypes.sizeof(_Params) == 120
assert ctypes.sizeof(_GeteventsArg) == 24

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_syscall.argtypes = [ctypes.c_long] * 7


def _check(ret: int) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def result_error(res: int) -> OSError:
    """The OSError (subclass chosen by errno, as ``os`` would raise) for a CQE's
    negative ``res``."""
    return OSError(-res, os.strerror(-res))


def _addr(obj: ctypes._CData) -> int:
    return ctypes.addressof(obj)


class Ring:
    """One io_uring instance: the mapped rings, SQE preparation, submit and reap.

    Args:
        entries: SQ size (rounded up to a power of two by the kernel).
        cq_entries: CQ size; default 4x ``entries`` (completions from recvs that were
            submitted turns ago pile up; the kernel keeps overflow with FEAT_NODROP).
        flags: extra IORING_SETUP_* flags.

    Raises:
        OSError: io_uring_setup failed (ENOSYS: no io_uring or seccomp; EPERM: disabled by
            kernel.io_uring_disabled or seccomp; ENOMEM: locked-memory limit).
    """

    def __init__(self, entries: int = 256, cq_entries: int | None = None, flags: int = 0) -> None:
        if SYS_SETUP < 0:
            raise OSError(errno.ENOSYS, f"io_uring binding not offered on {platform.machine()}")
        p = _Params()
        p.flags = flags | SETUP_CQSIZE | SETUP_CLAMP
        p.cq_entries = cq_entries or entries * 4
        self.fd = _check(_syscall(SYS_SETUP, entries, _addr(p), 0, 0, 0, 0))
        self._maps: list[mmap.mmap] = []
        self._views: list[ctypes._CData] = []
        try:
            self._map(p)
        except BaseException:
            self.close()
            raise
        self.features = p.features
        self.setup_flags = p.flags
        self._arg = _GeteventsArg()
        self._ts = _Timespec()
        self._arg.ts = _addr(self._ts)
        self._arg_addr = _addr(self._arg)
        self.submitted = 0  # total SQEs the kernel has consumed (statistics)
        self.enters = 0

    def _map(self, p: _Params) -> None:
        so, co = p.sq_off, p.cq_off
        self.sq_entries: int = p.sq_entries
        self.cq_entries: int = p.cq_entries
        sq_size = so.array + p.sq_entries * 4
        cq_size = co.cqes + p.cq_entries * CQE_SIZE
        prot = mmap.PROT_READ | mmap.PROT_WRITE
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        if p.features & FEAT_SINGLE_MMAP:
            sq = cq = mmap.mmap(self.fd, max(sq_size, cq_size), flags, prot, offset=OFF_SQ_RING)
            self._maps.append(sq)
        else:  # pre-5.4: two ring mappings
            sq = mmap.mmap(self.fd, sq_size, flags, prot, offset=OFF_SQ_RING)
            self._maps.append(sq)
            cq = mmap.mmap(self.fd, cq_size, flags, prot, offset=OFF_CQ_RING)
            self._maps.append(cq)
        sqes = mmap.mmap(self.fd, p.sq_entries * SQE_SIZE, flags, prot, offset=OFF_SQES)
        self._maps.append(sqes)
        self.sqes = sqes
        self.cq = cq

        def u32(m: mmap.mmap, off: int) -> ctypes.c_uint32:
            v = ctypes.c_uint32.from_buffer(m, off)
            self._views.append(v)
            return v

        self._sq_khead = u32(sq, so.head)
        self._sq_ktail = u32(sq, so.tail)
        self._sq_kflags = u32(sq, so.flags)
        self._sq_mask = u32(sq, so.ring_mask).value
        self._cq_khead = u32(cq, co.head)
        self._cq_ktail = u32(cq, co.tail)
        self._cq_mask = u32(cq, co.ring_mask).value
        self._cq_off = co.cqes
        self._cq_overflow = u32(cq, co.overflow)
        array = (ctypes.c_uint32 * p.sq_entries).from_buffer(sq, so.array)
        for i in range(p.sq_entries):
            array[i] = i
        del array
        self._sq_tail = self._sq_ktail.value  # ours; published to the kernel at submit
        # The tail value at which the SQ is full; moved after each enter. One compare per
        # prep instead of reading the kernel's head through ctypes each time.
        self._sq_full_at = (self._sq_khead.value + self.sq_entries) & 0xFFFFFFFF
        self._cq_head = self._cq_khead.value

    # -- preparing -----------------------------------------------------------------------
    def sq_space(self) -> int:
        """Free SQE slots (slots filled but not yet submitted count as used)."""
        return self.sq_entries - ((self._sq_tail - self._sq_khead.value) & 0xFFFFFFFF)

    def pending(self) -> int:
        """SQEs prepared and not yet consumed by the kernel."""
        return (self._sq_tail - self._sq_khead.value) & 0xFFFFFFFF

    def _make_room(self) -> int:
        # The SQ is full: submit what is prepared (without waiting), as liburing's
        # callers must do by hand, and return the new tail.
        self.submit()
        self._sq_full_at = (self._sq_khead.value + self.sq_entries) & 0xFFFFFFFF
        if self._sq_tail == self._sq_full_at:
            raise OSError(errno.EBUSY, "io_uring submission queue full")
        return self._sq_tail

    def prep(
        self,
        opcode: int,
        fd: int,
        addr: int = 0,
        length: int = 0,
        off: int = 0,
        op_flags: int = 0,
        user_data: int = 0,
        flags: int = 0,
        ioprio: int = 0,
        buf_group: int = 0,
    ) -> None:
        """Write one SQE into the next free slot. When the SQ is full, the prepared
        batch is submitted first."""
        tail = self._sq_tail
        if tail == self._sq_full_at:
            tail = self._make_room()
        SQE.pack_into(
            self.sqes,
            (tail & self._sq_mask) << 6,
            opcode,
            flags,
            ioprio,
            fd,
            off,
            addr,
            length,
            op_flags,
            user_data,
            buf_group,
            0,
            0,
            0,
            0,
        )
        self._sq_tail = (tail + 1) & 0xFFFFFFFF

    def prep_nop(self, user_data: int) -> None:
        self.prep(OP_NOP, -1, user_data=user_data)

    def prep_accept(self, fd: int, user_data: int, flags: int = 0, multishot: bool = False) -> None:
        """ACCEPT on listening ``fd``; res = the new fd. ``flags``: SOCK_NONBLOCK|CLOEXEC."""
        self.prep(
            OP_ACCEPT,
            fd,
            op_flags=flags,
            user_data=user_data,
            ioprio=ACCEPT_MULTISHOT if multishot else 0,
        )

    def prep_recv(
        self,
        fd: int,
        user_data: int,
        addr: int = 0,
        length: int = 0,
        buf_group: int | None = None,
        multishot: bool = False,
    ) -> None:
        """RECV into [addr, addr+length), or into a buffer of group ``buf_group``."""
        if buf_group is None:
            self.prep(OP_RECV, fd, addr, length, user_data=user_data)
        else:
            self.prep(
                OP_RECV,
                fd,
                user_data=user_data,
                flags=SQE_BUFFER_SELECT,
                ioprio=RECV_MULTISHOT if multishot else 0,
                buf_group=buf_group,
            )

    def prep_send(
        self, fd: int, data: bytes, offset: int, user_data: int, msg_flags: int = 0
    ) -> None:
        """SEND ``data[offset:]``. The caller keeps ``data`` alive until the completion:
        the kernel reads it when the socket has room, which may be after this returns."""
        # prep() inlined: this runs once per response.
        tail = self._sq_tail
        if tail == self._sq_full_at:
            tail = self._make_room()
        _pack_sqe(
            self.sqes,
            (tail & self._sq_mask) << 6,
            OP_SEND,
            0,
            0,
            fd,
            0,
            id(data) + BYTES_DATA_OFFSET + offset,
            len(data) - offset,
            msg_flags,
            user_data,
            0,
            0,
            0,
            0,
            0,
        )
        self._sq_tail = (tail + 1) & 0xFFFFFFFF

    def prep_poll_add(self, fd: int, events: int, user_data: int) -> None:
        self.prep(OP_POLL_ADD, fd, op_flags=events, user_data=user_data)

    def prep_cancel(self, target: int, user_data: int, cancel_all: bool = False) -> None:
        """Cancel the request(s) whose user_data is ``target``; its completion comes with
        ``-ECANCELED`` (or its result, if it won the race)."""
        self.prep(
            OP_ASYNC_CANCEL,
            -1,
            addr=target,
            op_flags=ASYNC_CANCEL_ALL if cancel_all else 0,
            user_data=user_data,
        )

    # -- submitting and waiting ------------------------------------------------------------
    def _enter(self, min_complete: int, flags: int, arg: int, argsz: int) -> int:
        self._sq_ktail.value = self._sq_tail
        before = self._sq_khead.value
        to_submit = (self._sq_tail - before) & 0xFFFFFFFF
        self.enters += 1
        ret = _syscall(SYS_ENTER, self.fd, to_submit, min_complete, flags, arg, argsz, 0)
        head = self._sq_khead.value
        self.submitted += (head - before) & 0xFFFFFFFF
        self._sq_full_at = (head + self.sq_entries) & 0xFFFFFFFF
        if ret < 0:
            err = ctypes.get_errno()
            if err in (errno.EINTR, errno.ETIME, errno.EAGAIN, errno.EBUSY):
                # EINTR: a signal (its Python handler runs when we return); ETIME: the
                # timeout; EAGAIN/EBUSY: CQ overflow backlog, reap first and come back.
                return 0
            raise OSError(err, os.strerror(err))
        return int(ret)

    def submit(self) -> int:
        """Submit what is prepared, without waiting. Returns the kernel's count."""
        if self._sq_tail == self._sq_khead.value:
            return 0
        return self._enter(0, 0, 0, 0)

    def submit_and_wait(self, timeout: float | None = None, wait_nr: int = 1) -> int:
        """Submit, then wait for ``wait_nr`` completions or ``timeout`` seconds (None:
        no limit; 0: do not wait), in one io_uring_enter. A signal ends the wait early."""
        if timeout is not None and timeout <= 0:
            if self._cq_ktail.value != self._cq_head:
                return self.submit()
            # Still GETEVENTS with nr 0: flushes task work and CQ overflow.
            return self._enter(0, ENTER_GETEVENTS, 0, 0)
        if timeout is None:
            return self._enter(wait_nr, ENTER_GETEVENTS, 0, 0)
        ns = int(timeout * 1e9)
        ts = self._ts
        ts.tv_sec, ts.tv_nsec = divmod(ns, 1_000_000_000)
        return self._enter(wait_nr, ENTER_GETEVENTS | ENTER_EXT_ARG, self._arg_addr, 24)

    # -- reaping ---------------------------------------------------------------------------
    def ready(self) -> int:
        return (self._cq_ktail.value - self._cq_head) & 0xFFFFFFFF

    def reap(self) -> list[tuple[int, int, int]]:
        """Every completion available now, oldest first, as (user_data, res, flags); their
        slots are handed back to the kernel before returning."""
        head = self._cq_head
        tail = self._cq_ktail.value
        if head == tail:
            return []
        mask = self._cq_mask
        n = (tail - head) & 0xFFFFFFFF
        start = head & mask
        base = self._cq_off
        first = min(n, mask + 1 - start)  # entries before the array wraps
        cq = self.cq
        out = list(CQE.iter_unpack(cq[base + start * CQE_SIZE : base + (start + first) * CQE_SIZE]))
        if first < n:
            out += CQE.iter_unpack(cq[base : base + (n - first) * CQE_SIZE])
        self._cq_head = tail
        self._cq_khead.value = tail
        return out

    @property
    def cq_overflow(self) -> int:
        return self._cq_overflow.value

    # -- register ------------------------------------------------------------------------
    def register(self, opcode: int, arg: int, nr_args: int) -> int:
        return _check(_syscall(SYS_REGISTER, self.fd, opcode, arg, nr_args, 0, 0, 0))

    def probe(self) -> set[int]:
        """Opcodes this kernel supports (IORING_REGISTER_PROBE, 5.6+)."""
        nops = 256
        buf = (ctypes.c_uint8 * (16 + 8 * nops))()
        self.register(REGISTER_PROBE, _addr(buf), nops)
        raw = bytes(buf)
        ops_len = raw[1]
        return {
            raw[16 + 8 * i]
            for i in range(ops_len)
            if struct.unpack_from("<H", raw, 16 + 8 * i + 2)[0] & PROBE_OP_SUPPORTED
        }

    def close(self) -> None:
        if self.fd < 0:
            return
        self._views.clear()
        for attr in (
            "_sq_khead",
            "_sq_ktail",
            "_sq_kflags",
            "_cq_khead",
            "_cq_ktail",
            "_cq_overflow",
        ):
            self.__dict__.pop(attr, None)
        for m in self._maps:
            m.close()
        self._maps.clear()
        os.close(self.fd)
        self.fd = -1

    def __enter__(self) -> Ring:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BufferRing:
    """A provided-buffer ring (IORING_REGISTER_PBUF_RING, 5.19+): ``count`` buffers of
    ``size`` bytes the kernel picks from when a RECV with IOSQE_BUFFER_SELECT completes.

    The ring (``count`` x 16-byte ``io_uring_buf``; the 16-bit tail lives in the first
    entry's last two bytes) and the buffers are anonymous mmaps: page-aligned as the
    kernel requires, and released with the object.
    """

    def __init__(self, ring: Ring, group: int, count: int = 1024, size: int = 8192) -> None:
        if count & (count - 1) or not 0 < count <= 32768:
            raise ValueError("count must be a power of two <= 32768")
        self.ring = ring
        self.group = group
        self.count = count
        self.size = size
        self.mask = count - 1
        self._entries = mmap.mmap(-1, count * 16)
        self.buffers = mmap.mmap(-1, count * size)
        base = ctypes.c_char.from_buffer(self.buffers)
        self._base = ctypes.addressof(base)
        ring_base = ctypes.c_char.from_buffer(self._entries)
        ring_addr = ctypes.addressof(ring_base)
        del base, ring_base
        self._tail_view = ctypes.c_uint16.from_buffer(self._entries, 14)
        self._tail = 0
        reg = _BufReg(ring_addr=ring_addr, ring_entries=count, bgid=group)
        try:
            ring.register(REGISTER_PBUF_RING, _addr(reg), 1)
        except BaseException:
            self._release_maps()
            raise
        self.registered = True
        for bid in range(count):
            self._put(bid)
        self._publish()

    def _put(self, bid: int) -> None:
        # The first entry's resv field *is* the tail: write only addr, len, bid there.
        _pack_buf(
            self._entries,
            (self._tail & self.mask) * 16,
            self._base + bid * self.size,
            self.size,
            bid,
        )
        self._tail = (self._tail + 1) & 0xFFFF

    def _publish(self) -> None:
        self._tail_view.value = self._tail

    def take(self, flags: int, n: int) -> bytes:
        """The ``n`` bytes a completion put in the buffer named by its ``flags``; the
        buffer goes back to the kernel at once."""
        bid = flags >> CQE_BUFFER_SHIFT
        size = self.size
        off = bid * size
        data = self.buffers[off : off + n]
        # _put inlined (once per request on the server's hot path).
        tail = self._tail
        _pack_buf(self._entries, (tail & self.mask) << 4, self._base + off, size, bid)
        tail = (tail + 1) & 0xFFFF
        self._tail = tail
        self._tail_view.value = tail
        return data

    def give_back(self, flags: int) -> None:
        """Return the buffer of a completion whose bytes are not wanted."""
        if flags & CQE_F_BUFFER:
            self._put(flags >> CQE_BUFFER_SHIFT)
            self._publish()

    def _release_maps(self) -> None:
        self.__dict__.pop("_tail_view", None)
        self._entries.close()
        self.buffers.close()

    def close(self) -> None:
        if self.registered and self.ring.fd >= 0:
            reg = _BufReg(bgid=self.group)
            try:
                self.ring.register(UNREGISTER_PBUF_RING, _addr(reg), 1)
            except OSError:
                pass
        self.registered = False
        self._release_maps()


NEEDED_OPS = (OP_ACCEPT, OP_RECV, OP_SEND, OP_POLL_ADD, OP_ASYNC_CANCEL, OP_NOP)


def unavailable_reason(needed: Iterable[int] = NEEDED_OPS) -> str | None:
    """None if io_uring works here with ``needed`` opcodes, ext-arg waits and provided
    buffer rings; else why not and what to enable. Creates and closes one small ring."""
    if not sys.platform.startswith("linux"):
        return f"io_uring is Linux only (this is {sys.platform})"
    if SYS_SETUP < 0:
        return f"this io_uring binding supports x86_64 only (this is {platform.machine()})"
    disabled = _read_sysctl("/proc/sys/kernel/io_uring_disabled")
    if disabled == "2":
        return "io_uring is disabled: sysctl kernel.io_uring_disabled=2 (set it to 0)"
    try:
        ring = Ring(4)
    except OSError as exc:
        if exc.errno == errno.ENOSYS:
            return (
                "io_uring_setup: ENOSYS (kernel without CONFIG_IO_URING, or a seccomp "
                "filter such as Docker's default profile; run with a profile that allows "
                "io_uring_setup/enter/register)"
            )
        if exc.errno == errno.EPERM:
            hint = (
                "kernel.io_uring_disabled=1 and this user is not in kernel.io_uring_group"
                if disabled == "1"
                else "a seccomp filter or LSM denies it"
            )
            return f"io_uring_setup: EPERM ({hint}; set sysctl kernel.io_uring_disabled=0)"
        if exc.errno == errno.ENOMEM:
            return "io_uring_setup: ENOMEM (raise RLIMIT_MEMLOCK, ulimit -l, on kernels < 5.12)"
        return f"io_uring_setup failed: {exc}"
    try:
        if not ring.features & FEAT_EXT_ARG:
            return "kernel too old: io_uring_enter timeouts (IORING_FEAT_EXT_ARG) need Linux 5.11+"
        try:
            supported = ring.probe()
        except OSError as exc:
            return f"IORING_REGISTER_PROBE failed ({exc}); Linux 5.6+ is needed"
        missing = [OP_NAMES.get(op, str(op)) for op in needed if op not in supported]
        if missing:
            return f"kernel lacks io_uring opcodes {', '.join(missing)}; Linux 5.19+ is needed"
        try:
            BufferRing(ring, 0, count=1, size=64).close()
        except OSError as exc:
            return f"IORING_REGISTER_PBUF_RING failed ({exc}); Linux 5.19+ is needed"
    finally:
        ring.close()
    return None


def _read_sysctl(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None
