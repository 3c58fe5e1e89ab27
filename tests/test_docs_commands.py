"""Every `agentcomm ...` command and flag the README and docs show exists (issue 15)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from agentcomm.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# `agentcomm ...` in inline code (after optional VAR=value words), and shell lines of
# code blocks that are not Python (a prompt, an env assignment or a path may come first)
_INLINE = re.compile(r"`(?:[A-Z_]+=\S+ )*(?:\S*/)?agentcomm ([^`]+)`")
_SHELL = re.compile(r"(?:^|&&|\$|[;|] )\s*(?:[A-Z_]+=\S+ +)*(?:\S*/)?agentcomm +([^#|;&]+)")


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _flags(p: argparse.ArgumentParser) -> set[str]:
    return {s for a in p._actions for s in a.option_strings}


def _calls() -> list[tuple[str, int, list[str]]]:
    out = []
    for doc in DOCS:
        fence: str | None = None
        for n, line in enumerate(doc.read_text().splitlines(), 1):
            stripped = line.strip()
            if stripped.startswith("```"):
                fence = None if fence is not None else stripped[3:].strip()
                continue
            if fence is None:
                found = _INLINE.findall(line)
            elif fence in ("python", "json", "toml", "mermaid", "js", "javascript"):
                found = []
            else:
                found = _SHELL.findall(line)
            out += [(doc.name, n, words.split()) for words in found if words.split()]
    return out


CALLS = _calls()


def test_the_docs_show_commands() -> None:
    assert len(CALLS) > 40  # the scan finds the commands (a broken regex would pass)


@pytest.mark.parametrize(("doc", "line", "words"), CALLS, ids=[f"{d}:{n}" for d, n, _ in CALLS])
def test_each_command_and_flag_exists(doc: str, line: int, words: list[str]) -> None:
    parser = build_parser()
    path = []
    for word in words:
        subs = _subparsers(parser)
        if not subs or word.startswith("-"):
            break
        if word.startswith(("[", "<")) or word.isupper() or "|" in word:
            # a placeholder (COMMAND, [--x], a|b): the choices are checked below
            alternatives = [w for w in word.strip("[]<>").split("|") if w in subs]
            if alternatives:
                parser = subs[alternatives[0]]
                path.append(alternatives[0])
                continue
            break
        assert word in subs, f"{doc}:{line}: `agentcomm {' '.join([*path, word])}` is no command"
        parser = subs[word]
        path.append(word)
    known = _flags(parser)
    for word in words:
        for flag in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", word):
            assert flag in known, f"{doc}:{line}: `agentcomm {' '.join(path)}` has no {flag}"
