#!/usr/bin/env bash
# harmony_lab developer entry point. Creates .venv on first use, then:
#   bash dev.sh lab     JupyterLab on notebooks/ with the embedded Realtime stack and demo traffic
#   bash dev.sh test    every test (unit, real Postgres, real clients, real browser)
#   bash dev.sh bench   every benchmark, regenerating bench/README.md
#   bash dev.sh setup   only create/refresh the environment (Python, and esbuild for the widgets)
#   bash dev.sh build-widgets [--watch]   rebuild harmony_lab/widgets/static/ from widgets/ (esbuild)
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
VENV=${HARMONY_LAB_VENV:-.venv}

need_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@"; else return 1; fi; }

# the stamp names the extras installed for this pyproject.toml; more extras than asked for will do
# (after `bash dev.sh test`, `bash dev.sh lab` starts at once instead of reinstalling)
installed() {
  local stamp="$1" extras="$2" have sum e
  [ -f "$stamp" ] || return 1
  read -r have sum < "$stamp" || return 1
  [ "$sum" = "$(cat pyproject.toml | cksum)" ] || return 1
  for e in ${extras//,/ }; do
    case ",$have," in *",$e,"*) ;; *) return 1 ;; esac
  done
}

setup_python() {
  if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating $VENV"
    "$PY" -m venv "$VENV"
  fi
  local stamp="$VENV/.harmony-lab-installed" extras="$1"
  local want; want="$extras $(cat pyproject.toml | cksum)"
  if ! installed "$stamp" "$extras"; then
    echo "==> installing harmony_lab[$extras] into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e ".[$extras]"
    echo "$want" > "$stamp"
  fi
}

setup_browser() {
  if [ -x /usr/bin/chromium ]; then return 0; fi
  echo "==> installing Debian's chromium (browser tests)"
  if ! need_root bash -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null'; then
    echo "!! could not install chromium (needs root or passwordless sudo); browser tests will be skipped" >&2
  fi
}

setup_node() {
  if ! command -v npm >/dev/null; then
    echo "!! node/npm not found; realtime-js conformance tests will be skipped" >&2
    return 0
  fi
  if [ -f tests/js/package.json ] && [ ! -d tests/js/node_modules ]; then
    echo "==> installing realtime-js for the conformance tests"
    (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

# esbuild and the widgets' npm dependencies (widgets/package-lock.json): the build and the test that
# checks the committed bundles are up to date with their sources need them
setup_widgets() {
  if ! command -v npm >/dev/null; then
    echo "!! node/npm not found; the widget bundles cannot be rebuilt (their up-to-date test is skipped)" >&2
    return 1
  fi
  if [ ! -x widgets/node_modules/.bin/esbuild ] || [ widgets/package-lock.json -nt widgets/node_modules/.package-lock.json ]; then
    echo "==> installing esbuild and the widgets' npm dependencies"
    (cd widgets && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

cmd=${1:-test}; shift || true
case "$cmd" in
  setup)
    setup_python "lab,test"
    setup_widgets || true ;;
  build-widgets)
    setup_widgets
    exec node widgets/build.mjs "$@" ;;
  lab)
    setup_python "lab"
    exec "$VENV/bin/harmony-lab" lab "$@" ;;
  test)
    setup_python "lab,test"
    setup_browser
    setup_node
    setup_widgets || true
    "$VENV/bin/ruff" check harmony_lab tests bench
    "$VENV/bin/ruff" format --check harmony_lab tests bench
    exec "$VENV/bin/python" -m pytest "$@" ;;
  bench)
    setup_python "lab,test,bench"
    exec "$VENV/bin/python" bench/run_all.py "$@" ;;
  *) echo "usage: bash dev.sh {lab|test|bench|setup|build-widgets} [args...]" >&2; exit 2 ;;
esac
