"""The daily backup: a CronJob running ``cdb backup`` onto a PVC of its own.

The PVC carries the bot's labels but, unless ``keepDataOnDelete`` is false, no owner
reference: deleting a TradingBot must not delete the dumps that could restore it.
"""

from __future__ import annotations

from cdb_operator.render import config
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

MOUNT = "/backups"


def backup_name(bot: Bot) -> str:
    return bot.child("backup")


def render_backup_pvc(bot: Bot) -> Manifest:
    spec = bot.spec.backup
    pvc_spec: dict = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": spec.storage}},
    }
    if spec.storage_class:
        pvc_spec["storageClassName"] = spec.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(
            bot, backup_name(bot), "backup", owned=not bot.spec.keep_data_on_delete
        ),
        "spec": pvc_spec,
    }


def backup_args(bot: Bot) -> list[str]:
    """``cdb backup`` arguments: with the embedded Redis, its RDB snapshot too (``--redis``);
    an external Redis is the provider's to snapshot (managed services mostly refuse the
    replication protocol ``redis-cli --rdb`` uses)."""
    args = ["backup", "--output", MOUNT, "--keep", str(bot.spec.backup.retention)]
    return [*args, "--redis"] if bot.spec.redis.mode == "embedded" else args


def render_backup_cronjob(bot: Bot) -> Manifest:
    spec = bot.spec.backup
    tmp, tmp_mount = tmp_volume()
    container = {
        "name": "backup",
        "image": image(bot),
        "imagePullPolicy": bot.spec.image.pull_policy,
        "command": ["cdb"],
        "args": backup_args(bot),
        "envFrom": config.env_from(bot),
        "env": [
            config.postgres_password_env(bot),
            *config.redis_password_env(bot),
        ],
        "securityContext": container_security_context(),
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "volumeMounts": [{"name": "backups", "mountPath": MOUNT}, tmp_mount],
    }
    pod = {
        "restartPolicy": "OnFailure",
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
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata(bot, backup_name(bot), "backup"),
        "spec": {
            "schedule": spec.schedule,
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "suspend": bot.restoring,  # a backup must not hold the PVC or dump a half restore
            "startingDeadlineSeconds": 3600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": labels(bot, "backup")},
                "spec": {
                    "backoffLimit": 3,
                    "activeDeadlineSeconds": 3600,
                    "template": {"metadata": {"labels": labels(bot, "backup")}, "spec": pod},
                },
            },
        },
    }
