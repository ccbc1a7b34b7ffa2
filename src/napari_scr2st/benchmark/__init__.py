"""Benchmark harnesses over the core (not part of it: no core module imports this package).

- :mod:`.protocol`: the paired label-efficiency protocol (``within`` / ``cross``; samplers x
  budgets x seeds on one common test set; SCR2Net and the ridge surrogate downstream), the
  ``scr2st benchmark sampling`` verb;
- :mod:`.within_slide`: sequence part of a slide, predict the rest (SCR2Net vs ridge, kNN and
  spatial kernel interpolation), the ``scr2st benchmark within-slide`` verb.
"""
