"""A line-based chat room on c10k.core: every line a client sends goes to every other client.

    python examples/chat.py --port 7001 --backend epoll    # then: nc 127.0.0.1 7001

``--port 0`` picks a free port (the first line printed says which). A member more than
``--max-behind`` bytes behind is dropped: one stalled reader cannot pin unbounded memory.
"""

from __future__ import annotations

import argparse
import signal

from c10k.core import Loop, Protocol, Transport, bind_socket, serve


class Room:
    def __init__(self, max_behind: int) -> None:
        self.members: set[Member] = set()
        self.max_behind = max_behind

    def say(self, sender: Member, line: bytes) -> None:
        for member in [m for m in self.members if m is not sender]:
            member.send(line)


class Member(Protocol):
    def __init__(self, room: Room) -> None:
        self.room = room
        self.partial = b""
        self.behind = False  # output is queued: this member reads slower than we write

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        self.room.members.add(self)

    def data_received(self, data: bytes) -> None:
        *lines, self.partial = (self.partial + data).split(b"\n")
        for line in lines:
            self.room.say(self, line + b"\n")
        if len(self.partial) > 64 * 1024:  # no newline in sight: not a chat client
            self.transport.abort()

    def send(self, line: bytes) -> None:
        if self.behind and self.transport.pending_bytes() > self.room.max_behind:
            return self.transport.abort()  # hopelessly behind: drop it, free its queue
        self.transport.write(line)

    def pause_writing(self) -> None:
        self.behind = True

    def resume_writing(self) -> None:
        self.behind = False

    def connection_lost(self, exc: BaseException | None) -> None:
        self.room.members.discard(self)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7001)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--max-behind", type=int, default=1 << 20, help="bytes (default 1 MiB)")
    args = parser.parse_args()
    loop = Loop(args.backend)
    room = Room(args.max_behind)
    sock = bind_socket(args.host, args.port)
    serve(loop, sock, lambda: Member(room))
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda _signum: loop.stop())
    host, port = sock.getsockname()[:2]
    print(f"chat on {host}:{port} ({loop.backend.name})", flush=True)
    loop.run()  # until SIGINT or SIGTERM
    loop.close()


if __name__ == "__main__":
    main()
