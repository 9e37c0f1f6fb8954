"""The ML advisor's own Redis user: shadow mode enforced by Redis itself.

The advisor is the one component whose output must never trade. Its code publishes only to
``ml_signals`` and no trading service reads that stream (``tests/test_advisor_shadow.py``);
this user makes that hold for a buggy or compromised advisor too, as far as Redis can:

- ``market_data``: read only (``XREAD``; the advisor reads without a consumer group,
  :mod:`cdb.bus_observer`), so it cannot acknowledge, claim or trim the ticks the risk
  manager reads, nor create groups or add ticks;
- ``ml_signals``: append (``XADD``), its output;
- ``PING`` and ``SELECT``; nothing else — no other stream or key, no admin command. (The
  services' clients send no ``CLIENT SETINFO``, which this user could not send on 7.2.)

The advisor sends no heartbeats, readiness reports or outage alerts: the trading services
do. What remains to a compromised advisor is its own stream: it could flood or trim
``ml_signals`` (shadow statistics, read by the persistence writer only). Rules in Redis'
ACL syntax, 7.0 or newer (``%R~`` key permissions, selectors):
https://redis.io/docs/latest/operate/oss_and_stack/management/security/acl/
"""

from __future__ import annotations

from cdb.bus import MARKET_DATA, ML_SIGNALS

#: The advisor's Redis user name (``REDIS_USERNAME`` of the advisor).
ADVISOR_USER = "cdb-advisor"

#: Its rules after ``on >password``: one line of redis.conf's ``user`` directive.
ADVISOR_RULES = " ".join(
    [
        "resetkeys",
        "resetchannels",
        "-@all",
        "+ping",
        "+select",
        f"%R~{MARKET_DATA}",
        "+xread",
        f"(~{ML_SIGNALS} +xadd)",
    ]
)


def advisor_user_line(password: str, rules: str = ADVISOR_RULES) -> str:
    """The ``user`` directive of redis.conf for the advisor, with its ``password``.

    ``rules`` is for a shell template only (the operator's ``printf`` gets ``%s`` for both
    and the values as arguments). Raises ValueError for a password Redis would split
    (empty, or with white space); the generated ones are URL-safe.
    """
    if not password or any(c.isspace() for c in password):
        raise ValueError("the advisor's Redis password must be non-empty, without spaces")
    return f"user {ADVISOR_USER} reset on >{password} {rules}"
