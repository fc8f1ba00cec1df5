"""Reports computed as SQL inside the store: ``reports`` (every report, over persons
resolved through the identity graph, and the daily presence rollup), the derived tables
folded in before a report reads them (``person_days`` on both stores; ``funnel_steps`` and
``form_events`` on DuckDB), ``watermark`` (which events a fold has not taken in yet),
``dialect`` (SQL spellings per store) and ``params`` (a report's parameters read from text,
the same for the API, the dashboard and the terminal).
"""
