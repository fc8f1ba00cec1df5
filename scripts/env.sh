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

# The `footfall` command where a new shell finds it: ~/.local/bin/footfall, a link to this
# checkout's .venv/bin/footfall. A link of ours (to some checkout's .venv/bin/footfall) is
# replaced; anything else there is someone else's and is left alone (returns 1).
link_command() {
  local bin="$HOME/.local/bin" want="$VENV/bin/footfall" link current
  link="$bin/footfall"
  if [ ! -x "$want" ]; then
    echo "scripts/install: $want is missing (run scripts/install without FOOTFALL_LINK_ONLY)" >&2
    return 1
  fi
  mkdir -p "$bin"
  if [ -L "$link" ]; then
    current="$(readlink "$link")"
    if [ "$current" = "$want" ]; then
      echo "footfall: $link already links to $want"
    elif [[ "$current" == */.venv/bin/footfall ]]; then
      ln -sfn "$want" "$link"
      echo "footfall: $link now links to $want (it linked to $current)"
    else
      echo "footfall: $link is a link to $current, not to a checkout's .venv/bin/footfall;" \
        "left as it is (remove it and run scripts/install again, or use $want)" >&2
      return 1
    fi
  elif [ -e "$link" ]; then
    echo "footfall: $link is a file of something else; left as it is" \
      "(remove it and run scripts/install again, or use $want)" >&2
    return 1
  else
    ln -s "$want" "$link"
    echo "footfall: $link links to $want"
  fi
  case ":$PATH:" in
    *":$bin:"*) ;;
    *)
      echo "$bin is not on your PATH; add this line to ~/.profile (or ~/.bashrc), then open a new shell:"
      # shellcheck disable=SC2016 # printed as it is, for the user's profile
      echo 'export PATH="$HOME/.local/bin:$PATH"'
      ;;
  esac
}
