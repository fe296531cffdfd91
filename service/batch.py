"""A validated request: one model input array per feature, whatever shape the request came in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

NO_FLAGS: list[str] = []


@dataclass(frozen=True)
class Batch:
    """Inputs in manifest order, ready for one `InferenceSession.run`, and out-of-range flags."""

    size: int
    inputs: dict[str, npt.NDArray[Any]]
    out_of_range: dict[str, npt.NDArray[np.bool_]]

    def flags(self) -> list[list[str]]:
        """Per record, the features outside the training range (usually none, so kept cheap)."""
        result = [NO_FLAGS] * self.size
        for row, names in self.flagged():
            result[row] = names
        return result

    def flagged(self) -> list[tuple[int, list[str]]]:
        """Only the records with a feature outside the training range, and those features."""
        if not self.out_of_range:
            return []
        names = list(self.out_of_range)
        matrix = np.vstack([self.out_of_range[name] for name in names])
        return [
            (row, [name for name, hit in zip(names, matrix[:, row].tolist(), strict=True) if hit])
            for row in np.flatnonzero(matrix.any(axis=0)).tolist()
        ]

    def without_inputs(self) -> Batch:
        """The flags only: what a CSV chunk keeps after its run, so big files stay small."""
        return Batch(self.size, {}, self.out_of_range)
