# shellcheck shell=bash
# Sourced by the other scripts: pick a Python, make (or reuse) the virtual
# environment that belongs to that Python, and install the matching pins.
#
# The work tree is shared with a Python 3.14 root, so each Python gets a venv
# of its own under .venv/<tag>; one Python never reuses another's venv.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"

pick_python() {
  local candidate
  # Current Home Assistant needs Python >= 3.14.2.
  for candidate in python3.14 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 14, 2) else 1)' 2>/dev/null; then
      PYTHON="$(command -v "$candidate")"; LINE=current; return
    fi
  done
  # Otherwise the minimum line on Python 3.13 (pyenv's included).
  if command -v pyenv >/dev/null 2>&1 && PYENV_VERSION=3.13.0 pyenv which python3.13 >/dev/null 2>&1; then
    PYTHON="$(PYENV_VERSION=3.13.0 pyenv which python3.13)"; LINE=min; return
  fi
  for candidate in python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 13) else 1)' 2>/dev/null; then
      PYTHON="$(command -v "$candidate")"; LINE=min; return
    fi
  done
  echo "No usable Python: need 3.13 (Home Assistant 2025.4) or >= 3.14.2 (current)." >&2
  exit 1
}

pick_python
TAG="$("$PYTHON" -c 'import sys; print(f"py{sys.version_info[0]}{sys.version_info[1]}")')"
VENV="$ROOT/.venv/$TAG"
REQS="$ROOT/requirements/$LINE.txt"

# Make (or reuse) a venv and install a requirements file into it; reinstall
# only when the pins changed since the last install.
ensure_venv() {
  local venv="$1" reqs="$2" want
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
    echo "Creating $venv with $PYTHON" >&2
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
  fi
  want="$(cat "$reqs" "$ROOT/requirements/common.txt" | sha256sum | cut -d' ' -f1)"
  if [ ! -f "$venv/.installed" ] || [ "$(cat "$venv/.installed")" != "$want" ]; then
    echo "Installing $(basename "$reqs") pins into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -r "$reqs"
    echo "$want" >"$venv/.installed"
  fi
}

ensure_venv "$VENV" "$REQS"
export PATH="$VENV/bin:$PATH"
export VIRTUAL_ENV="$VENV"

# The browser tests' own packages (Playwright), kept out of the pins above so
# that they do not reinstall the venv; scripts/e2e and scripts/lint (which
# type-checks tests/e2e) ask for them.
ensure_e2e_requirements() {
  local want
  want="$(sha256sum "$ROOT/requirements/e2e.txt" | cut -d' ' -f1)"
  if [ "$(cat "$VENV/.e2e-installed" 2>/dev/null)" != "$want" ]; then
    echo "Installing requirements/e2e.txt into $VENV" >&2
    "$VENV/bin/python" -m pip install --quiet -r "$ROOT/requirements/e2e.txt"
    echo "$want" >"$VENV/.e2e-installed"
  fi
}
