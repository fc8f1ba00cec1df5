"""The dashboard: web pages for the site owner, served by the same server under /dashboard.

Login with a site API key (sees the sites of the key's tenant) or the admin password (sees
every site); see ``footfall.web.auth`` for sessions and CSRF, ``footfall.web.pages`` for
the pages.
"""
