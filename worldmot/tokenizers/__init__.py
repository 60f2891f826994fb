"""Frame, text and action tokenizers."""
from worldmot.tokenizers.actions import ActionTokenizer, chunk_actions, unchunk_actions
from worldmot.tokenizers.frames import (
    FRAME_TOKENIZERS,
    RESIZE_RULES,
    FrameTokenizer,
    LatentTokenizer,
    PatchTokenizer,
    fit_frames,
    fit_points,
    make_frame_tokenizer,
    preprocess_frames,
    to_uint8,
)
from worldmot.tokenizers.text import SPECIAL_TOKENS, ByteTokenizer, TokenizersText, make_text_tokenizer

__all__ = [
    "ActionTokenizer",
    "ByteTokenizer",
    "FRAME_TOKENIZERS",
    "FrameTokenizer",
    "LatentTokenizer",
    "PatchTokenizer",
    "RESIZE_RULES",
    "SPECIAL_TOKENS",
    "TokenizersText",
    "chunk_actions",
    "fit_frames",
    "fit_points",
    "make_frame_tokenizer",
    "make_text_tokenizer",
    "preprocess_frames",
    "to_uint8",
    "unchunk_actions",
]
