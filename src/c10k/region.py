"""FileRegion: the one type every layer shares.

A FileRegion names ``count`` bytes of an open file starting at ``offset``. The static
handler produces it, the HTTP layer passes it through untouched (it only asks ``len()``),
and the transport hands it to ``os.sendfile``. It imports nothing, so any layer may use it.

Ownership: the region does not own ``fd`` unless ``closer`` is given; whoever finishes
with the region (the transport, after the last byte or on abort) calls ``release()``
exactly once, which runs ``closer`` (typically ``os.close`` of a per-response fd, or
dropping a reference on a shared cached fd).
"""


class Residency:
    """What a probe last found in memory of one file version: ``[start, end)`` until
    ``until`` (monotonic), shared by every region of it, so that c10k.core.diskio asks the
    kernel once per file per moment, not once per response."""

    __slots__ = ("end", "start", "until")

    def __init__(self) -> None:
        self.start = self.end = 0
        self.until = 0.0


class FileRegion:
    __slots__ = ("closer", "count", "fd", "offset", "residency", "warm_end")

    def __init__(
        self,
        fd: int,
        offset: int,
        count: int,
        closer: "object | None" = None,
        residency: Residency | None = None,
    ) -> None:
        if offset < 0 or count < 0:
            raise ValueError(f"FileRegion needs offset >= 0 and count >= 0, got {offset}, {count}")
        self.fd = fd
        self.offset = offset
        self.count = count
        self.closer = closer
        # File offset up to which the pages were just read into memory in the disk pool
        # (c10k.core.diskio): sent from the loop without asking the kernel again.
        self.warm_end = 0
        # Shared by the regions of one file version (its cached fd's), or None.
        self.residency = residency

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return f"FileRegion(fd={self.fd}, offset={self.offset}, count={self.count})"

    def slice(self, start: int, stop: int) -> "FileRegion":
        """Return the sub-region [start, stop) of this region, sharing its fd (not its closer)."""
        if not 0 <= start <= stop <= self.count:
            raise ValueError(f"slice [{start}, {stop}) outside region of {self.count} bytes")
        return FileRegion(self.fd, self.offset + start, stop - start, None, self.residency)

    def release(self) -> None:
        """Run the closer once; later calls do nothing."""
        closer, self.closer = self.closer, None
        if closer is not None:
            closer(self.fd)  # type: ignore[operator]
