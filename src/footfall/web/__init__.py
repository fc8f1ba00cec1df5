"""The dashboard: web pages for the site owner, served by the same server under /dashboard.

Login with a site API key (sees the sites of the key's tenant) or the admin password (sees
every site); see ``footfall.web.auth`` for sessions and CSRF, ``footfall.web.pages`` for
the pages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importing footfall.web.auth (config does) must not load the server
    from starlette.routing import BaseRoute

    from footfall.api import PublicApi
    from footfall.config import Settings


def routes(public: PublicApi, settings: Settings) -> list[BaseRoute]:
    from footfall.web.pages import Dashboard

    return Dashboard(public, settings).routes()
