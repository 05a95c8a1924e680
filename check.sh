#!/usr/bin/env bash
# Static checks: ruff (lint and format) and mypy --strict on the engine.
set -euo pipefail
cd "$(dirname "$0")"
py=.venv/bin/python
[ -x "$py" ] || py=python3
"$py" -m pip install -q --disable-pip-version-check ruff mypy
"$py" -m ruff check engine backbone_tui screens tests bench
"$py" -m ruff format --check engine backbone_tui screens tests bench
"$py" -m mypy
