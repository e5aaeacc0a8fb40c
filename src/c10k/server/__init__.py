"""c10k.server: the only package that puts core, http and static together."""

from c10k.server.config import ServerConfig
from c10k.server.readiness import Server

__all__ = ["Server", "ServerConfig"]
