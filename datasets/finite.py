"""NaN and inf in a dataset's numeric columns, found before training normalises or tokenises them: the error
names the column, the episode and the frame, so the bad recording can be found and cut."""
from __future__ import annotations

import numpy as np

from worldmot.errors import WorldmotError


def require_finite(reader, keys: list[str]) -> None:
    """One-line error at the first non-finite value of the float columns ``keys`` (those the dataset has)."""
    keys = [k for k in keys if k in reader.features and reader.features[k]["dtype"].startswith("float")]
    for ep in range(reader.num_episodes):
        table = reader.episode_table(ep, keys)
        for key in keys:
            values = np.asarray(table[key], np.float64).reshape(len(table[key]), -1)
            bad = ~np.isfinite(values)
            if bad.any():
                frame, dim = np.argwhere(bad)[0]
                raise WorldmotError(f"{reader.data_file(ep)}: column {key!r} holds {values[frame, dim]} at episode "
                                    f"{reader.episodes[ep].index}, frame {frame}, dimension {dim} (expected finite numbers)")
