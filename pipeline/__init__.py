"""The thesis study as one resumable command: stage searches chained by inheritance, above ``search`` and
``analysis`` (it uses both; neither uses it).

- :mod:`pipeline.config`: the pipeline file (``spaces/thesis.yaml``), its schema and the checks made before
  any stage runs;
- :mod:`pipeline.smoke`: ``--smoke``, each stage spec shrunk to a minutes-long search of the same kind;
- :mod:`pipeline.state`: ``pipeline.json`` and the decision of what to do with a stage now;
- :mod:`pipeline.records`: the stage and refit records ``pipeline.json`` keeps, as dataclasses;
- :mod:`pipeline.run`: the runner (search, analysis, inheritance, final refit);
- :mod:`pipeline.report`: ``pipeline_report.md``;
- :mod:`pipeline.commands`: the ``pipeline`` verb.
"""
