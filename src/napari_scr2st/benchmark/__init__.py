"""Benchmark harnesses over the core (not part of it: no core module imports this package).

- :mod:`.sampling`: samplers x budgets x seeds on fully measured sections (synthetic, her2st),
  the ``scr2st benchmark sampling`` verb.
"""
