#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The browser test (tests/test_browser.py) drives Debian's chromium through chromium-driver. Install them when
# we can (root, apt-get); if that fails the run goes on and that test skips, saying why.
if { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; } && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt_log=$(mktemp)
  if ! (export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq chromium chromium-driver) \
      >"$apt_log" 2>&1; then
    echo "scripts/test.sh: could not install chromium + chromium-driver (the browser test will skip):" >&2
    tail -n 5 "$apt_log" >&2 || true
  fi
  rm -f "$apt_log"
fi
export TRIAGE_DATA="${TRIAGE_DATA:-$(cd .. && pwd)/shared/data}"
exec .venv/bin/python -m pytest -q "$@"
