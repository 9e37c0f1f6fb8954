"""Dockerfile.base, .dockerignore and kind-config.yaml, checked without a Docker engine.

No container engine runs here, so the Dockerfile is parsed and its rules checked (base
image, stages, user, HEALTHCHECK, no caches or compilers in the final image) and the
.dockerignore is evaluated with Docker's matching rules against real paths. The
HEALTHCHECK's program, ``cdb healthcheck``, has its own tests (tests/test_healthcheck.py).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

import yaml
from k8s_tools import REPO

DOCKERFILE = REPO / "Dockerfile.base"


@dataclass
class Instruction:
    name: str
    args: str
    heredocs: list[str] = field(default_factory=list)


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and heredoc bodies attached."""
    lines = text.splitlines()
    out: list[Instruction] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\") and i < len(lines):
            nxt = lines[i]
            i += 1
            if nxt.lstrip().startswith("#"):
                continue
            line = line[:-1] + " " + nxt.strip()
        name, _, args = line.strip().partition(" ")
        inst = Instruction(name.upper(), args.strip())
        for marker in re.findall(r"<<-?['\"]?(\w+)['\"]?", args):
            body: list[str] = []
            while i < len(lines) and lines[i] != marker:
                body.append(lines[i])
                i += 1
            i += 1  # the terminator
            inst.heredocs.append("\n".join(body) + "\n")
        out.append(inst)
    return out


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for inst in instructions:
        if inst.name == "FROM":
            result.append([])
        if result:
            result[-1].append(inst)
    return result


INSTRUCTIONS = parse_dockerfile(DOCKERFILE.read_text())
STAGES = stages(INSTRUCTIONS)
FINAL = STAGES[-1]


def all_of(name: str, stage: list[Instruction] = INSTRUCTIONS) -> list[Instruction]:
    return [i for i in stage if i.name == name]


# -- the Dockerfile --------------------------------------------------------------------------


def test_base_image_is_python_311_slim_for_every_stage():
    args = {
        a.args.split("=", 1)[0]: a.args.split("=", 1)[1]
        for a in INSTRUCTIONS
        if a.name == "ARG" and "=" in a.args
    }
    assert args["PYTHON_IMAGE"].startswith("python:3.11-slim")
    for stage in STAGES:
        assert stage[0].args.split()[0] == "${PYTHON_IMAGE}"


def test_multi_stage_final_copies_only_the_virtualenv():
    assert len(STAGES) >= 2
    build_name = STAGES[0][0].args.split()[-1]
    copies = all_of("COPY", FINAL)
    from_build = [c for c in copies if c.args.startswith(f"--from={build_name}")]
    assert [c.args.split()[-2:] for c in from_build] == [["/opt/venv", "/opt/venv"]]
    # Nothing from the build context reaches the final image, and no program is written
    # inline (the healthcheck is `cdb healthcheck`, a tested module of the package).
    assert copies == from_build


def test_package_installed_once_without_cache_in_the_build_stage():
    runs = " ".join(r.args for r in all_of("RUN"))
    assert runs.count("pip install") == 1
    pip_runs = [r for r in all_of("RUN", STAGES[0]) if "pip install" in r.args]
    assert len(pip_runs) == 1 and "--no-cache-dir" in pip_runs[0].args
    assert "-e " not in pip_runs[0].args and "--editable" not in pip_runs[0].args
    envs = " ".join(e.args for e in all_of("ENV", STAGES[0]))
    assert "PIP_NO_CACHE_DIR=1" in envs
    # pip itself is removed from the virtualenv the final image gets.
    assert "pip uninstall --yes pip" in pip_runs[0].args


def test_final_stage_has_no_compiler_no_pip_and_no_apt_lists():
    runs = [r.args for r in all_of("RUN", FINAL)]
    text = " ".join(runs)
    for tool in ("gcc", "g++", "build-essential", "make ", "clang", "pip install", "-dev "):
        assert tool not in text, tool
    for run in runs:
        if "apt-get install" in run:
            assert "--no-install-recommends" in run
            assert "rm -rf /var/lib/apt/lists/*" in run  # in the same layer
    # The backup tools the operator's CronJob runs from this image are installed.
    assert "postgresql-client-15" in text and "redis-tools" in text


def test_runs_as_uid_1000_and_the_command_chooses():
    users = all_of("USER")
    assert users and users[-1] in FINAL
    assert users[-1].args.split(":")[0] == "1000"
    useradd = " ".join(r.args for r in all_of("RUN", FINAL))
    assert "--uid 1000" in useradd and "--gid 1000" in useradd
    # No ENTRYPOINT: `cdb run <service>` and `cdb-operator` are both plain commands.
    assert all_of("ENTRYPOINT") == []
    cmd = all_of("CMD", FINAL)[-1]
    assert cmd.args.startswith("[")


def test_healthcheck_present_in_the_final_stage():
    checks = all_of("HEALTHCHECK", FINAL)
    assert len(checks) == 1
    assert checks[0].args.endswith('CMD ["cdb", "healthcheck"]')
    assert "--interval=" in checks[0].args and "--timeout=" in checks[0].args
    assert not any(i.heredocs for i in INSTRUCTIONS), "programs belong in the package"


# -- .dockerignore -----------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"  # "**/x" matches x at any depth, the top included
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + "$")


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip("/")
        regex = _pattern_regex(pattern)
        if any(regex.match(p) for p in prefixes):
            ignored = not negate
    return ignored


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def test_dockerignore_sends_only_the_package_sources():
    patterns = dockerignore_patterns()
    needed = [
        "pyproject.toml",
        "README.md",
        "services/cdb/runtime.py",
        "services/cdb/db/migrations/0001_initial.sql",
        "operator/cdb_operator/main.py",
    ]
    for path in needed:
        assert (REPO / path).exists(), path
        assert not dockerignored(path, patterns), path
    for path in (
        ".git/HEAD",
        ".cache/k8s-tools/2.2.2/helm",
        "tests/conftest.py",
        "charts/claire-de-binare/values.yaml",
        "services/cdb/__pycache__/runtime.cpython-311.pyc",
        "claire_de_binare.egg-info/PKG-INFO",
        ".env",
        "Dockerfile.base",
    ):
        assert dockerignored(path, patterns), path


def test_everything_the_dockerfile_copies_is_in_the_context():
    patterns = dockerignore_patterns()
    for inst in all_of("COPY", STAGES[0]):
        sources = [a for a in shlex.split(inst.args) if not a.startswith("--")][:-1]
        for src in sources:
            assert (REPO / src).exists(), src
            assert not dockerignored(src.rstrip("/"), patterns), src


# -- kind-config.yaml ------------------------------------------------------------------------


def test_kind_config_is_a_control_plane_and_a_worker():
    config = yaml.safe_load((REPO / "kind-config.yaml").read_text())
    assert config["kind"] == "Cluster"
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert [n["role"] for n in config["nodes"]] == ["control-plane", "worker"]
    mappings = [m for n in config["nodes"] for m in n.get("extraPortMappings", [])]
    assert len({m["hostPort"] for m in mappings}) == len(mappings)
    for m in mappings:
        assert 30000 <= m["containerPort"] <= 32767  # NodePorts
        assert m["listenAddress"] == "127.0.0.1"  # not exposed beyond the laptop
