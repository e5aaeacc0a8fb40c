"""What a layer between a mode's transport and the Session (TLSLayer, ProxyLayer) passes
straight down to the transport under it (``base``)."""

from __future__ import annotations

from typing import Any


class Layer:
    __slots__ = ()
    base: Any

    def send_file(self, head: bytes, region: Any) -> None:
        self.writelines([head, region])  # type: ignore[attr-defined]  # (each layer's)

    def unacked_bytes(self) -> int:
        return int(self.base.unacked_bytes())

    def set_send_lowat(self, nbytes: int) -> None:
        self.base.set_send_lowat(nbytes)

    def pause_reading(self) -> None:
        self.base.pause_reading()

    def resume_reading(self) -> None:
        self.base.resume_reading()
