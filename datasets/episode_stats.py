"""A v3.0 dataset's stats rebuilt from its committed episodes' own stats (the ``stats/<feature>/<stat>``
columns of meta/episodes), folded in episode order exactly as the writer folds them while recording.

meta/stats.json is written just before meta/info.json, so a process killed between the two leaves stats that
count an episode info.json does not; these rebuilt ones count exactly the committed episodes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from worldmot.datasets.stats import aggregate


def committed_stats(root: str | Path, episodes: int) -> dict[str, dict[str, np.ndarray]] | None:
    """Stats over episodes 0..episodes-1, or None where meta/episodes holds no per-episode stats for them."""
    rows = _episode_stat_rows(Path(root))
    if episodes == 0 or any(i not in rows or not rows[i] for i in range(episodes)):
        return None
    folded: dict | None = None
    for i in range(episodes):
        folded = aggregate([rows[i]] if folded is None else [folded, rows[i]])
    return folded


def _episode_stat_rows(root: Path) -> dict[int, dict[str, dict[str, np.ndarray]]]:
    """episode_index -> feature -> stat -> array; a row repeated in a later file (re-recorded) wins."""
    by_index: dict[int, dict] = {}
    for path in sorted((root / "meta/episodes").glob("*/*.parquet")):
        table = pq.read_table(path)
        names = [c for c in table.column_names if c.startswith("stats/")]
        indices = table["episode_index"].to_pylist()
        columns = {c: table[c].to_pylist() for c in names}
        for r, index in enumerate(indices):
            stats: dict[str, dict[str, np.ndarray]] = {}
            for c in names:
                if columns[c][r] is None:
                    continue
                feature, stat = c[len("stats/"):].rsplit("/", 1)
                stats.setdefault(feature, {})[stat] = np.asarray(columns[c][r])
            by_index[int(index)] = stats
    return by_index
