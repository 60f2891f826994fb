"""Frame, text and action tokenizers."""
