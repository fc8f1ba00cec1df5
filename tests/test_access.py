"""The rules of administration, on both stores: allowed origins as operators type them, what a
site key may manage (its own tenant's sites), setup links and the admin password, and the
admin token. The admin API, the dashboard and the CLI all call these."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from footfall import access, sites
from footfall.config import Settings
from footfall.errors import ApiError
from footfall.passwords import hash_password, verify_password
from footfall.sites import Authority
from footfall.store.base import Store

GOOD_ORIGINS = [
    ("*", "*"),
    (" https://Shop.test/ ", "https://shop.test"),
    ("https://shop.test:443", "https://shop.test"),
    ("HTTP://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("https://*.shop.test", "https://*.shop.test"),
    ("https://bücher.de", "https://xn--bcher-kva.de"),
    ("http://[::1]:3000", "http://[::1]:3000"),
    ("http://localhost:3000", "http://localhost:3000"),
    ("https://x.github.io", "https://x.github.io"),
]
BAD_ORIGINS = [
    ("shop.test", "not an origin"),
    ("ftp://shop.test", "not an origin"),
    ("https://shop.test/cart", "no path"),
    ("https://shop.test?x=1", "no path"),
    ("https://user@shop.test", "user name"),
    ("https://*.com", "public suffix"),
    ("https://*.co.uk", "public suffix"),
    ("https://*.github.io", "public suffix"),
    ("https://*.10.0.0.1", "not an address"),
    ("https://a.*.shop.test", "wildcard may only start"),
    ("https://sh op.test", "spaces"),
    ("https://shop.test:99999", "invalid host or port"),
    ("https://-bad.test", "invalid host name"),
    ("https://a..b", "invalid host name"),
    ("https://", "no host"),
    ("", "empty"),
    ("https://" + "a" * 300 + ".test", "at most 300"),
]


@pytest.mark.parametrize(("typed", "stored"), GOOD_ORIGINS)
def test_origins_are_normalised(typed: str, stored: str) -> None:
    assert sites.parse_origin(typed) == stored


@pytest.mark.parametrize(("typed", "reason"), BAD_ORIGINS)
def test_bad_origins_are_refused_with_the_reason(typed: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        sites.parse_origin(typed)


def test_origin_lists_name_the_bad_entry_and_warn_about_any_page() -> None:
    with pytest.raises(ApiError) as refused:
        sites.clean_origins(["https://ok.test", "https://ok.test/path"])
    assert (refused.value.status, refused.value.field) == (422, "allowed_origins[1]")
    assert sites.clean_origins(["https://a.test", "https://A.test/"]) == ["https://a.test"]
    assert sites.split_origins("https://a.test\r\nhttps://b.test, *") == [
        "https://a.test",
        "https://b.test",
        "*",
    ]
    assert any("any web page" in w for w in sites.origin_warnings(["*"]))
    assert any("No allowed origins" in w for w in sites.origin_warnings([]))
    assert sites.origin_warnings(["https://a.test"]) == []


def test_a_key_manages_its_own_tenants_sites_only(store: Store) -> None:
    admin = Authority.admin()
    shop = sites.create_site(store, admin, "shop", "Shop", ["https://shop.test"], "acme")
    sites.create_site(store, admin, "forum", None, None, "acme")
    other = sites.create_site(store, admin, "other", "Other", [], None)
    assert (shop.scope, other.scope) == ("acme", "other")
    key = Authority.of_key(shop)
    assert [s.id for s in key.visible(store.list_sites())] == ["forum", "shop"]
    # Another tenant's site is "not found", exactly like a missing one.
    for attempt in (
        lambda: sites.managed_site(store, key, "other"),
        lambda: sites.update_site(store, key, "other", name="mine now"),
        lambda: sites.site_keys(store, key, "other"),
        lambda: sites.create_key(store, key, "other", "x"),
        lambda: sites.managed_site(store, key, "missing"),
    ):
        with pytest.raises(ApiError) as refused:
            attempt()
        assert refused.value.status == 404
    _, foreign_key = sites.create_key(store, admin, "other", "theirs")
    with pytest.raises(ApiError) as refused:
        sites.revoke_key(store, key, foreign_key.split("_")[1])
    assert refused.value.status == 404
    assert not store.get_api_key(foreign_key.split("_")[1]).revoked  # type: ignore[union-attr]
    # A key creates sites in its own tenant and cannot move one out of it.
    blog = sites.create_site(store, key, "blog", "Blog", ["https://blog.test"])
    assert blog.scope == "acme"
    for tenant in ("other", "newco"):
        with pytest.raises(ApiError) as refused:
            sites.create_site(store, key, "x-" + tenant, None, None, tenant)
        assert refused.value.status == 403
        with pytest.raises(ApiError) as refused:
            sites.update_site(store, key, "blog", tenant=tenant)
        assert refused.value.status == 403
    with pytest.raises(ApiError) as refused:
        sites.create_site(store, key, "other")  # the id is taken, whoever owns it
    assert refused.value.status == 409
    # The administrator may move a site; "" gives it back its own identity graph.
    assert sites.update_site(store, admin, "blog", tenant="other").scope == "other"
    assert sites.update_site(store, admin, "blog", tenant="").scope == "blog"
    assert sites.update_site(store, admin, "blog", name="").name == "blog"
    # Keys: made for a managed site, revoked once; revoking again answers the same.
    record, secret = sites.create_key(store, key, "forum", "backend")
    assert sites.verify_api_key(store, secret) == "forum"
    assert record.label == "backend"
    assert sites.revoke_key(store, key, record.key_id).revoked
    assert sites.revoke_key(store, key, record.key_id).revoked
    assert sites.verify_api_key(store, secret) is None
    with pytest.raises(ApiError) as refused:
        sites.revoke_key(store, key, record.key_id, site_id="shop")  # not that site's key
    assert refused.value.status == 404


def test_site_fields_are_checked(store: Store) -> None:
    admin = Authority.admin()
    for kwargs, field in (
        ({"site_id": "Bad Id"}, "id"),
        ({"site_id": None}, "id"),
        ({"site_id": "ok", "name": "x" * 101}, "name"),
        ({"site_id": "ok", "name": "tab\there"}, "name"),
        ({"site_id": "ok", "name": 5}, "name"),
        ({"site_id": "ok", "origins": "https://a.test"}, "allowed_origins"),
        ({"site_id": "ok", "origins": ["https://a.test"] * 101}, "allowed_origins"),
        ({"site_id": "ok", "tenant": "Not A Tenant"}, "tenant"),
        ({"site_id": "ok", "tenant": " acme"}, "tenant"),
    ):
        with pytest.raises(ApiError) as refused:
            sites.create_site(store, admin, **kwargs)
        assert (refused.value.status, refused.value.field) == (422, field), kwargs
    assert store.get_site("ok") is None


def test_activity_and_recent_events(store: Store) -> None:
    from footfall.ingest.validate import now_us
    from footfall.store.base import EventRow

    now = now_us()
    day = 86_400_000_000
    rows = [
        EventRow("default", now - 2 * day, now - 2 * day, "visitor", "old-token-1"),
        EventRow("default", now, now, "visitor", "new-token-1", url="https://a.test/p?q=secret"),
        EventRow("default", now, now + 1, "bot_open", "new-token-2", ephemeral=True),
    ]
    store.insert_events(rows)
    activity = sites.site_activity(store)["default"]
    assert activity.events_today == 2 == sites.events_today(store, "default")
    assert sites.events_today(store, "other-site") == 0
    assert activity.last_event_at is not None
    recent = sites.recent_events(store, "default")
    assert [e["event"] for e in recent] == ["bot_open", "visitor"]  # newest first, last day
    assert recent[1]["page"] == "a.test/p"  # no query string
    assert recent[0]["token"] == "new-toke\u2026"
    assert recent[0]["ephemeral"] is True
    assert sites.recent_events(store, "other-site") == []


def test_setup_links_and_the_admin_password(store: Store) -> None:
    settings = Settings(setup_link_minutes=60)
    assert access.needs_setup(store, settings)
    token = access.issue_setup_token(store, settings)
    assert token.startswith(access.SETUP_TOKEN_PREFIX)
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert store.query("SELECT token_hash FROM setup_tokens") == [(digest,)]
    assert access.setup_token_usable(store, settings, token)
    for wrong in ("", token[:-1], token + "x", "ffsetup_" + "A" * 43, "x" * 5000):
        assert not access.setup_token_usable(store, settings, wrong)
    with pytest.raises(access.PasswordRefused, match="at least 10"):
        access.complete_setup(store, settings, token, "short")
    assert access.setup_token_usable(store, settings, token)  # a refused password left it
    encoded = access.complete_setup(store, settings, token, "a long enough password")
    assert encoded is not None
    assert verify_password("a long enough password", encoded)
    assert access.admin_password_hash(store, settings) == encoded
    assert not access.needs_setup(store, settings)
    assert access.complete_setup(store, settings, token, "another long password") is None
    # Changing it needs the current one; a password in the config wins over the stored one.
    with pytest.raises(access.PasswordRefused, match="current password"):
        access.change_admin_password(store, settings, "wrong", "a new long password")
    changed = access.change_admin_password(
        store, settings, "a long enough password", "a new long password"
    )
    assert store.admin_password_hash() == changed != encoded
    configured = Settings(admin_password_hash=encoded)
    assert access.admin_password_hash(store, configured) == encoded
    with pytest.raises(access.PasswordRefused, match="configuration"):
        access.change_admin_password(store, configured, "a new long password", "x" * 12)


def test_expired_setup_links_are_refused(store: Store) -> None:
    settings = Settings(setup_link_minutes=1)
    past = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=2)
    token = access.issue_setup_token(store, settings, now=past)
    assert not access.setup_token_usable(store, settings, token)
    assert access.complete_setup(store, settings, token, "a long enough password") is None
    assert store.admin_password_hash() is None
    # A config password closes every link.
    fresh = access.issue_setup_token(store, settings)
    assert access.setup_token_usable(store, settings, fresh)
    closed = Settings(admin_password_hash=hash_password("configured password"))
    assert not access.setup_token_usable(store, closed, fresh)


def test_admin_token_is_checked_by_digest() -> None:
    token = "t0ken-" + "x" * 40
    plain = Settings(admin_token=token)
    hashed = Settings(admin_token="sha256:" + hashlib.sha256(token.encode()).hexdigest().upper())
    for settings in (plain, hashed):
        assert access.admin_token_matches(settings, token)
        for wrong in (None, "", token[:-1], token + "x", "sha256:" + token):
            assert not access.admin_token_matches(settings, wrong)
    assert not access.admin_token_matches(Settings(), token)
    for bad in ("too-short", "sha256:abc", "sha256:" + "g" * 64):
        with pytest.raises(ValueError, match="admin_token"):
            Settings(admin_token=bad)
    assert "t0ken" not in repr(plain)
