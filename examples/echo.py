"""An echo server on c10k.core: every byte a client sends comes back.

    python examples/echo.py --port 7000 --backend epoll

``--port 0`` picks a free port; the first line printed says which. Any readiness backend
runs it (``c10k backends`` lists them). Ctrl-C or SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import signal

from c10k.core import Loop, Protocol, bind_socket, serve


class Echo(Protocol):
    def data_received(self, data: bytes) -> bytes:
        # The return value is the reply: the transport writes it now and queues what the
        # socket does not take, so a slow reader never blocks the others.
        return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7000)
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args()
    loop = Loop(args.backend)
    sock = bind_socket(args.host, args.port)
    serve(loop, sock, Echo)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda _signum: loop.stop())
    host, port = sock.getsockname()[:2]
    print(f"echo on {host}:{port} ({loop.backend.name})", flush=True)
    loop.run()  # until SIGINT or SIGTERM
    loop.close()


if __name__ == "__main__":
    main()
