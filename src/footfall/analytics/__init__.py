"""Reports computed as SQL inside the store: ``reports`` (every report, over persons
resolved through the identity graph, and the daily presence rollup), ``funnel_steps`` (the
funnels' derived tables on DuckDB) and ``params`` (a report's parameters read from text, the
same for the API, the dashboard and the terminal).
"""
