"""One epoch of the lockstep loop under a progress bar: the one per-epoch view of ``train`` and ``refit``."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainables.loop import CrossValLoop


def step_with_bar(
    loop: CrossValLoop,
    enabled: bool,
    label: str = "epoch",
    summary: Callable[[Mapping[str, Any]], str] | None = None,
    leave: bool = True,
) -> dict[str, Any]:
    """Run ``loop.step()`` under a tqdm bar on stderr (one tick per batch; the fold and batch loss as it
    goes, ``summary(result)`` when the epoch is done) and return the epoch's result. The bar is closed
    whatever happens, so a Ctrl-C or an error leaves a clean terminal."""
    from tqdm import tqdm

    bar = tqdm(
        total=loop.batches_per_epoch(),
        desc=f"{label} {loop.epoch + 1}/{loop.cfg.epochs}",
        unit="batch",
        disable=not enabled,
        leave=leave,
        file=sys.stderr,
        dynamic_ncols=True,
    )

    def on_batch(fold: int, batch: int, total: int, loss: float) -> None:
        bar.update(1)
        bar.set_postfix_str(f"fold {fold} loss {loss:.4f}", refresh=False)

    try:
        result = loop.step(on_batch=on_batch)
        if summary is not None:
            bar.set_postfix_str(summary(result))
    finally:
        bar.close()
    return result
