"""An ensemble of MLPs with different seeds, merged into ONE wider MLPClassifier.

Each member sees the same rows but its own initial weights, batch order and early-stopping
hold-out. The merged network puts the members side by side: its first layer concatenates their
first layers, each deeper hidden layer is block-diagonal (a member only feeds itself), and the
output layer averages their output logits. So it predicts exactly what averaging the members'
logits would (soft voting in log-odds), and it is a plain MLPClassifier: skl2onnx converts it
like any other, and onnxruntime runs a few wider matrix products instead of k graphs.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from sklearn.neural_network import MLPClassifier

Matrix = npt.NDArray[np.float64]


def merge(members: Sequence[MLPClassifier]) -> MLPClassifier:
    """One MLPClassifier whose logits are the mean of the members' logits.

    The members must share architecture and activation (they differ only in seed). The merged
    model keeps the first member's fitted attributes (classes, loss curve) apart from the weights.
    """
    first = members[0]
    if len(members) == 1:
        return first
    shapes = {tuple(c.shape for c in m.coefs_) for m in members}
    if len(shapes) != 1 or len({m.activation for m in members}) != 1:
        raise ValueError("ensemble members must share hidden_layer_sizes and activation")
    k = len(members)
    layers = len(first.coefs_)
    coefs: list[Matrix] = []
    intercepts: list[Matrix] = []
    for layer in range(layers):
        weights = [m.coefs_[layer] for m in members]
        biases = [m.intercepts_[layer] for m in members]
        if layer == 0:
            coefs.append(np.hstack(weights))
            intercepts.append(np.concatenate(biases))
        elif layer < layers - 1:
            coefs.append(_block_diagonal(weights))
            intercepts.append(np.concatenate(biases))
        else:
            coefs.append(np.vstack(weights) / k)
            intercepts.append(np.mean(biases, axis=0))
    merged = copy.deepcopy(first)
    merged.hidden_layer_sizes = tuple(k * c.shape[1] for c in first.coefs_[:-1])
    merged.coefs_ = coefs
    merged.intercepts_ = intercepts
    return merged


def _block_diagonal(blocks: Sequence[Matrix]) -> Matrix:
    rows = sum(b.shape[0] for b in blocks)
    columns = sum(b.shape[1] for b in blocks)
    out = np.zeros((rows, columns), dtype=blocks[0].dtype)
    r = c = 0
    for block in blocks:
        out[r : r + block.shape[0], c : c + block.shape[1]] = block
        r, c = r + block.shape[0], c + block.shape[1]
    return out
