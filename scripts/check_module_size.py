"""Fail when a Python module is longer than the limit (docs/architecture.md: at most 500 lines).

Usage: ``python scripts/check_module_size.py LIMIT DIR [DIR ...]``.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    limit = int(argv[0])
    too_long = []
    for top in argv[1:]:
        for path in sorted(Path(top).rglob("*.py")):
            lines = path.read_text(encoding="utf-8").count("\n")
            if lines > limit:
                too_long.append((lines, path))
    for lines, path in sorted(too_long, reverse=True):
        print(f"{path}: {lines} lines, over {limit}: split it by what lives in it")
    return 1 if too_long else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
