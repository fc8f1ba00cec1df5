"""``scripts/install`` from a fresh clone: ``footfall`` found by a new login shell (through
the PATH line it prints), naming the clone's code folder; a file at ~/.local/bin/footfall
that is not its link left alone; its own stale link replaced.

The clone's ``.venv`` is not made with pip (no network, seconds instead of a minute): its
``bin/footfall`` is a wrapper running this test's Python on the clone's ``src`` folder, and
``FOOTFALL_LINK_ONLY=1`` tells scripts/install to link that venv as it is.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATH_LINE = 'export PATH="$HOME/.local/bin:$PATH"'


def _clone(tmp_path: Path) -> Path:
    """A ``git clone`` of this checkout, with the working tree's scripts/ and src/ copied
    over it (so uncommitted changes are what is tested; after a commit they are the same)."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    subprocess.run(
        ["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, capture_output=True
    )
    for folder in ("scripts", "src"):
        shutil.copytree(
            ROOT / folder,
            clone / folder,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
        )
    bin_dir = clone / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    wrapper = bin_dir / "footfall"
    wrapper.write_text(
        f'#!/bin/sh\nPYTHONPATH="{clone / "src"}" exec "{sys.executable}" -m footfall "$@"\n'
    )
    wrapper.chmod(0o755)
    return clone


def _install(clone: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(clone / "scripts" / "install")],
        env={"HOME": str(home), "PATH": "/usr/bin:/bin", "FOOTFALL_LINK_ONLY": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _login_shell(home: Path, command: str) -> subprocess.CompletedProcess[str]:
    """A new login shell with nothing inherited but HOME (PATH from /etc/profile and the
    user's ~/.profile)."""
    return subprocess.run(
        ["env", "-i", f"HOME={home}", "bash", "-lc", command],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_new_login_shell_finds_footfall_after_scripts_install(tmp_path: Path) -> None:
    clone = _clone(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    assert _login_shell(home, "command -v footfall").returncode != 0  # not there before
    out = _install(clone, home)
    assert out.returncode == 0, out.stderr
    link = home / ".local" / "bin" / "footfall"
    assert link.is_symlink()
    assert Path(link.readlink()) == clone / ".venv" / "bin" / "footfall"
    # ~/.local/bin did not exist at login, so it was not on PATH: the line to add is printed.
    assert PATH_LINE in out.stdout.splitlines(), out.stdout
    (home / ".profile").write_text(PATH_LINE + "\n")
    found = _login_shell(home, "command -v footfall && footfall version")
    assert found.returncode == 0, found.stderr
    where, shown = found.stdout.splitlines()
    assert where == str(link)
    assert shown == f"footfall 0.1.0 from {clone / 'src' / 'footfall'}"
    again = _install(clone, home)  # a second run changes nothing, and says so
    assert again.returncode == 0, again.stderr
    assert "already links" in again.stdout
    assert (
        PATH_LINE
        not in subprocess.run(
            ["bash", str(clone / "scripts" / "install")],
            env={
                "HOME": str(home),
                "PATH": f"{home}/.local/bin:/usr/bin:/bin",
                "FOOTFALL_LINK_ONLY": "1",
            },
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )  # already on PATH: no advice


def test_a_file_that_is_not_its_link_is_left_alone_and_a_stale_link_replaced(
    tmp_path: Path,
) -> None:
    clone = _clone(tmp_path)
    home = tmp_path / "home"
    bin_dir = home / ".local" / "bin"
    bin_dir.mkdir(parents=True)
    link = bin_dir / "footfall"
    link.write_text("#!/bin/sh\necho mine\n")
    out = _install(clone, home)
    assert out.returncode == 1
    assert "left as it is" in out.stderr
    assert not link.is_symlink()
    assert link.read_text() == "#!/bin/sh\necho mine\n"
    link.unlink()
    link.symlink_to("/usr/bin/true")  # someone's own link: not ours either
    out = _install(clone, home)
    assert out.returncode == 1
    assert "left as it is" in " ".join(out.stderr.split())
    assert link.readlink() == Path("/usr/bin/true")
    link.unlink()
    gone = tmp_path / "removed-checkout" / ".venv" / "bin" / "footfall"
    link.symlink_to(gone)  # a checkout since deleted: our own stale link
    out = _install(clone, home)
    assert out.returncode == 0, out.stderr
    assert Path(link.readlink()) == clone / ".venv" / "bin" / "footfall"
    assert f"it linked to {gone}" in out.stdout
