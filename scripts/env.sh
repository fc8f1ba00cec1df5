# Shared by scripts/serve and scripts/test: a virtualenv in .venv with Footfall installed.
# Re-installs only when pyproject.toml changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON_BIN="${PYTHON:-$(command -v python3.11 || command -v python3)}"

ensure_venv() {
  local extras="$1" stamp want
  if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON_BIN" -m venv "$VENV"
  fi
  stamp="$VENV/.footfall-installed-$extras"
  want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    if [ "$extras" = "base" ]; then
      "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT"
    else
      "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[$extras]"
    fi
    echo "$want" > "$stamp"
  fi
}

# Debian packages some tests need (browser, database server); installed once, as root.
ensure_debian_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

# An extra whose pins conflict with the test extra's (analytics-python 1.x pins backoff 1.x):
# installed apart into .venv/<extra> (pip --target), for tests that run it in a process of
# its own with that folder first on PYTHONPATH.
ensure_side_extra() {
  local extra="$1" dir="$VENV/$1" stamp want
  local -a reqs
  stamp="$dir/.footfall-installed"
  want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    rm -rf "$dir"
    mapfile -t reqs < <("$VENV/bin/python" -c 'import sys, tomllib
extras = tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"]
print("\n".join(extras[sys.argv[2]]))' "$ROOT/pyproject.toml" "$extra")
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-warn-conflicts \
      --target "$dir" "${reqs[@]}"
    echo "$want" > "$stamp"
  fi
}
