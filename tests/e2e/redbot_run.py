"""Run REDbot on one URL and print its notes as JSON (one object per line of output).

``python redbot_run.py [--method M] URL [NAME: VALUE ...]`` checks URL with the given
request headers, including REDbot's own follow-up requests (a Range request, If-None-Match and
If-Modified-Since revalidation, gzip negotiation), and prints
``{"status": ..., "notes": [{"id", "level", "category", "summary", "subnotes"}],
"error": ...}``.

A separate process: REDbot runs the global ``thor`` event loop and may warn about
things pytest turns into errors; neither should leak into the test process.
"""

from __future__ import annotations

import json
import sys
from configparser import ConfigParser
from typing import Any

import thor
from redbot.resource import HttpResource  # type: ignore[import-untyped,unused-ignore]

DEADLINE_SECONDS = 60


def note_json(note: Any) -> dict[str, Any]:
    return {
        "id": type(note).__name__,
        "level": note.level.value,
        "category": note.category.name,
        "summary": str(note.summary),
        "subnotes": [note_json(s) for s in note.subnotes],
    }


def main(argv: list[str]) -> int:
    method = "GET"
    if argv[:1] == ["--method"]:
        method, argv = argv[1], argv[2:]
    url, headers = argv[0], [tuple(h.split(": ", 1)) for h in argv[1:]]
    parser = ConfigParser()
    # REDbot refuses non-global addresses unless asked: we test on loopback.
    parser.read_dict({"redbot": {"enable_local_access": "True"}})
    resource = HttpResource(parser["redbot"])
    resource.set_request(url, method=method, headers=headers)

    @thor.events.on(resource)
    def check_done() -> None:
        thor.stop()

    thor.schedule(DEADLINE_SECONDS, thor.stop)
    resource.check()
    thor.run()
    error = resource.fetch_error
    print(
        json.dumps(
            {
                "done": resource.check_done,
                "status": resource.response.status_code,
                "notes": [note_json(n) for n in resource.response.notes],
                "error": None if error is None else f"{error.desc} {error.detail or ''}",
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
