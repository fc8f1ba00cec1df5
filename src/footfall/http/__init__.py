"""The HTTP layer: the app factory (``app``), what wraps every route (``middleware``), what
the routes share (``shared``: services, the gate, CORS, JSON answers) and one module per
route family: ``tracking`` (where a tracking call enters), ``identity``, ``vendor``,
``reports``, ``operations`` (health, metrics, OpenAPI) and ``tracker`` (``footfall.js``).

Nothing below this layer imports it; the dashboard (``footfall.web``) sits beside it and
uses only ``shared``.
"""
