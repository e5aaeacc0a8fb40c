"""c10k.server: the only package that puts core, http and static together."""

from c10k.server.app import Server
from c10k.server.config import ServerConfig

__all__ = ["Server", "ServerConfig"]
