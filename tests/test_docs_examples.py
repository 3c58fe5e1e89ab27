"""Every ```python block of docs/*.md and README.md runs, as is, as a program.

Each block is written to a file and run in a subprocess from the repository root
(so a block may name ``examples/...``), with a timeout. A block that needs a broker
reads ``NATS_URL``; for those the test starts a ``nats-server`` (the fixtures of
``agentcomm.testing``) and passes its URL. A block that logs in as an agent (it reads
``AGENTCOMM_NATS_PASSWORD_<NAME>``) gets what the deployment steps of its doc make: a
broker whose authorization is generated from the doc's ``policy.toml`` block, and a
working directory holding that ``policy.toml`` and a ``keys/`` directory. Nothing is
skipped for a missing extra: the dev extras (mcp, otel, nats) are installed wherever the
suite runs. Text that is not a program (shell commands, JSON, TOML, output) goes in
a fence of its own language, which this test leaves alone.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agentcomm import Identity, Policy
from agentcomm.testing.nats_server import NatsServer

ROOT = Path(__file__).resolve().parents[1]
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
TIMEOUT = 45.0

# An opening fence: its indentation (a block inside a list item) and its language.
_FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[^\n`]*)\n", re.M)
# Languages a fence may carry; "py", "python3", "pycon" and the like would escape
# this test, so they are refused rather than silently left out.
_LANGUAGES = {"python", "bash", "json", "toml", "text", "mermaid", ""}  # mermaid: diagrams


@dataclass(frozen=True)
class Block:
    """One fenced block: the file, the line of its opening fence, language and code."""

    path: Path
    line: int
    lang: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def fenced_blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, dedented, with 1-based line numbers."""
    text = path.read_text()
    blocks: list[Block] = []
    pos = 0
    while (m := _FENCE.search(text, pos)) is not None:
        indent = m.group("indent")
        close = re.compile(rf"^{indent}```[ \t]*$", re.M).search(text, m.end())
        if close is None:
            raise AssertionError(f"{path}:{text.count(chr(10), 0, m.start()) + 1}: unclosed fence")
        line = text.count("\n", 0, m.start()) + 1
        code = textwrap.dedent(text[m.end() : close.start()])
        blocks.append(Block(path, line, m.group("lang").strip(), code))
        pos = close.end()
    return blocks


ALL_BLOCKS = [b for p in DOCS for b in fenced_blocks(p)]
PYTHON_BLOCKS = [b for b in ALL_BLOCKS if b.lang == "python"]


def test_fences_use_known_languages() -> None:
    odd = [f"{b.where}: ```{b.lang}" for b in ALL_BLOCKS if b.lang not in _LANGUAGES]
    assert not odd, f"use ```python for code (run by this test) or one of {_LANGUAGES}: {odd}"


def test_blocks_are_found_in_every_doc_that_has_code() -> None:
    # Guards the extractor: if it stopped seeing blocks, every run test would vanish.
    files = {b.path.name for b in PYTHON_BLOCKS}
    assert {"README.md", "blackboard.md", "mcp.md", "nats.md", "pubsub.md"} <= files
    assert len(PYTHON_BLOCKS) >= 20


def test_the_extractor_handles_indented_blocks(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("intro\n\n1. step:\n\n   ```python\n   print(1)\n   ```\n\n```json\n{}\n```\n")
    blocks = fenced_blocks(doc)
    found = [(b.line, b.lang, b.code) for b in blocks]
    assert found == [(5, "python", "print(1)\n"), (9, "json", "{}\n")]


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[b.where for b in PYTHON_BLOCKS])
def test_python_block_runs(block: Block, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    script = tmp_path / f"{block.path.stem}_{block.line}.py"
    script.write_text(block.code)
    env, cwd = dict(os.environ), ROOT
    with contextlib.ExitStack() as stack:
        if "AGENTCOMM_NATS_PASSWORD_" in block.code:
            cwd = tmp_path / "deploy"
            env |= stack.enter_context(_deployment(block, cwd))
        elif "NATS_URL" in block.code:
            env["NATS_URL"] = request.getfixturevalue("nats_url")
        proc = _run(block, script, cwd, env)
    if proc.returncode != 0:
        pytest.fail(
            f"{block.where}: the block exited with {proc.returncode} (line N of the block is "
            f"line {block.line}+N of the doc)\n--- stderr ---\n{proc.stderr}"
            f"--- stdout ---\n{proc.stdout}",
            pytrace=False,
        )
    if proc.stderr.strip():
        pytest.fail(f"{block.where}: the block wrote to stderr:\n{proc.stderr}", pytrace=False)


def _run(
    block: Block, script: Path, cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, str(script)],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        pytest.fail(f"{block.where}: the block did not finish in {TIMEOUT} s\n{err or ''}")


@contextlib.contextmanager
def _deployment(block: Block, directory: Path) -> Iterator[dict[str, str]]:
    """The doc's deployment steps: policy.toml, keys/, a broker with generated users."""
    tomls = [b.code for b in fenced_blocks(block.path) if b.lang == "toml"]
    assert len(tomls) == 1, f"{block.where}: expected one ```toml policy block in its doc"
    policy = Policy.from_toml(tomls[0])
    namespace = re.search(r'namespace="([^"]+)"', block.code)
    assert namespace is not None, f'{block.where}: name the namespace as namespace="..."'
    directory.mkdir()
    (directory / "policy.toml").write_text(tomls[0])
    env: dict[str, str] = {}
    passwords = {"admin": "pw-admin"}
    for name in sorted(set(policy.agents) | policy.trusted):
        ident = Identity.generate(name)
        ident.save(directory / "keys")
        variable = name.upper().replace("-", "_")
        env[f"AGENTCOMM_KEY_{variable}"] = ident.private_pem().decode()
        passwords[name] = env[f"AGENTCOMM_NATS_PASSWORD_{variable}"] = f"pw-{name}"
    config = policy.nats_config(namespace=namespace.group(1), passwords=passwords, admin="admin")
    with NatsServer(directory / "nats", config=config) as server:
        env["NATS_URL"] = server.url
        yield env
