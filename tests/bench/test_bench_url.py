"""``c10k bench --url`` (issue 17): refusals at start (no load is generated here)."""

from __future__ import annotations

import pytest

from c10k.bench import cli


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("127.0.0.1:8080/x", "has no scheme"),
        ("ftp://127.0.0.1/x", "unsupported scheme"),
        ("http:///x", "has no host"),
        ("http://127.0.0.1:99999/", "bad port"),
        ("http://127.0.0.1:0/", "bad port 0"),
    ],
)
def test_bad_url_is_exit_2(url: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["keepalive", "--url", url, "--quick"])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("scenario", ["idle", "poller"])
def test_refused_scenario_says_why(scenario: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([scenario, "--url", "http://127.0.0.1:9/", "--quick"]) == 2
    assert f"--url does not apply to {scenario}:" in capsys.readouterr().err


def test_url_that_does_not_answer_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["keepalive", "--url", "dead=http://127.0.0.1:9/", "--quick"]) == 2
    assert "dead: GET http://127.0.0.1:9/ did not answer 200" in capsys.readouterr().err
