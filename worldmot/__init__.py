"""worldmot: one Mixture-of-Transformers world model for frames, language, reasoning and actions."""
from __future__ import annotations

__version__ = "0.1.0"


def load(path):
    """Load a saved world model (safetensors weights + resolved config) ready for inference."""
    from worldmot.checkpoint import load_model

    return load_model(path)
