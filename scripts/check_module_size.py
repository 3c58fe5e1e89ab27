"""Fail when a Python module is longer than the limit (docs/architecture.md: at most 500 lines).

Usage: ``python scripts/check_module_size.py LIMIT DIR [DIR ...]``.

``scripts/module_size_debt.txt`` lists the modules still over the limit (issue 13's
remaining splits) with the length they had when listed: such a module may shrink,
never grow, and any other module over the limit fails the check. The list only
ever gets shorter.
"""

from __future__ import annotations

import sys
from pathlib import Path

DEBT = Path(__file__).with_name("module_size_debt.txt")


def _debt() -> dict[str, int]:
    out: dict[str, int] = {}
    if DEBT.exists():
        for line in DEBT.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                path, lines = line.rsplit(maxsplit=1)
                out[path] = int(lines)
    return out


def main(argv: list[str]) -> int:
    limit = int(argv[0])
    debt = _debt()
    failed = False
    for top in argv[1:]:
        for path in sorted(Path(top).rglob("*.py")):
            lines = path.read_text(encoding="utf-8").count("\n")
            if lines <= limit:
                continue
            allowed = debt.get(path.as_posix())
            if allowed is None:
                print(f"{path}: {lines} lines, over {limit}: split it by what lives in it")
                failed = True
            elif lines > allowed:
                print(f"{path}: {lines} lines, over {limit} and grown past {allowed}: split it")
                failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
