"""Static files: a parsed request in, a Response (bytes or FileRegion body) out.

Knows nothing of sockets, event loops or backends, and never sends anything itself.
"""

from c10k.static.handler import StaticFiles

__all__ = ["StaticFiles"]
