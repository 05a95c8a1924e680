#!/usr/bin/env bash
# Installs everything the tests need (Debian packages, a virtual environment) and runs them.
set -euo pipefail
cd "$(dirname "$0")"

packages=()
command -v gpg >/dev/null 2>&1 || packages+=(gnupg)
command -v tmux >/dev/null 2>&1 || packages+=(tmux)
command -v dovecot >/dev/null 2>&1 || packages+=(dovecot-imapd dovecot-lmtpd)
command -v thin >/dev/null 2>&1 && [ -d /usr/share/redmine ] || packages+=(redmine redmine-sqlite thin)
python3 -c 'import ensurepip' >/dev/null 2>&1 || packages+=(python3-venv)  # stock Debian lacks it
if [ ${#packages[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 "${packages[@]}"
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
# constraints.txt pins every package the tests install, so a new release cannot change a snapshot
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
# both cores; a test that hangs fails after ten minutes instead of blocking the run
exec .venv/bin/python -m pytest -n 2 --timeout 600 "$@"
