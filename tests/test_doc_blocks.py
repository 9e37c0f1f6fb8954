"""The shell blocks of README.md, docs/local.md and docs/runbook.md, run as pasted.

Every ```sh / ```bash block carries a marker on the line before it:
``<!-- doc-test: run -->`` (run here, in order, each block in a fresh ``bash -eo pipefail``,
against one ``cdb up`` with private servers this module starts) or
``<!-- doc-test: skip: REASON -->`` (needs a cluster, placeholders of the reader's own …).
A block without a marker fails the first test, so no command can drift unnoticed.
Blocks of one document share a working directory (``./backups`` made by one is read by
the next); ``cdb`` on their PATH is this interpreter's.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import wait_until
from test_local import Command, base_env, cdb, cleanup, tempdir

ROOT = Path(__file__).resolve().parent.parent
DOCS = ("README.md", "docs/local.md", "docs/runbook.md")
SHELLS = {"sh", "bash"}
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
MARKER = re.compile(r"<!--\s*doc-test:\s*(run|skip)\s*(?::\s*(.*?))?\s*-->")


@dataclass
class Block:
    doc: str
    line: int  # 1-based line of the opening fence
    marker: str | None  # run / skip / None
    reason: str
    body: str

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}"


def shell_blocks(doc: str) -> list[Block]:
    """The shell blocks of ``doc`` with the marker on the nearest non-empty line above."""
    lines = (ROOT / doc).read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, lang = match.group(1), match.group(2)
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if lang in SHELLS:
            above = next((x for x in reversed(lines[:i]) if x.strip()), "")
            found = MARKER.search(above)
            body = "\n".join(x[len(indent) :] for x in lines[i + 1 : end])
            blocks.append(
                Block(
                    doc,
                    i + 1,
                    found.group(1) if found else None,
                    (found.group(2) or "") if found else "",
                    body,
                )
            )
        i = end + 1
    return blocks


def test_every_shell_block_says_whether_it_runs_here():
    blocks = [b for doc in DOCS for b in shell_blocks(doc)]
    assert len(blocks) > 20
    unmarked = [str(b) for b in blocks if b.marker is None]
    assert not unmarked, f"shell blocks without a doc-test marker: {unmarked}"
    no_reason = [str(b) for b in blocks if b.marker == "skip" and not b.reason]
    assert not no_reason, f"skipped without a reason: {no_reason}"
    assert sum(b.marker == "run" for b in blocks) >= 5


@pytest.fixture(scope="module")
def local_bot() -> Iterator[dict[str, str]]:
    """One ``cdb up`` with private servers; the environment the blocks run in."""
    root = tempdir("cdb-docs-")
    shim = root / "bin"
    shim.mkdir()
    (shim / "cdb").write_text(f'#!/bin/sh\nexec {sys.executable} -m cdb "$@"\n')
    (shim / "cdb").chmod(0o755)
    env = base_env(PATH=f"{shim}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    env.pop("CDB_DATA_DIR", None)
    data = root / "data"
    up = Command(
        ["up", "--data-dir", str(data), "--http-port-base", "0", "--refresh", "5"],
        env,
        root / "up.out",
    )
    info = None
    try:
        wait_until(
            lambda: cdb(["status"], env).returncode == 0,
            timeout=120,
            interval=1,
            message=f"cdb up healthy (output: {root / 'up.out'})",
        )
        import json

        info = json.loads((data / "up.json").read_text())
        yield env
    finally:
        if up.proc.poll() is None:
            up.proc.send_signal(signal.SIGINT)
        cleanup(up, info, data)


@pytest.mark.parametrize("doc", DOCS)
def test_the_blocks_marked_run_work_when_pasted(doc, local_bot):
    work = tempdir("cdb-doc-work-")
    ran = 0
    for block in shell_blocks(doc):
        if block.marker != "run":
            continue
        done = subprocess.run(
            ["bash", "-eo", "pipefail", "-c", block.body],
            env=local_bot,
            cwd=work,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, (
            f"{block} exited {done.returncode}:\n{block.body}\n--- stdout\n{done.stdout}"
            f"\n--- stderr\n{done.stderr}"
        )
        ran += 1
    assert ran, f"{doc} has no block that runs here"
