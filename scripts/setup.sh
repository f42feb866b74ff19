#!/usr/bin/env bash
# Create .venv and install the project with its dev tools, once, at the versions in constraints.txt (the set the
# test suite passed with; `python scripts/lock_deps.py` refreshes it). It installs again only when .venv is
# missing or pyproject.toml or constraints.txt has changed since the last install (a stamp in .venv holds their
# sha256), so serve.sh and test.sh start at once after the first run. pip's output goes to .venv/install.log,
# shown only on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.pyproject.sha256
log=.venv/install.log
lock=constraints.txt
if [ ! -f "$lock" ]; then
  echo "scripts/setup.sh: $lock is missing (python scripts/lock_deps.py writes it)" >&2
  exit 1
fi
want=$("$PY" -c 'import hashlib, sys; print(hashlib.sha256(b"".join(open(f, "rb").read() for f in sys.argv[1:])).hexdigest())' pyproject.toml "$lock")
if [ -x .venv/bin/python ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
rm -f "$stamp"  # written again only after a complete install
echo "scripts/setup.sh: installing the project into .venv (first run, or pyproject.toml or $lock changed; a few minutes)" >&2
{
  .venv/bin/python -m pip install -q --upgrade pip || true  # offline is fine: the bundled pip works
  .venv/bin/python -m pip install -q -c "$lock" -e '.[dev]'
} >"$log" 2>&1 || {
  echo "scripts/setup.sh: the install failed; the end of $log:" >&2
  tail -n 40 "$log" >&2
  exit 1
}
echo "$want" >"$stamp"
