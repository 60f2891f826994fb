"""Every key of a typed config with its default and its meaning, read from the dataclasses themselves.

The meaning of a key is the comment written beside its field (or the comment lines right above it), so
``worldmot train --help`` and the code cannot drift apart: there is nothing written twice.
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import re
import textwrap
import tokenize
from dataclasses import dataclass
from functools import lru_cache

from omegaconf import DictConfig, ListConfig, OmegaConf


@dataclass(frozen=True)
class KeyDoc:
    key: str  # dotted, e.g. "optim.lr"
    default: str  # the value a run gets when it sets nothing, as written on the command line; ??? : required
    meaning: str  # one line; empty where the field has no comment


@lru_cache(maxsize=None)
def field_comments(cls: type) -> dict[str, str]:
    """{field name: its comment} of a dataclass: the comment on the field's line, else the comment lines
    directly above it (joined into one line)."""
    source = textwrap.dedent(inspect.getsource(cls))
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    lines = source.splitlines()
    body = ast.parse(source).body[0]
    found = {}
    for node in getattr(body, "body", []):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        line = node.end_lineno or node.lineno
        if line in comments and not lines[line - 1].lstrip().startswith("#"):
            found[node.target.id] = comments[line]
            continue
        above, row = [], node.lineno - 1
        while row in comments and lines[row - 1].lstrip().startswith("#"):
            above.insert(0, comments[row])
            row -= 1
        if above:
            found[node.target.id] = " ".join(above)
    return found


def _shown(conf: DictConfig, name: str) -> str:
    if OmegaConf.is_missing(conf, name):
        return "???"
    value = conf[name]
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value if value else "''"
    if isinstance(value, (ListConfig, DictConfig)):
        return str(OmegaConf.to_container(value))
    return str(value)


def config_keys(schema: type, conf: DictConfig, prefix: str = "") -> list[KeyDoc]:
    """The keys of the dataclass ``schema`` with their values in ``conf`` (its merged config: what a run gets
    when it sets nothing), nested groups flattened into dotted keys, in declaration order."""
    docs = []
    comments = field_comments(schema)
    for f in dataclasses.fields(schema):
        nested = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(nested):
            docs.extend(config_keys(type(nested), conf[f.name], f"{prefix}{f.name}."))
        else:
            docs.append(KeyDoc(prefix + f.name, _shown(conf, f.name), comments.get(f.name, "")))
    return docs


def first_sentence(text: str, width: int = 100) -> str:
    """The comment's first sentence, cut at a word to ``width`` characters: the one line a key list shows."""
    end = re.search(r"\. (?=[A-Z])", text)
    return textwrap.shorten(text[:end.start()] if end else text, width, placeholder=" ...")


def reference_text(schema: type, conf: DictConfig) -> str:
    """``key = value  meaning`` lines, one per key, under a heading per nested config."""
    out, group = [], None
    for k in config_keys(schema, conf):
        head = k.key.rsplit(".", 1)[0] if "." in k.key else "run"
        if head != group:
            group = head
            out.append(f"\n{head}:")
        out.append(f"  {k.key} = {k.default}" + (f"    # {first_sentence(k.meaning)}" if k.meaning else ""))
    return "\n".join(out).lstrip("\n")
