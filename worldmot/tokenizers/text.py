"""Text tokenizers: byte-level UTF-8 (the default: offline, any language) or a local `tokenizers` JSON file.

Both put the sequence's special tokens after their own vocabulary, so ids below ``base_vocab_size`` are
text and the rest are the markers the sequence packer uses (``<bos>``, ``<bof>`` ...).
"""
from __future__ import annotations

import os
from typing import Iterable

import numpy as np

from worldmot.errors import WorldmotError

SPECIAL_TOKENS = (
    "<pad>", "<bos>", "<eos>", "<bof>", "<eof>", "<prg>", "<bor>", "<eor>", "<boa>", "<eoa>", "<state>", "<success>",
)


def _as_id_list(ids) -> list[int]:
    """Accept a list, a numpy array or a torch tensor of ids (any shape flattened to 1-D)."""
    if hasattr(ids, "detach"):  # torch tensor, without importing torch here
        ids = ids.detach().cpu().numpy()
    return [int(i) for i in np.asarray(ids).reshape(-1)]


class _TextTokenizer:
    """Shared part: special ids after the base vocabulary, padding, id validation.

    Subclasses set ``base_vocab_size`` and implement ``encode`` and ``_decode_base``.
    """

    base_vocab_size: int
    # set by _init_specials, one per SPECIAL_TOKENS entry
    pad_id: int; bos_id: int; eos_id: int; bof_id: int; eof_id: int; prg_id: int  # noqa: E702
    bor_id: int; eor_id: int; boa_id: int; eoa_id: int; state_id: int; success_id: int  # noqa: E702

    def _init_specials(self, base_vocab_size: int) -> None:
        self.base_vocab_size = base_vocab_size
        self._special = {name: base_vocab_size + i for i, name in enumerate(SPECIAL_TOKENS)}
        for name, idx in self._special.items():
            setattr(self, f"{name[1:-1]}_id", idx)  # "<bos>" -> self.bos_id

    @property
    def vocab_size(self) -> int:
        return self.base_vocab_size + len(SPECIAL_TOKENS)

    def special(self, name: str) -> int:
        """Id of a special token, e.g. ``special("<bos>")``."""
        if name not in self._special:
            raise WorldmotError(f"unknown special token {name!r}; expected one of {', '.join(SPECIAL_TOKENS)}")
        return self._special[name]

    def is_special(self, idx: int) -> bool:
        return self.base_vocab_size <= idx < self.vocab_size

    def encode(self, text: str, max_len: int | None = None) -> list[int]:
        raise NotImplementedError

    def encode_padded(self, text: str, length: int) -> np.ndarray:
        """(length,) int64: the ids of ``text`` (truncated at a character boundary) followed by ``pad_id``."""
        ids = self.encode(text, max_len=length)
        out = np.full(length, self.pad_id, dtype=np.int64)
        out[: len(ids)] = ids
        return out

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; special ids and pads are skipped. Ids outside the vocabulary raise WorldmotError."""
        ids = _as_id_list(ids)
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise WorldmotError(f"token id {bad[0]} is outside the text vocabulary [0, {self.vocab_size})")
        return self._decode_base([i for i in ids if i < self.base_vocab_size])

    def _decode_base(self, ids: list[int]) -> str:
        raise NotImplementedError


class ByteTokenizer(_TextTokenizer):
    """Byte-level UTF-8: ids 0..255 are bytes, then ``SPECIAL_TOKENS`` (vocab_size 268)."""

    def __init__(self) -> None:
        self._init_specials(256)

    def encode(self, text: str, max_len: int | None = None) -> list[int]:
        """UTF-8 bytes of ``text``; with ``max_len``, cut at the last whole character that fits.

        Lone surrogates (not encodable in UTF-8) become "?".
        """
        data = text.encode("utf-8", errors="replace")
        if max_len is not None and len(data) > max_len:
            cut = max(int(max_len), 0)
            while cut > 0 and (data[cut] & 0xC0) == 0x80:  # data[cut] continues a character: step back
                cut -= 1
            data = data[:cut]
        return list(data)

    def _decode_base(self, ids: list[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        return f"ByteTokenizer(vocab_size={self.vocab_size})"


class TokenizersText(_TextTokenizer):
    """A local Hugging Face ``tokenizers`` JSON file; the special tokens follow its vocabulary.

    Needs the optional extra ``worldmot[tokenizers]``. The file's own special/added tokens keep their ids
    and are never produced by ``encode`` (``add_special_tokens=False``): the sequence adds its own markers.
    """

    def __init__(self, path: str) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as e:
            raise WorldmotError(
                f"text tokenizer {path}: the 'tokenizers' package is not installed (pip install 'worldmot[tokenizers]')"
            ) from e
        if not os.path.isfile(path):
            raise WorldmotError(f"text tokenizer file not found: {path}")
        try:
            self.tokenizer = Tokenizer.from_file(path)
        except Exception as e:  # the library raises a bare Exception on malformed JSON
            raise WorldmotError(f"text tokenizer {path}: not a tokenizers JSON file ({str(e).splitlines()[0]})") from e
        self.path = path
        self._init_specials(self.tokenizer.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str, max_len: int | None = None) -> list[int]:
        """Token ids of ``text``; with ``max_len``, drop whole characters from the end until it fits.

        Byte-level BPE can split one character over several tokens; those tokens share the character's
        offsets, so a cut is only allowed where the next token starts a new character.
        """
        enc = self.tokenizer.encode(text, add_special_tokens=False)
        ids, offsets = enc.ids, enc.offsets
        if max_len is None or len(ids) <= max_len:
            return list(ids)
        cut = max(int(max_len), 0)
        while cut > 0 and offsets[cut][0] < offsets[cut - 1][1]:
            cut -= 1
        return list(ids[:cut])

    def _decode_base(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def __repr__(self) -> str:
        return f"TokenizersText({self.path!r}, vocab_size={self.vocab_size})"


def make_text_tokenizer(path: str = "") -> ByteTokenizer | TokenizersText:
    """"" -> ByteTokenizer; otherwise the ``tokenizers`` JSON file at ``path``."""
    if not path:
        return ByteTokenizer()
    if not os.path.isfile(path):
        raise WorldmotError(f"text tokenizer file not found: {path}")
    return TokenizersText(path)
