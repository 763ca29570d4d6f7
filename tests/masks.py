"""Hand-made binary masks for the metric tests."""

import torch

SQUARE = [(0, 0), (0, 1), (1, 0), (1, 1)]  # a 2x2 square in the top-left corner


def mask(*pixels, size: int) -> torch.Tensor:
    """(1, size, size) binary float mask with ones at the given (row, col) pixels."""
    out = torch.zeros(1, size, size)
    for r, c in pixels:
        out[0, r, c] = 1
    return out
