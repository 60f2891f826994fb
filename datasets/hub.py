"""Hugging Face Hub dataset ids wherever a dataset folder is named: ``lerobot/pusht`` or ``lerobot/pusht@v3.0``.

A name that is an existing path stays a local folder. Otherwise an id is fetched with
``huggingface_hub.snapshot_download(repo_type="dataset")`` into the standard Hugging Face cache, so HF_HOME,
HF_HUB_CACHE, HF_HUB_OFFLINE and HF_TOKEN mean what they mean everywhere else; a second run (or an offline one)
reads the cache. Only what the reader needs is fetched: meta/ first, then data/ and the videos of the cameras
in use (the path templates of meta/info.json say where those are).
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from worldmot.errors import WorldmotError

# owner/name, optionally @revision (a branch, a tag or a commit)
HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@(?P<revision>[\w./-]+))?$")


def dataset_folder(name: str | Path, cameras: Sequence[str] = ()) -> Path:
    """The local folder of dataset ``name``: the path itself when it exists, else the cached snapshot of the
    Hub dataset it names (fetching meta/, data/ and the videos of ``cameras``; all cameras when empty)."""
    path = Path(name)
    match = HUB_ID.match(str(name))
    if path.exists() or match is None:
        return path
    repo, revision = match["repo"], match["revision"]
    meta = _snapshot(name, repo, revision, ["meta/**"])
    info_path = meta / "meta" / "info.json"
    if not info_path.is_file():
        raise WorldmotError(f"{name}: the Hub dataset has no meta/info.json (expected a LeRobot dataset)")
    info = json.loads(info_path.read_text())
    return _snapshot(name, repo, revision, ["meta/**", *_data_patterns(info), *_video_patterns(info, cameras)])


def _data_patterns(info: dict) -> list[str]:
    template = info.get("data_path", "data/**")
    return [re.sub(r"\{[^}]*\}", "*", template)]


def _video_patterns(info: dict, cameras: Sequence[str]) -> list[str]:
    template = info.get("video_path")
    videos = [k for k, v in info.get("features", {}).items() if v.get("dtype") == "video"]
    if not template or not videos:
        return []
    chosen = [c for c in videos if c in cameras] if cameras else videos
    return [re.sub(r"\{[^}]*\}", "*", re.sub(r"\{video_key[^}]*\}", key, template)) for key in chosen]


def _snapshot(name: str | Path, repo: str, revision: str | None, patterns: list[str]) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    at = f"@{revision}" if revision else ""
    try:
        return Path(snapshot_download(repo, repo_type="dataset", revision=revision, allow_patterns=patterns))
    except RevisionNotFoundError:
        raise WorldmotError(f"{name}: the Hub dataset {repo} has no revision {revision!r}") from None
    except RepositoryNotFoundError:
        raise WorldmotError(f"{name}: no such local folder, and no Hub dataset {repo!r} (or no access to it: "
                            "HF_TOKEN)") from None
    except LocalEntryNotFoundError:
        raise WorldmotError(f"{name}: no such local folder, and the Hub dataset {repo}{at} is not in the Hugging "
                            "Face cache and cannot be fetched (offline: HF_HUB_OFFLINE, or no network)") from None
    except (HfHubHTTPError, OSError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WorldmotError(f"{name}: fetching the Hub dataset {repo}{at} failed ({reason})") from None
