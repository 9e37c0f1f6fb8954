"""``spec.restore`` across reconciles: make the restore Job once, follow it, report it.

A restore is *under way* from the moment ``spec.restore.requestId`` differs from the last
request that succeeded until its Job completes: meanwhile the services are rendered
with zero replicas and the backup CronJob suspended. A failed restore keeps them there
(the database may be empty): set a new ``requestId`` (another backup, say) to try again,
or remove ``spec.restore`` to start the services on whatever the database holds.

Idempotent: the Job's name comes from the request id, and a finished Job is kept, so
neither a repeated reconcile nor a lost status can run the same request twice.
"""

from __future__ import annotations

from typing import Any

from cdb_operator.render.common import Bot
from cdb_operator.render.restore import render_restore_job

Event = tuple[str, str, str]


def under_way(bot: Bot, previous: dict[str, Any] | None) -> bool:
    """Whether the services must stay at zero for ``spec.restore`` (see the module doc)."""
    wanted = bot.spec.restore
    if wanted is None:
        return False
    prev = previous or {}
    return not (prev.get("requestId") == wanted.request_id and prev.get("phase") == "Succeeded")


def job_phase(job: dict[str, Any]) -> tuple[str, str]:
    """(Running | Succeeded | Failed, message) from a Job's status conditions."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return (
                "Succeeded",
                "restored; files, row counts and checksums verified; breaker engaged",
            )
        if cond.get("type") == "Failed":
            why = cond.get("message") or cond.get("reason") or "the Job failed"
            return "Failed", f"{why}; see `kubectl logs job/{job['metadata']['name']}`"
    return "Running", "the restore Job is running"


def sync(kube: Any, bot: Bot, previous: dict[str, Any] | None, now: float) -> tuple[dict, list]:
    """Create or follow the restore Job; returns (``status.restore`` or {}, Events to post).

    ``kube`` is :class:`cdb_operator.apply.Kube`; raises its ``ApiError``.
    """
    wanted = bot.spec.restore
    prev = dict(previous or {})
    if wanted is None or not under_way(bot, prev):
        return prev, []
    job = render_restore_job(bot, wanted.request_id, wanted.backup)
    name = job["metadata"]["name"]
    same = prev.get("requestId") == wanted.request_id
    status = {
        "requestId": wanted.request_id,
        "backup": wanted.backup,
        "job": name,
        "startedAt": prev.get("startedAt") if same else None,
        "completedAt": prev.get("completedAt") if same else None,
    }
    live = kube.get("batch/v1", "Job", bot.namespace, name)
    events: list[Event] = []
    if live is None:
        if same and prev.get("phase") == "Failed":
            return prev, []  # the failed Job was deleted: never retried by itself
        kube.create(job)
        events.append(
            ("Normal", "RestoreStarted", f"Job {name} restores {wanted.backup}; services stopped")
        )
        return {
            **status,
            "phase": "Running",
            "message": "the restore Job is running",
            "startedAt": int(now),
        }, events
    phase, message = job_phase(live)
    status.update(phase=phase, message=message, startedAt=status["startedAt"] or int(now))
    if phase != "Running" and prev.get("phase") != phase:
        status["completedAt"] = int(now)
        if phase == "Succeeded":
            events.append(("Normal", "RestoreSucceeded", f"{message}; services start again"))
        else:
            events.append(("Warning", "RestoreFailed", f"{message}; services stay stopped"))
    return status, events
