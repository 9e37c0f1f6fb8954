"""The full pipeline again with Redis's append-only file off: what AOF costs end to end.

Same run as ``bench.pipeline`` (same services, settings, checks), on a Redis
started with ``appendonly no``. Deployed Redis keeps AOF (orders, results and
control must survive a restart); this section exists so the analysis can say
how much of the gap to the target is the AOF's, measured, not guessed.

Run: ``python -m bench run pipeline-noaof``.
"""

from __future__ import annotations

from bench import pipeline
from bench.env import Servers
from bench.report import Result


def run(quick: bool = False, context: dict | None = None) -> Result:
    context = context if context is not None else {}
    kept = context.get("pipeline")
    before, Servers.appendonly = Servers.appendonly, False
    try:
        result = pipeline.run(quick=quick, context=context)
    finally:
        Servers.appendonly = before
        data = context.pop("pipeline", None)
        if kept is not None:
            context["pipeline"] = kept
    result.name = "pipeline_noaof"
    result.title = "Full pipeline throughput, Redis without AOF (for comparison)"
    result.data.pop("_sections", None)
    if data is not None:
        context["pipeline_noaof"] = data
    return result
