"""``cdb healthcheck``: the image's Docker HEALTHCHECK, a liveness check of what PID 1 runs.

One image runs many programs, so the check reads the command line of the container's main
process: ``cdb run <service>`` → that service's ``/livez`` on ``HTTP_PORT`` or its default
port; ``cdb-operator --liveness URL`` → kopf's liveness endpoint; anything else (a one-off
command such as ``cdb backup``) has nothing to probe and passes. ``CDB_HEALTHCHECK_URL``
overrides the guess. Liveness, not readiness: Docker (like the kubelet) should only
restart a wedged process, never one that waits for Redis or PostgreSQL to come back.
Standard library only, so the check stays cheap every interval.
"""

from __future__ import annotations

import argparse
import os
import urllib.error
import urllib.parse
import urllib.request

#: The services' default ports (``Service.default_port``), without importing the services.
PORTS = {
    "feed": 8000,
    "signal": 8001,
    "risk": 8002,
    "execution": 8003,
    "persistence": 8004,
    "notifier": 8005,
    "dashboard": 8006,
    "advisor": 8007,
}
LIVENESS_PATH = "/livez"


def guess_url(argv: list[str], env: dict[str, str]) -> str | None:
    """The liveness URL of the program whose command line is ``argv``, or ``None``."""
    for i, arg in enumerate(argv):
        if arg.startswith("--liveness="):
            return arg.split("=", 1)[1] or None
        if arg == "--liveness" and i + 1 < len(argv):
            return argv[i + 1] or None
    if "run" in argv and argv.index("run") + 1 < len(argv):
        service = argv[argv.index("run") + 1]
        port = env.get("HTTP_PORT") or PORTS.get(service)
        if port:
            return f"http://127.0.0.1:{port}{LIVENESS_PATH}"
    return None


def local(url: str) -> str:
    """A wildcard listen address (``0.0.0.0``, ``::``) becomes the loopback to connect to."""
    parts = urllib.parse.urlsplit(url)
    if parts.hostname in ("0.0.0.0", "::", ""):
        return parts._replace(netloc=f"127.0.0.1:{parts.port or 80}").geturl()
    return url


def command_line(pid: str) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]


def check(url: str, timeout: float) -> tuple[bool, str]:
    """GET ``url``: healthy on 2xx; the second value says what was seen."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= resp.status < 300, f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}: {exc.read(300).decode(errors='replace')}"
    except OSError as exc:
        return False, str(exc)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pid",
        default=os.environ.get("CDB_HEALTHCHECK_PID", "1"),
        help="process whose command line says what to probe (default: 1, the container's)",
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("CDB_HEALTHCHECK_URL"),
        help="probe this URL instead of guessing (env CDB_HEALTHCHECK_URL)",
    )
    parser.add_argument("--timeout", type=float, default=4.0, help="seconds (default 4)")


def main(args: argparse.Namespace) -> int:
    """Exit 0 when the program answers its liveness URL (or has none), 1 otherwise."""
    url = args.url
    if not url:
        argv = command_line(args.pid)
        url = guess_url(argv, dict(os.environ))
        if url is None:
            print("nothing to probe for:", " ".join(argv))
            return 0
    url = local(url)
    ok, seen = check(url, args.timeout)
    print(f"{url}: {'ok' if ok else 'failing'} ({seen})")
    return 0 if ok else 1
