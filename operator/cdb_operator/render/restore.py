"""The restore Job: ``spec.restore`` → one Job that puts a backup back into the bot's PostgreSQL.

The Job mounts the backup PVC and, in one shell script run as the image's user:

1. checks the backup's files, waits for PostgreSQL and for the services' pods (scaled to
   zero with the Job) to disconnect, then empties the database (``DROP DATABASE … WITH (FORCE)`` + ``CREATE DATABASE``): ``cdb
   restore`` refuses a non-empty target, and the services' init containers have already
   made the schema in it;
2. runs ``cdb restore DIR``: every file's sha256 against the manifest before anything is
   touched, ``pg_restore --single-transaction``, then every table's row count and content
   checksum against the manifest (exit 1 on any difference);
3. writes the risk manager's breaker as engaged (``service_state``), so the bot comes back
   halted whatever the breaker was when the backup was taken.

A retry of the pod starts again from step 1, so the Job is safe to retry. Its name is
derived from ``requestId``: the same request is never a second Job, and the finished Job
is kept (no TTL) as the record that this request ran. The pod carries the
backup component's labels, which the bot's NetworkPolicies admit to PostgreSQL.
"""

from __future__ import annotations

from cdb.events import stable_id
from cdb_operator.render import config
from cdb_operator.render.backup import MOUNT, backup_name
from cdb_operator.render.common import (
    APP_UID,
    Bot,
    Manifest,
    container_security_context,
    image,
    labels,
    metadata,
    pod_security_context,
    scheduling,
    tmp_volume,
)

#: The Job's script; ``$1`` is the backup to restore (a backup-… directory, or the PVC root
#: for the newest complete one). Passwords reach psql/pg_restore only through PGPASSWORD.
SCRIPT = r"""set -eu
export PGHOST="$POSTGRES_HOST" PGPORT="$POSTGRES_PORT" PGUSER="$POSTGRES_USER"
export PGPASSWORD="$POSTGRES_PASSWORD"
cdb restore --check "$1"
until pg_isready -q -d postgres; do sleep 2; done
# the services were scaled to zero with this Job: give their pods time to go
for _ in $(seq $(( ${RESTORE_WAIT_S:-120} / 2 ))); do
  n=$(psql -tA -d postgres -c "SELECT count(*) FROM pg_stat_activity
       WHERE datname = '$POSTGRES_DB' AND pid <> pg_backend_pid()")
  [ "$n" = 0 ] && break
  sleep 2
done
psql -v ON_ERROR_STOP=1 -q -d postgres \
  -c "DROP DATABASE IF EXISTS \"$POSTGRES_DB\" WITH (FORCE)" \
  -c "CREATE DATABASE \"$POSTGRES_DB\""
cdb restore "$1"
psql -v ON_ERROR_STOP=1 -q -d "$POSTGRES_DB" -c "
  INSERT INTO service_state (service, key, value)
  VALUES ('risk', 'breaker', jsonb_build_object('manual', true, 'reason', 'restored from backup'))
  ON CONFLICT (service, key) DO UPDATE
  SET value = service_state.value || EXCLUDED.value, updated_at = now()"
echo "restore done: the risk manager starts halted (release the breaker after checking)"
"""


def restore_job_name(bot: Bot, request_id: str) -> str:
    """``NAME-restore-<8 hex of the request id>`` (at most 57 characters)."""
    return bot.child(f"restore-{stable_id(request_id, length=8)}")


def restore_target(backup: str) -> str:
    """The path ``cdb restore`` gets: one backup, or the PVC root for the newest."""
    return MOUNT if backup == "latest" else f"{MOUNT}/{backup}"


def render_restore_job(bot: Bot, request_id: str, backup: str) -> Manifest:
    """The Job restoring ``backup`` for ``request_id`` (see the module docstring)."""
    tmp, tmp_mount = tmp_volume()
    container = {
        "name": "restore",
        "image": image(bot),
        "imagePullPolicy": bot.spec.image.pull_policy,
        "command": ["sh", "-c", SCRIPT, "restore", restore_target(backup)],
        "envFrom": config.env_from(bot),
        "env": [config.postgres_password_env(bot)],
        "securityContext": container_security_context(),
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "volumeMounts": [{"name": "backups", "mountPath": MOUNT, "readOnly": True}, tmp_mount],
    }
    pod = {
        "restartPolicy": "Never",
        "securityContext": pod_security_context(APP_UID),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [container],
        "volumes": [
            {"name": "backups", "persistentVolumeClaim": {"claimName": backup_name(bot)}},
            tmp,
        ],
        **scheduling(bot),
    }
    meta = metadata(bot, restore_job_name(bot, request_id), "restore")
    meta["annotations"] = {"claire-de-binare.dev/restore-request": request_id}
    pod_labels = {**labels(bot, "backup"), "claire-de-binare.dev/restore": "true"}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "backoffLimit": 2,
            "activeDeadlineSeconds": 3600,
            "template": {"metadata": {"labels": pod_labels}, "spec": pod},
        },
    }
