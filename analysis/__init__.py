"""From a finished search to a chosen, tested, shippable model.

- :mod:`analysis.results`: experiment folder -> tidy trials x epochs table and per-trial facts;
- :mod:`analysis.leaderboard`: trials ranked by their CV mean at their best common epoch;
- :mod:`analysis.selection`: the chosen trial and its ``best_config.yaml``;
- :mod:`analysis.plots`, :mod:`analysis.report`: figures, ``report.md``, the W&B summary run;
- :mod:`analysis.refit`, :mod:`analysis.evaluate`: train on all development images, test once;
- :mod:`analysis.predict`: segment and classify new images with a model bundle;
- :mod:`analysis.commands`: the ``analyze`` / ``refit`` / ``predict`` verbs and
  :func:`~analysis.commands.analyze`.
"""
