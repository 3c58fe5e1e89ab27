#!/usr/bin/env bash
# Build the sdist and the wheel, install the wheel (with the README's extras) into a
# fresh venv outside the repository, and run the demo from there: what a user gets
# from `pip install agentcomm` works without this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
out=.cache/dist
rm -rf "$out"
"$PY" -m build --sdist --wheel --outdir "$out" . >/dev/null 2>&1 || { "$PY" -m build --outdir "$out" .; exit 1; }
wheel=$(ls "$out"/agentcomm-*.whl)
ls "$out"/agentcomm-*.tar.gz >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m venv "$tmp/venv"
quiet() { "$@" 2>&1 | grep -v "^WARNING: Location" || true; }
quiet "$tmp/venv/bin/pip" install --quiet "${wheel}[mcp,otel,dashboard]"
# the license ships in the wheel, whole
"$tmp/venv/bin/python" - <<'PY'
import importlib.metadata as md
files = [f for f in md.files("agentcomm") if f.name == "LICENSE"]
assert files, "LICENSE is not in the wheel"
text = files[0].read_text()
assert "Permission is hereby granted" in text and "Copyright" in text, text[:80]
PY
# the dashboard's page (static files, package data) ships in the wheel and is served
(cd "$tmp" && "$tmp/venv/bin/python" - <<'PY'
import asyncio, urllib.request
from agentcomm import Runtime

async def main() -> None:
    async with Runtime() as rt, rt.dashboard() as dash:
        base = dash.url.split("?")[0]
        for path in ("", "static/app.js", "static/flow.js", "static/style.css"):
            url = f"{base}{path}?token={dash.token}"
            body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
            assert len(body) > 500, (path, body[:80])

asyncio.run(main())
PY
) || { echo "the dashboard's page is not served from the installed wheel"; exit 1; }
(cd "$tmp" && "$tmp/venv/bin/agentcomm" demo >"$tmp/demo.log" 2>&1) || {
    tail -20 "$tmp/demo.log"; echo "the demo failed from the installed wheel"; exit 1; }
echo "wheel $(basename "$wheel"): installed outside the repository, demo ran ($(wc -l <"$tmp/demo.log") lines)"
