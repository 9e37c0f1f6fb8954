"""Operator: rendering speed (pure), and on a real cluster apply → children and breaker → halted.

Rendering is the operator's pure layer: ``model.parse_spec`` (validation of the
TradingBot spec) and ``render.render_children`` + ``render_secret`` (every child
manifest), then YAML for a human-sized comparison. One bot is rendered many
times for a stable per-bot figure; 100 bots with different names are rendered
as one reconcile pass would.

With ``KUBECONFIG`` set it measures the operator at scale (:mod:`bench.operator_scale`:
N TradingBots → all Deployments, idle writes/s, CPU and RSS), and, when the operator
and a bot's services run in that cluster, it also times ``apply`` of a TradingBot until every child the
renderer names exists, and ``--flips`` (default 20) patches of
``spec.circuitBreaker.engaged`` until ``status.breaker`` reports the risk
manager's confirmed state (p50/p99). Without a cluster that part is skipped
and the table says so. Target: breaker patch → halted p99 <= 1 s.

Run: ``python -m bench run operator`` (``--flips N``).
"""

from __future__ import annotations

import os
import time
import uuid

import yaml

from bench import operator_scale
from bench.latency import percentile
from bench.report import Result

#: libyaml's dumper when PyYAML was built with it (the pure-Python one is ~10x slower)
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
NAMESPACE = os.environ.get("CDB_BENCH_NAMESPACE", "cdb-bench")
SPEC = {
    "symbols": ["BTC_USDT", "ETH_USDT"],
    "strategy": {"thresholdPct": 3.0},
    "circuitBreaker": {"engaged": False},
}


def _bot(name: str):
    from cdb_operator.model import parse_spec
    from cdb_operator.render import Bot

    return Bot(name=name, namespace=NAMESPACE, uid=str(uuid.uuid4()), spec=parse_spec(SPEC))


def render_once(name: str, to_yaml: bool = False) -> int:
    """Parse, validate and render one bot; returns the number of manifests."""
    from cdb_operator.render import render_children, render_secret
    from cdb_operator.render.config import SECRET_KEYS

    bot = _bot(name)
    passwords = {key: "x" * 32 for key in SECRET_KEYS}
    manifests = render_children(bot) + [render_secret(bot, passwords)]
    if to_yaml:
        yaml.dump_all(manifests, Dumper=DUMPER, sort_keys=False)
    return len(manifests)


def time_render(n_bots: int, repeat: int, to_yaml: bool) -> tuple[float, int]:
    """Best-of-``repeat`` seconds to render ``n_bots`` bots, and manifests per bot."""
    best = float("inf")
    count = 0
    for _ in range(repeat):
        started = time.perf_counter()
        for i in range(n_bots):
            count = render_once(f"bot-{i}", to_yaml)
        best = min(best, time.perf_counter() - started)
    return best, count


def cluster(flips: int) -> tuple[float, list[float]] | str:
    """Apply → children, and breaker flips, on the cluster in KUBECONFIG (or why not).

    Needs the operator and the bot's pods running in the cluster (the risk manager
    confirms); tests/e2e/test_operator_settles.py measures the same path on any API server
    with the risk manager run locally.
    """
    if not os.environ.get("KUBECONFIG"):
        return "skipped: KUBECONFIG is not set (no cluster on this machine)"
    from cdb_operator.apply import Kube

    if not Kube.from_environment().request("GET", "/api/v1/nodes").get("items"):
        return "skipped: the cluster has no nodes (no risk manager can run to confirm)"
    try:
        from kubernetes import client, config
    except ImportError as exc:  # pragma: no cover - the kubernetes client is a dependency
        return f"skipped: {exc}"
    from cdb_operator import model
    from cdb_operator.render import render_children

    config.load_kube_config()
    custom = client.CustomObjectsApi()
    dyn = client.ApiClient()
    name = f"bench-{uuid.uuid4().hex[:6]}"
    body = {
        "apiVersion": model.API_VERSION,
        "kind": model.KIND,
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": SPEC,
    }
    started = time.perf_counter()
    custom.create_namespaced_custom_object(
        model.GROUP, model.VERSION, NAMESPACE, model.PLURAL, body
    )
    wanted = render_children(_bot(name))
    try:
        from kubernetes.dynamic import DynamicClient

        dc = DynamicClient(dyn)
        deadline = time.monotonic() + 300
        pending = list(wanted)
        while pending and time.monotonic() < deadline:
            still = []
            for obj in pending:
                api = dc.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
                try:
                    api.get(name=obj["metadata"]["name"], namespace=NAMESPACE)
                except Exception:
                    still.append(obj)
            pending = still
            if pending:
                time.sleep(0.1)
        apply_s = time.perf_counter() - started
        if pending:
            return f"children missing after 300 s: {[o['metadata']['name'] for o in pending][:5]}"
        times = []
        for i in range(flips):
            engaged = i % 2 == 0
            patch = {"spec": {"circuitBreaker": {"engaged": engaged, "reason": f"bench {i}"}}}
            t0 = time.perf_counter()
            custom.patch_namespaced_custom_object(
                model.GROUP, model.VERSION, NAMESPACE, model.PLURAL, name, patch
            )
            while time.perf_counter() - t0 < 60:
                obj = custom.get_namespaced_custom_object(
                    model.GROUP, model.VERSION, NAMESPACE, model.PLURAL, name
                )
                breaker = (obj.get("status") or {}).get("breaker") or {}
                if breaker.get("confirmed") and breaker.get("engaged") is engaged:
                    times.append(time.perf_counter() - t0)
                    break
                time.sleep(0.02)
            else:
                return f"flip {i}: the risk manager did not confirm within 60 s"
        return apply_s, times
    finally:
        custom.delete_namespaced_custom_object(
            model.GROUP, model.VERSION, NAMESPACE, model.PLURAL, name
        )


def run(quick: bool = False, context: dict | None = None) -> Result:
    args = (context or {}).get("args")
    repeat = 2 if quick else 5
    result = Result("operator", "Operator: rendering and (with a cluster) reaction times")
    t = result.table(
        "Pure rendering (parse + validate spec, every child manifest)",
        ["what", "manifests per bot", "seconds", "ms per bot"],
    )
    one_n = 20 if quick else 200
    secs, count = time_render(one_n, repeat, to_yaml=False)
    t.add(f"1 TradingBot (mean of {one_n})", count, secs / one_n, secs / one_n * 1000)
    secs100, _ = time_render(100, repeat, to_yaml=False)
    t.add("100 TradingBots", count, secs100, secs100 / 100 * 1000)
    secs_yaml, _ = time_render(100, 1, to_yaml=True)
    t.add(
        f"100 TradingBots, with YAML output ({DUMPER.__name__})",
        count,
        secs_yaml,
        secs_yaml / 100 * 1000,
    )
    scale = operator_scale.measure(getattr(args, "bots", 100))
    s = result.table(
        "At scale on a real API server (cdb-operator started by the bench)",
        ["measure", "value"],
    )
    if isinstance(scale, str):
        s.add("N TradingBots → all Deployments", scale)
    else:
        s.add("baseline: 1 TradingBot → its 6 Deployments, s", scale["one_bot_s"])
        s.add(
            f"{scale['bots']} TradingBots → all {scale['deployments']} Deployments, s",
            scale["all_deployments_s"],
        )
        s.add(f"idle: API writes/s (over {scale['idle_s']:.0f} s)", scale["idle_writes_per_s"])
        s.add("idle: CPU, % of one core", scale["idle_cpu_pct"])
        s.add("RSS, MB (budget 200)", scale["rss_mb"])
    outcome = cluster(getattr(args, "flips", 20))
    c = result.table("On a cluster", ["measure", "value"])
    if isinstance(outcome, str):
        c.add("apply → all children exist", outcome)
        c.add("breaker patch → confirmed (p50/p99)", outcome)
    else:
        apply_s, flips = outcome
        c.add("apply → all children exist, s", apply_s)
        c.add(f"breaker patch → confirmed p50, s ({len(flips)} flips)", percentile(flips, 50))
        c.add("breaker patch → confirmed p99, s", percentile(flips, 99))
        if percentile(flips, 99) > 1.0:
            result.note(f"Target missed: p99 {percentile(flips, 99):.2f} s > 1 s.")
    result.note(f"Best of {repeat} repetitions; rendering is pure CPU in the operator process.")
    result.data = {
        "one_ms": secs / one_n * 1000,
        "hundred_s": secs100,
        "cluster": outcome,
        "scale": scale,
    }
    if context is not None:
        context["operator"] = result.data
    return result
