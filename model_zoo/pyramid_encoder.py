"""The one base of the project's own encoders: smp's convention of a feature pyramid."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


class PyramidEncoder(nn.Module):
    """``forward(x)`` returns the input, then one feature map per stride 2, 4, .. ``output_stride``.

    ``out_channels`` lists their channels, the input's first: what smp's decoders read from an encoder.
    """

    def __init__(self, name: str, out_channels: Sequence[int]) -> None:
        super().__init__()
        self.name = name
        self._out_channels = tuple(out_channels)

    @property
    def out_channels(self) -> tuple[int, ...]:
        return self._out_channels

    @property
    def output_stride(self) -> int:
        return 2 ** (len(self._out_channels) - 1)
