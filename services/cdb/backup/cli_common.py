"""What ``cdb backup`` and ``cdb restore`` share: settings, SIGTERM, one-line failures."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import psycopg2
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from cdb.backup.tools import BackupError, last_line, redact
from cdb.local.state import server_overrides
from cdb.settings import SettingsError, load_settings

S = TypeVar("S", bound=BaseSettings)


class Interrupted(BaseException):
    """SIGTERM arrived (a pod being stopped): unwind so the partial work is removed."""


def secret_values(settings: list[BaseSettings]) -> list[str]:
    """Every secret the loaded settings hold, to be redacted from anything printed."""
    return [
        value.get_secret_value()
        for obj in settings
        for name in type(obj).model_fields
        if isinstance(value := getattr(obj, name, None), SecretStr)
    ]


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


positive_int.__name__ = "integer >= 1"  # argparse names the type in its error


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(text)
    return value


positive_float.__name__ = "number > 0"


@contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """Turn SIGTERM into an exception for the duration, so ``finally`` blocks run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Interrupted()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _failed(command: str, message: str, secrets: list[str]) -> int:
    print(f"cdb {command}: failed: {redact(message, secrets)}", file=sys.stderr, flush=True)
    return 1


def run_command(
    command: str,
    settings_classes: list[type[BaseSettings]],
    body: Callable,
    on_sigterm: str = "",
) -> int:
    """Load settings, run ``body(*settings)``, and turn every failure into one stderr line.

    Exit codes: 0 done, 1 failed, 2 bad settings, 143 stopped by SIGTERM.
    """
    try:
        # with nothing in the environment naming a server: the running `cdb up`'s private ones
        local = server_overrides(("POSTGRES_", "REDIS_"))
        settings = [
            load_settings(cls, **{k: v for k, v in local.items() if k in cls.model_fields})
            for cls in settings_classes
        ]
    except SettingsError as exc:
        print(f"configuration error: {exc.message}", file=sys.stderr, flush=True)
        return 2
    secrets = secret_values(settings)
    try:
        with sigterm_unwinds():
            line = body(*settings)
    except BackupError as exc:
        return _failed(command, str(exc), secrets)
    except OSError as exc:  # a full disk, a directory we may not write
        where = f" ({exc.filename})" if exc.filename else ""
        return _failed(command, f"{exc.strerror or exc}{where}", secrets)
    except psycopg2.Error as exc:  # one not already explained by the code that met it
        return _failed(command, f"PostgreSQL: {last_line(str(exc))}", secrets)
    except Interrupted:
        print(
            f"cdb {command}: stopped by SIGTERM{'; ' + on_sigterm if on_sigterm else ''}",
            file=sys.stderr,
            flush=True,
        )
        return 143
    print(redact(line, secrets), flush=True)
    return 0
