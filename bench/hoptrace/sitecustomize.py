"""``python -m bench run latency --trace``: wall time of each step on the order path.

Loaded by every Python process started with this directory first on ``PYTHONPATH``
(Python imports ``sitecustomize`` at start) and active only when ``CDB_HOPTRACE`` names
an output directory. When the service's command line module (``cdb.cli``) is imported,
it wraps the functions in ``STEPS`` with a timer and appends one line per call,
``step unix_time microseconds``, to ``CDB_HOPTRACE/<pid>.log``; for each signal and
order a read returns it also writes ``recv:<stream> unix_time ms_since_appended`` (Redis's
entry-id clock: whole milliseconds, so it reads ~0.5 ms high on average).
``bench.latency.summarize_trace`` turns the files into the table of docs/benchmarks.md.
Nothing here is imported by the services themselves.
"""

from __future__ import annotations

import atexit
import functools
import importlib
import importlib.abc
import importlib.util
import os
import sys
import time

#: (module, attribute path, step name): the order path of the risk manager and execution
STEPS = (
    ("cdb.risk.service", "RiskService.on_signal", "risk: on_signal (whole decision)"),
    ("cdb.risk.state", "Store.record", "risk: commit the decision"),
    ("cdb.risk.guard", "Guard.snapshot", "risk: snapshot of the book"),
    ("cdb.risk.rules", "evaluate", "risk: rules.evaluate"),
    ("cdb.risk.checks", "record", "risk: checks.record (each check's value and limit)"),
    ("cdb.bus", "Bus.publish_many", "publish_many (XADD, pipelined)"),
    ("cdb.bus", "Bus.publish", "publish (XADD)"),
    ("cdb.execution.executor", "Executor.execute", "execution: execute (whole order)"),
    ("cdb.execution.ledger", "Ledger.send_if_clear", "execution: commit SENT + breaker read"),
    ("cdb.execution.ledger", "Ledger.prepare", "execution: prepare (general path)"),
    ("cdb.execution.ledger", "Ledger.record_sent", "execution: record_sent (general path)"),
    ("cdb.execution.service", "ExecutionService._fence", "execution: fence + fault switch"),
    ("cdb.execution.ledger", "Ledger.fill_once", "execution: paper fill (2 trips, commit)"),
    ("cdb.execution.ledger", "Ledger.record", "execution: record the outcome"),
)

OUT_DIR = os.environ.get("CDB_HOPTRACE")


def _install(out) -> None:
    for module_name, path, step in STEPS:
        try:
            owner = importlib.import_module(module_name)
            *parents, name = path.split(".")
            for part in parents:
                owner = getattr(owner, part)
            original = getattr(owner, name)
        except (ImportError, AttributeError):
            continue

        def timed(*args, __fn=original, __step=step, **kwargs):
            started = time.perf_counter()
            try:
                return __fn(*args, **kwargs)
            finally:
                took = (time.perf_counter() - started) * 1e6
                out.write(f"{__step}\t{time.time():.6f}\t{took:.0f}\n")

        setattr(owner, name, functools.wraps(original)(timed))
    bus = importlib.import_module("cdb.bus")
    read = bus.Bus.read

    def traced_read(self, *args, **kwargs):
        got = read(self, *args, **kwargs)
        now = time.time()
        for d in got:
            if d.stream in ("signals", "orders"):
                appended_ms = int(d.entry_id.split("-", 1)[0])
                out.write(f"recv:{d.stream}\t{now:.6f}\t{(now * 1e3 - appended_ms) * 1e3:.0f}\n")
        return got

    bus.Bus.read = traced_read


class _OnCli(importlib.abc.MetaPathFinder):
    """Installs the timers once ``cdb.cli`` (every service's entry point) is loaded."""

    def find_spec(self, name, path, target=None):
        if name != "cdb.cli":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module
        out = open(os.path.join(OUT_DIR, f"{os.getpid()}.log"), "w", buffering=1 << 16)  # noqa: SIM115
        atexit.register(out.flush)

        def load(module):
            exec_module(module)
            _install(out)

        spec.loader.exec_module = load
        return spec


if OUT_DIR:
    sys.meta_path.insert(0, _OnCli())
