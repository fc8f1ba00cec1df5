"""Footfall: self-hosted tracking, identity resolution and analytics for chat widgets.

Layers, imports pointing down only (``tests/test_layers.py`` checks it):

- entry: ``http`` (the server's routes), ``web`` (the dashboard, beside it), ``cli`` (the
  ``footfall`` command, beside it: it starts the server through ``http.app`` only);
- domain: ``ingest`` (the write path), ``identity`` (the identity graph), ``analytics``
  (reports as SQL), ``sites`` (and their administration), ``access`` (the admin password,
  setup links, the admin token), ``retention``, ``demo``;
- ``store``: the Store interface, DuckDB, PostgreSQL, migrations;
- used by every layer: ``config``, ``errors``, ``logs``, ``passwords``.
"""

__version__ = "0.1.0"
