#!/usr/bin/env bash
# Static checks: ruff (lint and format) and mypy --strict on the engine, screens and app shell.
# Uses the project's venv (made by ./test.sh): mypy needs the installed packages to check against.
set -euo pipefail
cd "$(dirname "$0")"
py=.venv/bin/python
if [ ! -x "$py" ]; then
    echo "check.sh: no .venv here; run ./test.sh once first (it makes the venv with the test extras)" >&2
    exit 2
fi
"$py" -m pip install -q --disable-pip-version-check -c constraints.txt ruff mypy
"$py" -m ruff check engine backbone_tui screens tests bench
"$py" -m ruff format --check engine backbone_tui screens tests bench
"$py" -m mypy
