"""The A2A compatibility kit (TCK) for the tests: installed once into ``.cache/a2a-tck``.

The kit is a snapshot of a2aproject/a2a-tck (``../shared/a2a-tck`` beside the
repository, or ``$A2A_TCK_DIR``). It is copied into the cache (it writes its reports
into its own folder) and gets its own virtual environment there, with its
requirements from PyPI, so a fresh machine needs nothing else. Without the kit or
PyPI the tests skip locally and fail under ``CI=true``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from agentcomm.testing.extras import missing

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "a2a-tck"
#: What the kit's pyproject adds to its requirements.txt.
EXTRA_REQUIREMENTS = [
    "python-dotenv>=1.0.0",
    "grpcio-status>=1.62.0",
    "proto-plus>=1.22.3",
    "protobuf>=4.25.0",
    "pyOpenSSL>=23.0.0",
    "aiohttp>=3.9.0",
]


def source_dir() -> Path:
    """Where the kit's snapshot is."""
    where = os.environ.get("A2A_TCK_DIR")
    path = Path(where) if where else ROOT.parent / "shared" / "a2a-tck"
    if not (path / "run_tck.py").is_file():
        missing(f"the A2A TCK is not at {path} (set A2A_TCK_DIR to a copy of a2aproject/a2a-tck)")
    return path


def install() -> tuple[Path, Path]:
    """The kit's working copy and its Python, installed on first use."""
    src = source_dir()
    CACHE.mkdir(parents=True, exist_ok=True)
    (ROOT / ".cache" / ".gitignore").write_text("*\n")
    lines = (src / "requirements.txt").read_text().splitlines()
    reqs = "\n".join([*lines, *EXTRA_REQUIREMENTS])
    stamp = hashlib.sha256(reqs.encode() + str(src).encode()).hexdigest()
    work, venv = CACHE / "kit", CACHE / "venv"
    python = venv / "bin" / "python"
    marker = CACHE / "installed"
    if not (marker.exists() and marker.read_text() == stamp and python.exists()):
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(src, work, ignore=shutil.ignore_patterns(".git", "reports", "SUT"))
        (work / "reports").mkdir(exist_ok=True)
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        req_file = CACHE / "requirements.txt"
        req_file.write_text(reqs + "\n")
        proc = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "-r", str(req_file)],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if proc.returncode != 0:
            missing(f"installing the TCK's requirements failed: {proc.stderr[-800:]}")
        marker.write_text(stamp)
    return work, python


def free_port() -> int:
    """A free TCP port on the loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(target: str, *args: str, port: int | None = None) -> Iterator[str]:
    """``agentcomm a2a serve target ...`` in a subprocess; yields its base URL (no slash)."""
    port = port or free_port()
    cmd = [
        sys.executable,
        "-m",
        "agentcomm",
        "a2a",
        "serve",
        target,
        "--http",
        f"127.0.0.1:{port}",
        *args,
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        if "serving" not in line:
            proc.kill()
            raise AssertionError(f"a2a serve did not start: {line}{proc.stderr.read()[-2000:]}")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def run(
    work: Path, python: Path, url: str, category: str, transport: str
) -> tuple[dict[str, int], set[str]]:
    """Run ``run_tck.py --sut-url url --category category --transports transport``: the
    counts and the failures.

    The counts come from pytest's summary line (``75 passed, 40 skipped in 60 s``),
    the failures from its short summary (``FAILED <node id>``, ``ERROR <node id>``).
    """
    cmd = [str(python), "run_tck.py", "--sut-url", url, "--category", category]
    proc = subprocess.run(
        [*cmd, "--transports", transport],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    counts: dict[str, int] = {}
    failures: set[str] = set()
    for line in proc.stdout.splitlines():
        if line.startswith(("FAILED tests/", "ERROR tests/")):
            failures.add(line.split(" ", 1)[1].split(" - ", 1)[0].strip())
        found = re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed)", line)
        if found and " in " in line:
            counts = {
                kind.rstrip("s") if kind.startswith("error") else kind: int(n) for n, kind in found
            }
    if not counts:
        raise AssertionError(f"the TCK did not run:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    return counts, failures
