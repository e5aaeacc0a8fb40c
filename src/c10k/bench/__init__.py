"""c10k.bench: the project's own benchmark (``c10k bench``), issue 3.

The bench knows a server only as a command line plus host:port: it starts c10k exactly as it
starts nginx, ``http.server``, uvicorn or aiohttp, as a subprocess pinned to one core, drives
it with wrk or its own nonblocking Python load generator pinned to another, and writes JSON,
Markdown and plots.  It never imports ``c10k.http``, ``c10k.static`` or ``c10k.server``.

Modules, from data to output:
    scenarios/    the scenarios as data (table.py), and one module per kind of measurement
    peers.py      the servers: command lines, start/probe/stop by process group
    client.py     the Python load generator (processes x epoll, JSON-lines control)
    wrk.py        wrk runner for the high-rate runs
    poller.py     the poll-vs-epoll curve, no server involved
    machine.py    /proc: machine description, CPU accounting, RSS
    stats.py      histograms, percentiles, wrk output parsing
    runner.py     interleaved rounds, the JSON document
    report.py     medians, ratios to the first server, terminal and Markdown tables
    plot.py       PNGs from the JSON (matplotlib, optional)
    cli.py        ``c10k bench`` argument parsing; ``main(argv) -> int``
"""

__all__: list[str] = []
