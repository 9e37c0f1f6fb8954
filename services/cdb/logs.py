"""The services' logs: JSON lines on stdout that never carry a secret."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any

from pythonjsonlogger.json import JsonFormatter


class RedactSecrets(logging.Filter):
    """Replace every known secret value in a log record with ``***`` before it is formatted."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def _clean(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg = self._clean(record.getMessage())
            record.args = None
            if record.exc_info:
                record.exc_text = self._clean(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True


def secret_values(*settings: Any) -> list[str]:
    """Every ``SecretStr`` value held by the given settings objects."""
    from pydantic import SecretStr

    found = []
    for obj in settings:
        for name in type(obj).model_fields:
            value = getattr(obj, name, None)
            if isinstance(value, SecretStr):
                found.append(value.get_secret_value())
    return found


def configure_logging(service: str, level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    """JSON lines on stdout, each carrying the service name, with secrets redacted."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"levelname": "level", "asctime": "time", "name": "logger"},
            static_fields={"service": service},
        )
    )
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("waitress", "urllib3", "ccxt"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
