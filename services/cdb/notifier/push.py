"""Send one encrypted Web Push message with pywebpush, retrying what a retry can fix.

Connection errors, timeouts, 429 and 5XX are retried a few times with backoff
(tenacity); 404 and 410 mean the browser unsubscribed (the caller removes the
subscription); any other answer is a failure that a retry would only repeat.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import requests
from py_vapid import Vapid02
from pywebpush import WebPushException, webpush
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from cdb.notifier.subscriptions import Subscription

GONE = frozenset({404, 410})


@dataclass(frozen=True)
class PushOutcome:
    status: Literal["sent", "gone", "failed"]
    detail: str = ""


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return True
    if isinstance(exc, WebPushException):
        code = exc.status_code
        return code is not None and (code == 429 or code >= 500)
    return False


class Pusher:
    """Signs with the VAPID key, encrypts for each subscription (aes128gcm) and POSTs."""

    def __init__(
        self,
        vapid: Vapid02,
        contact: str,
        ttl_s: int,
        timeout_s: float,
        attempts: int = 3,
    ) -> None:
        self.vapid = vapid
        self.contact = contact
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.session = requests.Session()

    def _post(self, sub: Subscription, data: str, headers: dict[str, str]) -> None:
        webpush(
            sub.info(),
            data=data,
            vapid_private_key=self.vapid,
            vapid_claims={"sub": self.contact},  # a fresh dict: pywebpush adds aud/exp to it
            ttl=self.ttl_s,
            timeout=self.timeout_s,
            headers=dict(headers),
            requests_session=self.session,
        )

    def send(self, sub: Subscription, data: str, headers: dict[str, str]) -> PushOutcome:
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=0.5, max=4),
            retry=retry_if_exception(_retryable),
            reraise=True,
        )
        try:
            retrying(self._post, sub, data, headers)
        except WebPushException as exc:
            code = exc.status_code
            if code in GONE:
                return PushOutcome("gone", f"HTTP {code}")
            return PushOutcome("failed", f"HTTP {code}" if code else exc.message[:200])
        except requests.RequestException as exc:
            return PushOutcome("failed", f"{type(exc).__name__}")
        return PushOutcome("sent")

    def close(self) -> None:
        self.session.close()
