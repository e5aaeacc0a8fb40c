"""HAProxy (Debian package) in front of c10k servers, for the PROXY protocol and health
tests: ``haproxy -db`` with a generated TCP-mode config, its state read from its stats
socket."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from helpers import free_port, wait_listening


class HAProxy:
    """``haproxy -db`` in front of one server, TCP mode, the PROXY header toward it."""

    def __init__(
        self,
        tmp: Path,
        server_port: int,
        send: str,
        check: bool = True,
        second: int | None = None,
        check_path: str = "/small.txt",
    ) -> None:
        self.port = free_port()
        self.sock = tmp / "haproxy.sock"
        cfg = tmp / "haproxy.cfg"
        checks = "check check-send-proxy inter 200ms rise 1 fall 1"
        cfg.write_text(
            f"""global
  stats socket {self.sock} mode 600 level admin
defaults
  mode tcp
  timeout connect 2s
  timeout client 10s
  timeout server 10s
frontend fe
  bind 127.0.0.1:{self.port}
  default_backend be
backend be
  retries 0
  option httpchk GET {check_path}
  http-check expect status 200
  server s1 127.0.0.1:{server_port} {send} {checks if check else ""}
{f"  server s2 127.0.0.1:{second} {send} {checks}" if second else ""}
"""
        )
        subprocess.run(["haproxy", "-c", "-q", "-f", str(cfg)], check=True, timeout=10)
        self.proc = subprocess.Popen(
            ["haproxy", "-db", "-f", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    def server_states(self) -> list[str]:
        """Each server's operational state as HAProxy sees it ("2" is UP)."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.sock))
            s.sendall(b"show servers state be\n")
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        # A version line, then "# be_id be_name srv_id srv_name srv_addr srv_op_state ...".
        rows = [line.split() for line in out.decode().splitlines() if line[:1].isdigit()]
        return [row[5] for row in rows if len(row) > 5]

    def wait_up(self, servers: int = 1, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        states: list[str] = []
        while time.monotonic() < deadline:
            if self.sock.exists():
                try:
                    states = self.server_states()
                    if states.count("2") == servers:
                        return
                except OSError:
                    pass
            time.sleep(0.05)
        raise AssertionError(f"HAProxy never saw {servers} server(s) up: {states}")

    def wait_listening(self) -> None:
        wait_listening(self.port)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.communicate(timeout=10)
