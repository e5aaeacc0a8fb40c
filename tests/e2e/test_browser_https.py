"""Headless Chromium over HTTPS, trusting a CA made for the run (issue 14).

Trust, done the way a user's machine does it: Chromium on Linux takes locally added
trust anchors from the NSS database in ``$HOME/.pki/nssdb``, so the test makes a fresh
HOME, creates that database with ``certutil`` (Debian package ``libnss3-tools``) and adds
the trustme CA with trust flags ``C,,`` (a CA for TLS servers). No
``--ignore-certificate-errors`` and no SPKI allow-list: Chromium's own verifier checks
the chain, names and dates. That this is real is shown by a second server whose
certificate comes from another CA, which Chromium must refuse
(``net::ERR_CERT_AUTHORITY_INVALID``), in the same browser and profile.

What one page load shows, per server mode (DevTools ``Network`` events over the pipe of
``cdp.py``): the document came over https with status 200, ``securityState`` "secure",
TLS 1.2 or 1.3 and an AEAD cipher from ``securityDetails``, issued by the test CA; the
page's one image came over the same TLS connection (``connectionId`` equal, the image's
``connectionReused``: keep-alive over TLS; one subresource only, since two at once would
rightly get a second connection); a 1 MiB file fetched by the page arrives whole (length
and SHA-256 computed in the page with ``crypto.subtle``, which only exists in a secure
context, compared with Python's).

Cost: one Chromium for the module (~1 s to start), then well under a second per mode, so
every mode that runs here is tested (``backend_params()``). Skipped when Chromium,
certutil or trustme is missing.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cdp import Browser
from test_browser import CHROMIUM, FLAGS

from helpers import ServerProcess, backend_params, local_ca

CERTUTIL = shutil.which("certutil")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install -y chromium)"),
    pytest.mark.skipif(
        CERTUTIL is None, reason="no certutil for the NSS database (apt-get install libnss3-tools)"
    ),
]
trustme = pytest.importorskip("trustme", reason="pip install trustme (the test extra)")

BIG_BYTES = 1 << 20
# a 1x1 PNG (the smallest valid one), so the image really decodes
PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)
PAGE = b"""<!doctype html><meta charset="utf-8"><title>https</title>
<img id="px" src="pixel.png" alt="pixel">
<script>
// called after the load event, so the image is the only request in flight before it
window.fetchBig = async () => {
  const r = await fetch("big.bin", {cache: "no-store"});
  const buf = await r.arrayBuffer();
  const digest = await crypto.subtle.digest("SHA-256", buf);
  const hex = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0"));
  return {status: r.status, length: buf.byteLength, sha256: hex.join(""),
          secure: window.isSecureContext};
};
</script>
"""


class NetBrowser(Browser):
    """``Browser`` that keeps every event (its ``wait_event`` drops the ones before the
    match, and those are the ``Network`` events this test reads)."""

    targets: dict[str, str]  # session -> target id, of the tabs ``load`` opened

    def __init__(self, binary: str, flags: list[str], profile: Path) -> None:
        super().__init__(binary, flags, profile)
        self.targets = {}

    def wait_for(self, method: str, session: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for ev in self.events[seen:]:
                if ev.get("method") == method and ev.get("sessionId") == session:
                    return ev
            seen = len(self.events)
            self.events.append(self._read_message(deadline))

    def load(self, url: str, timeout: float = 30) -> tuple[str, dict[str, Any]]:
        """Open a tab with the network domain on and the cache off, navigate to ``url``;
        return the session and ``Page.navigate``'s reply (``errorText`` when it failed)."""
        target: str = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session: str = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        self.call("Network.enable", session=session)
        self.call("Network.setCacheDisabled", {"cacheDisabled": True}, session=session)
        self.call("Page.enable", session=session)
        nav = self.call("Page.navigate", {"url": url}, session=session, timeout=timeout)
        if "errorText" not in nav:
            self.wait_for("Page.loadEventFired", session, timeout)
        self.targets[session] = target
        return session, nav

    def close_tab(self, session: str) -> None:
        self.call("Target.closeTarget", {"targetId": self.targets.pop(session)})

    def responses(self, session: str) -> dict[str, dict[str, Any]]:
        """The session's responses so far, by URL."""
        return {
            ev["params"]["response"]["url"]: ev["params"]["response"]
            for ev in self.events
            if ev.get("method") == "Network.responseReceived" and ev.get("sessionId") == session
        }


def big_body() -> bytes:
    return random.Random(14).randbytes(BIG_BYTES)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("https-site") / "www"
    root.mkdir()
    (root / "index.html").write_bytes(PAGE)
    (root / "pixel.png").write_bytes(PIXEL)
    (root / "big.bin").write_bytes(big_body())
    return root


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetBrowser]:
    assert CHROMIUM is not None
    assert CERTUTIL is not None
    home = tmp_path_factory.mktemp("chromium-home")  # Browser runs with HOME=profile.parent
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    ca_pem = local_ca()["dir"] / "ca.pem"
    for args in (
        ["-N", "--empty-password"],
        ["-A", "-t", "C,,", "-n", "c10k-test-ca", "-i", str(ca_pem)],
    ):
        r = subprocess.run(
            [CERTUTIL, "-d", f"sql:{nssdb}", *args], capture_output=True, timeout=30, check=False
        )
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    profile = home / "profile"
    profile.mkdir()
    b = NetBrowser(CHROMIUM, FLAGS, profile)
    with b:  # Browser.__enter__ is typed as returning a Browser
        yield b


def stop(srv: ServerProcess) -> None:
    code, _out, err = srv.stop()
    assert code == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]


@pytest.fixture(params=backend_params())
def https(request: pytest.FixtureRequest, site: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(site, request.param, tls=True)
    yield srv
    stop(srv)


@pytest.fixture(scope="module")
def untrusted(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # Same names, same server, a CA Chromium was never told about.
    d = tmp_path_factory.mktemp("other-ca")
    leaf = trustme.CA().issue_cert("localhost", "127.0.0.1")
    leaf.private_key_pem.write_to_path(str(d / "key.pem"))
    leaf.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
    srv = ServerProcess(
        site, "epoll", "--tls-cert", str(d / "cert.pem"), "--tls-key", str(d / "key.pem")
    )
    yield srv
    stop(srv)


def test_browser_https_page_image_and_download(browser: NetBrowser, https: ServerProcess) -> None:
    url = f"https://localhost:{https.port}/"
    session, nav = browser.load(url)
    assert "errorText" not in nav, (nav, browser.stderr_path)
    result = browser.evaluate(session, "window.fetchBig()", timeout=30)
    responses = browser.responses(session)
    doc, img, big = responses[url], responses[url + "pixel.png"], responses[url + "big.bin"]
    print(
        f"{https.argv[https.argv.index('--backend') + 1]}: {doc['protocol']} "
        f"{doc['securityDetails']['protocol']} {doc['securityDetails']['cipher']} "
        f"{doc['securityDetails']['keyExchangeGroup']} "
        f"connections doc={doc['connectionId']} img={img['connectionId']} "
        f"big={big['connectionId']}"
    )
    # the page: https, trusted, TLS 1.2/1.3, an AEAD cipher, the test CA's certificate
    assert doc["status"] == 200, doc
    assert doc["url"].startswith("https://")
    assert doc["protocol"] == "http/1.1", doc
    assert doc["securityState"] == "secure", doc
    details = doc["securityDetails"]
    assert details["protocol"] in ("TLS 1.2", "TLS 1.3"), details
    assert details["cipher"] in ("AES_128_GCM", "AES_256_GCM", "CHACHA20_POLY1305"), details
    assert "127.0.0.1" in details["sanList"], details
    # the image: same TLS connection, reused (keep-alive)
    assert img["status"] == 200, img
    assert img["securityState"] == "secure", img
    assert img["connectionId"] == doc["connectionId"], (doc, img)
    assert img["connectionReused"], img
    assert browser.evaluate(session, "document.getElementById('px').naturalWidth") == 1
    # the 1 MiB download, whole, in a secure context, on a kept-alive connection
    assert big["status"] == 200, big
    assert big["connectionReused"], big
    assert result == {
        "status": 200,
        "length": BIG_BYTES,
        "sha256": hashlib.sha256(big_body()).hexdigest(),
        "secure": True,
    }, result
    browser.close_tab(session)


def test_browser_https_refuses_untrusted_ca(browser: NetBrowser, untrusted: ServerProcess) -> None:
    url = f"https://localhost:{untrusted.port}/"
    session, nav = browser.load(url)
    assert nav.get("errorText") == "net::ERR_CERT_AUTHORITY_INVALID", nav
    browser.close_tab(session)
