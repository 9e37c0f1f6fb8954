"""Apply the numbered migrations with yoyo-migrations, and read the schema version.

yoyo records what it applied in its own table and takes a lock while it works,
so running ``cdb db migrate`` twice, or from two pods at once, is safe.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from yoyo import get_backend, read_migrations

from cdb.settings import PostgresSettings

MIGRATIONS = Path(__file__).with_name("migrations")


def yoyo_uri(settings: PostgresSettings) -> str:
    """The connection URI yoyo expects, with user and password URL-quoted."""
    password = settings.POSTGRES_PASSWORD.get_secret_value() if settings.POSTGRES_PASSWORD else ""
    auth = quote(settings.POSTGRES_USER, safe="")
    if password:
        auth += ":" + quote(password, safe="")
    return (
        f"postgresql://{auth}@{settings.POSTGRES_HOST}:{settings.POSTGRES_PORT}/"
        f"{quote(settings.POSTGRES_DB, safe='')}"
    )


def migrate(settings: PostgresSettings) -> list[str]:
    """Apply every pending migration; returns the ids applied now (empty when up to date)."""
    backend = get_backend(yoyo_uri(settings))
    migrations = read_migrations(str(MIGRATIONS))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return [m.id for m in pending]


def schema_version(settings: PostgresSettings) -> str | None:
    """The id of the newest applied migration (e.g. ``0001_initial``), or None on an empty DB."""
    backend = get_backend(yoyo_uri(settings))
    applied = [m.id for m in read_migrations(str(MIGRATIONS)) if backend.is_applied(m)]
    return applied[-1] if applied else None
