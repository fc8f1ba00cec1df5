"""The ``footfall`` command (``main``): ``server`` (serve, migrate, hash-password, version),
``sites``, ``persons`` (person ..., alias), ``reports`` (report), ``data`` (demo, retention),
with what they share in ``common`` and the report tables in ``terminal``.

It sits beside the HTTP layer: it works on the store through the domain, and reaches the
server only to start it (``footfall.http.app``) or, with ``--server``, over its API.
"""
