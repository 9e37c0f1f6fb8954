"""``cdb-operator`` (and ``cdb operator``): run the operator, or print its CRD and RBAC needs.

``cdb-operator [run] [--namespace NS ... | --all-namespaces]`` runs kopf against the
current kubeconfig (or the pod's service account); ``cdb-operator crd`` writes or
checks ``crds/tradingbot.yaml``; ``cdb-operator rbac`` prints the PolicyRules it needs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

import yaml


def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cdb-operator",
        description="Reconcile TradingBot resources into trading systems.",
        epilog="other commands: `cdb-operator crd [--check]` writes or checks the CRD, "
        "`cdb-operator docs [--check]` the field table of docs/operator.md, "
        "`cdb-operator rbac` prints the PolicyRules the operator needs",
    )
    scope = p.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable)"
    )
    scope.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="watch every namespace (the default when no --namespace)",
    )
    p.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        help="kopf's liveness endpoint URL ('' to disable)",
    )
    p.add_argument(
        "--readiness",
        default="http://0.0.0.0:8082/readyz",
        help="readiness endpoint URL: 503 while the API server does not answer ('' to disable)",
    )
    p.add_argument(
        "--peering",
        metavar="NAME",
        default=None,
        help="coordinate replicas through kopf peering NAME (needs kopf's CRDs); "
        "default: standalone, run one replica with the Recreate strategy",
    )
    p.add_argument("--context", default=None, help="kubeconfig context")
    p.add_argument(
        "--resync",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="re-reconcile every bot this often (restores hand-edited children)",
    )
    p.add_argument(
        "--breaker-poll",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="read each bot's breaker and market data this often (a fallback: breaker changes "
        "and the risk manager's confirmations are acted on at once)",
    )
    p.add_argument(
        "--market-data-stale-after",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="market data older than this makes the MarketData condition False (NoData)",
    )
    p.add_argument(
        "--resend-after",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="resend an unconfirmed breaker control after this long",
    )
    p.add_argument(
        "--redis-address",
        default="{name}-redis.{namespace}.svc:6379",
        help="where a bot's Redis is, as a template with {name} and {namespace} "
        "(e.g. for a port-forward when running outside the cluster)",
    )
    p.add_argument(
        "--operator-namespace",
        default=os.environ.get("POD_NAMESPACE", "cdb-system"),
        help="the operator's namespace, admitted to the bots' Redis by their NetworkPolicies "
        "unless a bot sets networkPolicy.operatorNamespace (default: $POD_NAMESPACE, else "
        "cdb-system)",
    )
    p.add_argument(
        "--watch-timeout",
        type=int,
        default=300,
        metavar="SECONDS",
        help="server-side watch timeout; a silent watch is restarted after it",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        metavar="PORT",
        help="serve the operator's Prometheus metrics on PORT (0 = off)",
    )
    p.add_argument(
        "--cloudnativepg",
        action="store_true",
        help="allow postgres.mode cloudnativepg (needs RBAC on postgresql.cnpg.io clusters)",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _crd_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cdb-operator crd", description="write the CRD YAML")
    p.add_argument("--output", type=Path, default=None, help="default: crds/tradingbot.yaml")
    p.add_argument("--check", action="store_true", help="exit 1 when the file is stale")
    p.add_argument("--stdout", action="store_true", help="print instead of writing")
    return p


def crd_command(argv: list[str]) -> int:
    from cdb_operator import crd

    args = _crd_parser().parse_args(argv)
    path = args.output or crd.CRD_PATH
    text = crd.crd_yaml()
    if args.stdout:
        sys.stdout.write(text)
        return 0
    if args.check:
        current = path.read_text() if path.exists() else ""
        if current != text:
            print(f"{path} is stale: run `cdb-operator crd`", file=sys.stderr)
            return 1
        print(f"{path} is up to date")
        return 0
    crd.write(path)
    print(f"wrote {path}")
    return 0


def docs_command(argv: list[str]) -> int:
    from cdb_operator import docs

    p = argparse.ArgumentParser(prog="cdb-operator docs", description="regenerate the field table")
    p.add_argument("--path", type=Path, default=docs.DOC_PATH)
    p.add_argument("--check", action="store_true", help="exit 1 when the table is stale")
    args = p.parse_args(argv)
    current = args.path.read_text()
    wanted = docs.render(current)
    if args.check:
        if wanted != current:
            print(f"{args.path}: field table is stale: run `cdb-operator docs`", file=sys.stderr)
            return 1
        return 0
    args.path.write_text(wanted)
    print(f"wrote {args.path}")
    return 0


def rbac_command() -> int:
    from cdb_operator.rbac import usage_rules

    sys.stdout.write(yaml.safe_dump({"rules": usage_rules()}, sort_keys=False))
    return 0


def run(args: argparse.Namespace) -> int:
    import logging

    import kopf
    from kubernetes.config import ConfigException

    from cdb_operator.apply import Kube
    from cdb_operator.handlers import Options, build_registry
    from cdb_operator.reconcile import Context, service_dns_address

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        kube = Kube.from_environment(args.context)
    except (ConfigException, OSError) as exc:
        print(f"cdb-operator: no usable Kubernetes configuration: {exc}", file=sys.stderr)
        return 2
    if args.metrics_port:
        from cdb_operator.metrics import serve

        serve(args.metrics_port)
    if args.readiness:
        from cdb_operator import readiness

        readiness.serve(args.readiness, readiness.Cached(readiness.api_server_check(kube)))
    ctx = Context(
        kube=kube,
        redis_address=service_dns_address(args.redis_address),
        resend_after=args.resend_after,
        operator_namespace=args.operator_namespace,
        market_stale_after=args.market_data_stale_after,
        cloudnativepg=args.cloudnativepg,
    )
    options = Options(
        resync_seconds=args.resync,
        breaker_poll_seconds=args.breaker_poll,
        watch_timeout_seconds=args.watch_timeout,
    )
    registry = build_registry(ctx, options)
    asyncio.run(
        kopf.operator(
            registry=registry,
            # kopf iterates ``namespaces``: cluster-wide is an empty collection, never None
            namespaces=tuple(args.namespace),
            clusterwide=not args.namespace,
            standalone=args.peering is None,
            peering_name=args.peering,
            liveness_endpoint=args.liveness or None,
        )
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "crd":
        return crd_command(argv[1:])
    if argv and argv[0] == "docs":
        return docs_command(argv[1:])
    if argv and argv[0] == "rbac":
        return rbac_command()
    if argv and argv[0] == "run":
        argv = argv[1:]
    return run(_run_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
