"""The ML advisor's own Redis user: shadow mode enforced by Redis itself.

The advisor is the one component whose output must never trade. Its code publishes only to
``ml_signals`` and no trading service reads that stream (``tests/test_advisor_shadow.py``);
this user makes it hold even for a buggy or compromised advisor holding its credentials:
Redis refuses it any write to ``orders``, ``signals``, ``market_data``, ``control`` or the
breaker, and any read of a stream but ``market_data``.

What it may do, command by command (Redis ACL rules, 7.0 or newer for the selectors, see
https://redis.io/docs/latest/operate/oss_and_stack/management/security/acl/):

- on ``market_data``, as the ``advisor`` consumer group: create the group, read, acknowledge,
  claim the idle entries of a dead consumer (``XGROUP CREATE``, ``XREADGROUP``, ``XACK``,
  ``XAUTOCLAIM``);
- append to ``ml_signals`` (its output), ``health`` (heartbeats), ``alerts`` (outage alerts),
  ``dead_letter`` (what it could not read);
- write its readiness into the ``cdb:readiness`` hash (read by the operator) and claim an
  outage alert once (``SET cdb:outage:* NX EX``);
- ``PING`` and ``SELECT``. (The services' clients do not send ``CLIENT SETINFO``, which
  Redis 7.0 does not know and this user could not send on 7.2.)

What Redis cannot narrow: the advisor could acknowledge another group's entries of
``market_data`` (an ACL names keys and commands, not consumer groups) or write another
service's readiness entry. Neither places an order.
"""

from __future__ import annotations

from cdb.bus import ALERTS, DEAD_LETTER, HEALTH, MARKET_DATA, ML_SIGNALS
from cdb.outages import CLAIM_KEY
from cdb.probes import READINESS_KEY

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
        f"~{MARKET_DATA}",
        "+xgroup|create",
        "+xreadgroup",
        "+xack",
        "+xautoclaim",
        f"(~{ML_SIGNALS} ~{HEALTH} ~{ALERTS} ~{DEAD_LETTER} +xadd)",
        f"(~{READINESS_KEY} +hset)",
        f"(~{CLAIM_KEY.split('{')[0]}* +set)",
    ]
)


def advisor_user_line(password: str) -> str:
    """The ``user`` directive of redis.conf for the advisor, with its ``password``.

    Raises ValueError for a password Redis would split (empty, or with white space); the
    generated ones are URL-safe.
    """
    if not password or any(c.isspace() for c in password):
        raise ValueError("the advisor's Redis password must be non-empty, without spaces")
    return f"user {ADVISOR_USER} reset on >{password} {ADVISOR_RULES}"
