"""Backup and restore: ``cdb backup`` dumps PostgreSQL (and optionally Redis) into a
timestamped directory with a manifest; ``cdb restore`` puts it back and proves it.

Modules: ``tools`` (finding and running the client binaries), ``stats`` (row counts and
content checksums read inside one snapshot), ``dump`` (pg_dump / redis-cli), ``manifest``
(the JSON that describes a backup), ``retention`` (which backups to keep), ``create`` (one
whole backup), ``verify`` (checksums and comparisons), ``restore`` (one whole restore).
"""
