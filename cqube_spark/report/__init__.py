"""The offline report: published JSON (through the ``current`` view) → ``<output>/report/`` (HTML + ECharts + data)."""
