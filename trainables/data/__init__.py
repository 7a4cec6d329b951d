"""The data layer: BUSI-format folders -> scan -> audit -> cached arrays -> leakage-safe splits.

Modules: ``scan`` (find images, masks, classes), ``imageio`` (decode any mode), ``audit`` (report),
``dedup`` (near-duplicate groups), ``resize``, ``cache`` (``load_dataset``), ``splits``, ``synthetic``,
``commands`` (the ``audit``, ``splits`` and ``make-synthetic`` verbs). Nothing here imports Ray or torch.
"""
