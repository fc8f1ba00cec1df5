"""The ``footfall`` command: sites with origins and hashed keys, migrations, a held database."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import httpx

from conftest import Server, config_with
from footfall.sites import verify_api_key
from footfall.store import open_store
from footfall.store.migrations import MIGRATIONS


def footfall(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "COLUMNS": "200", "FOOTFALL_CONFIG": str(cwd / "none.toml")}
    if "PYTHONPATH" in os.environ:  # the code under test
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    (cwd / "none.toml").write_text("")
    return subprocess.run(
        [sys.executable, "-m", "footfall", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_sites_add_stores_only_the_key_hash(tmp_path: Path) -> None:
    db = str(tmp_path / "cli.duckdb")
    out = footfall(
        "sites",
        "add",
        "shop",
        "--origin",
        "https://shop.test",
        "--origin",
        "https://*.shop.test",
        "--name",
        "My shop",
        "--database",
        db,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    key = next(line.strip() for line in out.stdout.splitlines() if line.strip().startswith("ff_"))
    assert len(key) > 40
    raw = Path(db).read_bytes() + (
        Path(db + ".wal").read_bytes() if Path(db + ".wal").exists() else b""
    )
    assert key.encode() not in raw
    store = open_store(db)
    try:
        assert verify_api_key(store, key) == "shop"
        assert verify_api_key(store, key[:-1] + ("A" if key[-1] != "A" else "B")) is None
        [record] = store.list_api_keys("shop")
        assert record.key_hash == hashlib.sha256(key.encode()).hexdigest()
        site = store.get_site("shop")
        assert site is not None
        assert site.allowed_origins == (
            "https://shop.test",
            "https://*.shop.test",
        )
    finally:
        store.close()

    listed = footfall("sites", "list", "--database", db, cwd=tmp_path)
    assert "shop" in listed.stdout
    assert "https://*.shop.test" in listed.stdout
    revoked = footfall("sites", "revoke-key", record.key_id, "--database", db, cwd=tmp_path)
    assert revoked.returncode == 0
    store = open_store(db)
    try:
        assert verify_api_key(store, key) is None
    finally:
        store.close()
    bad = footfall("sites", "add", "Bad Id!", "--database", db, cwd=tmp_path)
    assert bad.returncode == 2
    assert "site id" in bad.stderr
    bad_origin = footfall(
        "sites", "add", "x", "--origin", "shop.test", "--database", db, cwd=tmp_path
    )
    assert bad_origin.returncode == 2
    assert "not an origin" in bad_origin.stderr


def test_site_added_by_cli_is_enforced_by_server(tmp_path: Path) -> None:
    srv = Server(tmp_path / "srv", config='allowed_origins = ["https://main.test"]\n')
    footfall(
        "sites",
        "add",
        "blog",
        "--origin",
        "https://blog.test",
        "--no-key",
        "--database",
        str(srv.database),
        cwd=tmp_path,
    )
    srv.start()
    try:
        with srv.client() as api:
            event = {"event": "visitor", "token": "cli-site-token"}
            assert (
                api.post(
                    "/api/analytics/track", json=event, headers={"origin": "https://blog.test"}
                ).status_code
                == 200
            )
            assert (
                api.post(
                    "/api/analytics/track?site=blog",
                    json=event,
                    headers={"origin": "https://main.test"},
                ).status_code
                == 403
            )
            busy = footfall("sites", "list", "--database", str(srv.database), cwd=tmp_path)
            assert busy.returncode == 1
            assert "in use" in busy.stderr
    finally:
        srv.stop()
    assert srv.rows("SELECT site_id FROM events") == [("blog",)]


def test_migrate_is_idempotent(tmp_path: Path) -> None:
    db = str(tmp_path / "m.duckdb")
    first = footfall("migrate", "--database", db, cwd=tmp_path)
    second = footfall("migrate", "--database", db, cwd=tmp_path)
    assert f"applied now: {[m.version for m in MIGRATIONS]}" in first.stdout
    assert "applied now: none" in second.stdout


def test_serve_refuses_a_held_database(tmp_path: Path) -> None:
    srv = Server(tmp_path / "srv").start()
    try:
        second = footfall("serve", "--database", str(srv.database), "--port", "1", cwd=tmp_path)
        assert second.returncode == 1
        assert "in use" in second.stderr
        assert httpx.get(srv.url + "/healthz").status_code == 200
    finally:
        srv.stop()


ADMIN_TOKEN = "cli-admin-token-0123456789abcdef0123"


def test_sites_commands_work_through_a_running_server(tmp_path: Path) -> None:
    """With --server and --key, footfall sites goes through the admin API: the DuckDB file
    stays with the server, and the server applies each change at once."""
    srv = Server(tmp_path / "srv", config_with(f'admin_token = "{ADMIN_TOKEN}"')).start()
    remote = ("--server", srv.url, "--key", ADMIN_TOKEN)
    try:
        added = footfall(
            "sites",
            "add",
            "shop",
            "--origin",
            "https://shop.test/",
            "--name",
            "Shop",
            *remote,
            cwd=tmp_path,
        )
        assert added.returncode == 0, added.stderr
        assert "site shop created; origins: https://shop.test" in added.stdout
        key = next(line for line in added.stdout.splitlines() if line.startswith("ff_"))
        with srv.client(headers={"origin": "https://shop.test"}) as api:
            event = {"event": "visitor", "token": "cli-remote-token"}
            assert api.post("/api/analytics/track?site=shop", json=event).status_code == 200
            moved = footfall(
                "sites", "set-origins", "shop", "https://www.shop.test", "*", *remote, cwd=tmp_path
            )
            assert moved.returncode == 0, moved.stderr
            assert "any web page" in moved.stdout  # the warning about '*'
            # '*' lets any page in; the old origin is no longer listed but '*' covers it.
            narrowed = footfall(
                "sites", "set-origins", "shop", "https://www.shop.test", *remote, cwd=tmp_path
            )
            assert narrowed.returncode == 0, narrowed.stderr
            assert api.post("/api/analytics/track?site=shop", json=event).status_code == 403
        listed = footfall("sites", "list", *remote, cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        assert "https://www.shop.test" in listed.stdout
        assert key.split("_")[1] in listed.stdout
        second = footfall("sites", "new-key", "shop", "--label", "ci", *remote, cwd=tmp_path)
        assert second.returncode == 0, second.stderr
        other_key = second.stdout.strip()
        write_key = footfall("sites", "write-key", "shop", *remote, cwd=tmp_path).stdout.strip()
        assert write_key.startswith("fw_")
        assert write_key in listed.stdout
        rotated = footfall("sites", "write-key", "shop", "--rotate", *remote, cwd=tmp_path)
        assert rotated.returncode == 0, rotated.stderr
        new_write_key = rotated.stdout.strip()
        assert new_write_key.startswith("fw_")
        assert new_write_key != write_key
        with srv.client() as api:
            track = {"userId": "cli-user", "event": "Signed Up"}
            old = api.post("/v1/track", json={**track, "writeKey": write_key})
            assert old.status_code == 401
            new = api.post("/v1/track", json={**track, "writeKey": new_write_key})
            assert new.status_code == 200
        dropped = footfall("sites", "write-key", "shop", "--revoke", *remote, cwd=tmp_path)
        assert (dropped.returncode, dropped.stdout.strip()) == (0, "write key of shop revoked")
        again = footfall("sites", "write-key", "shop", "--revoke", *remote, cwd=tmp_path)
        assert again.returncode == 1
        assert "has no write key" in again.stderr
        revoked = footfall("sites", "revoke-key", key.split("_")[1], *remote, cwd=tmp_path)
        assert revoked.returncode == 0, revoked.stderr
        with srv.client() as api:
            assert api.get("/api/reports", headers={"x-api-key": key}).status_code == 401
            assert api.get("/api/reports", headers={"x-api-key": other_key}).status_code == 200
        # A site key manages its own tenant only.
        as_key = ("--server", srv.url, "--key", other_key)
        own = footfall("sites", "add", "shop-blog", "--no-key", *as_key, cwd=tmp_path)
        assert own.returncode == 0, own.stderr
        foreign = footfall("sites", "add", "x", "--tenant", "default", *as_key, cwd=tmp_path)
        assert foreign.returncode == 1
        assert "own tenant" in foreign.stderr
        hidden = footfall(
            "sites", "set-origins", "default", "https://evil.test", *as_key, cwd=tmp_path
        )
        assert hidden.returncode == 1
        assert "no site 'default'" in hidden.stderr
        wrong = footfall("sites", "list", "--server", srv.url, "--key", "nope", cwd=tmp_path)
        assert wrong.returncode == 1
        assert "unknown or revoked" in wrong.stderr
        # Without --server the file is the server's: the message says what to do instead.
        busy = footfall("sites", "list", "--database", str(srv.database), cwd=tmp_path)
        assert busy.returncode == 1
        assert "--server" in busy.stderr
        assert srv.process is not None
        assert srv.process.poll() is None  # the server ran throughout
    finally:
        srv.stop()
    assert sorted(r[0] for r in srv.rows("SELECT site_id FROM sites")) == [
        "default",
        "other",
        "shop",
        "shop-blog",
    ]


def test_stored_text_reaches_the_terminal_as_text(tmp_path: Path) -> None:
    """Control characters (terminal escapes, a bell, a line feed) and rich markup that a
    sender stored in traits, a message's text or an alias come out of ``footfall person
    show`` escaped and literal, through the server's API and from the file alike."""
    srv = Server(tmp_path / "srv")
    key = srv.start_with_key()
    token = "term-token-0001"
    trait = "\x1b]0;owned\x07[red]red[/red]\x1b[2J"
    try:
        with srv.client(headers={"authorization": f"Bearer {key}"}) as api:
            identified = api.post(
                "/api/identify",
                json={
                    "token": token,
                    "user": {
                        "uniqueClientId": "[bold]cust[/bold]",
                        "metadata": {"note": trait, "[link=https://evil.test]k[/link]": "a\nb"},
                    },
                },
            )
            assert identified.status_code == 200, identified.text
            said = {"event": "message_sent", "token": token, "data": {"text": "\x1b[31mhi"}}
            assert api.post("/api/analytics/track", json=said).status_code == 200
            alias = api.post("/api/alias", json={"a": token, "b": "al\x1b[5mias"})
            assert alias.status_code == 200, alias.text
        env = {**srv.env, "COLUMNS": "250"}  # (PYTHONPATH kept: the code under test)

        def show(*target: str) -> str:
            out = subprocess.run(
                [sys.executable, "-m", "footfall", "person", "show", token, *target],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert out.returncode == 0, out.stderr
            return out.stdout

        shown = [show("--server", srv.url, "--key", key)]
    finally:
        srv.stop()
    shown.append(show("--database", str(srv.database)))
    for text in shown:
        assert not any(c in text for c in "\x1b\x07\x9b"), repr(text)
        assert "client_id:[bold]cust[/bold]" in text, text
        assert r"\x1b]0;owned\x07[red]red[/red]\x1b[2J" in text, text
        assert r"[link=https://evil.test]k[/link]" in text, text
        assert r"a\x0ab" in text, text
        assert r"\x1b[31mhi" in text, text
        assert r"alias:al\x1b[5mias" in text, text
