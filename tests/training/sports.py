"""A small file shaped like a real sports-statistics export: headers with spaces, brackets, a
percent sign, non-ASCII letters and camelCase digits, and the flaws the quality report names."""

from __future__ import annotations

import numpy as np
import pandas as pd

SPORTS_SPEC = """
name = "rookies"
title = "Rookie careers"
[target]
name = "target_5yrs"
labels = ["short", "long"]
values = [0, 1]
positive = "long"
[mlp]
hidden_layer_sizes = [8]
max_iter = 40
n_iter_no_change = 5
[[features]]
name = "games_played"
type = "int"
min = 0
max = 100
aliases = ["GP"]
[[features]]
name = "points"
type = "float"
min = 0
max = 60
aliases = ["PTS [avg]"]
[[features]]
name = "three_point"
type = "float"
min = 0
max = 100
aliases = ["3P%"]
[[features]]
name = "ft_rate"
type = "float"
min = 0
max = 1
[[features]]
name = "height_cm"
type = "float"
min = 150
max = 240
aliases = ["Größe (cm)"]
[[features]]
name = "age"
type = "int"
min = 15
max = 50
aliases = ["年龄"]
[[features]]
name = "fg3pa"
type = "float"
min = 0
max = 20
[[features]]
name = "season"
type = "int"
min = 1950
max = 2100
"""
SPORTS_ROWS = 240
SPORTS_DUPLICATES = 6  # the first rows, repeated as they are
SPORTS_CONFLICTS = 4  # more rows repeated with the other label


def sports_frame() -> pd.DataFrame:
    """The sports file as a frame, deterministic; its flaws are counted by the constants above."""
    rng = np.random.default_rng(11)
    n = SPORTS_ROWS - SPORTS_DUPLICATES - SPORTS_CONFLICTS
    points = rng.uniform(1, 25, n).round(1)
    frame = pd.DataFrame(
        {
            "Name": [f"Player {i}" for i in range(n)],
            "GP": rng.integers(10, 82, n),
            "PTS [avg]": points,
            "3P%": rng.uniform(0, 50, n).round(1),
            "FT Rate": rng.uniform(0.4, 0.95, n).round(3),
            "Größe (cm)": rng.integers(180, 225, n).astype(float),
            "年龄": rng.integers(19, 24, n),
            "FG3PA": rng.uniform(0, 6, n).round(2),
            "Season": 2016,
            "TARGET_5Yrs": (points + rng.normal(0, 4, n) > 12).astype(int),
        }
    )
    repeated = frame.iloc[:SPORTS_DUPLICATES]
    flipped = frame.iloc[SPORTS_DUPLICATES : SPORTS_DUPLICATES + SPORTS_CONFLICTS].copy()
    flipped["TARGET_5Yrs"] = 1 - flipped["TARGET_5Yrs"]
    return pd.concat([frame, repeated, flipped], ignore_index=True)
