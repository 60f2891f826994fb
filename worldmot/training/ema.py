"""EMA weights with a warm-up, updated without waiting for the GPU."""
from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def warmup_decay(decay: float, n: int) -> float:
    """The decay of the update after n earlier ones: min(decay, (1 + n) / (10 + n)) (diffusers' EMA warm-up).

    A fixed 0.995 kept a 175-step run's EMA weights at 16% action-token accuracy while the raw weights
    had 48% (measured): short CPU runs need the average to follow early training closely.
    """
    return min(decay, (1.0 + n) / (10.0 + n))


class WarmupEMA(AveragedModel):
    """An exponential moving average of a model's parameters and floating buffers (``.module``; other buffers
    are copied), the first update a copy. Its state dict is AveragedModel's (``module.*``, ``n_averaged``).

    AveragedModel's own update compares its on-device count with 0 on every call; on a GPU each comparison
    waits for the queued step to finish, so the GPU idled while the host prepared the next step. The count
    is read here once (after construction or a load) and then kept on the host as well.
    """

    def __init__(self, model: nn.Module, decay: float):
        super().__init__(model, use_buffers=True)
        self.decay = decay
        self._n: int | None = None  # n_averaged on the host; None: not read yet

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        n = int(self.n_averaged) if self._n is None else self._n
        pairs = list(zip([*self.module.parameters(), *self.module.buffers()], [*model.parameters(), *model.buffers()],
                         strict=True))
        floats = [(a, b) for a, b in pairs if a.is_floating_point()]
        others = [(a, b) for a, b in pairs if not a.is_floating_point()]
        if n == 0 or others:
            copy = pairs if n == 0 else others
            torch._foreach_copy_([a for a, _ in copy], [b.detach() for _, b in copy])
        if n > 0 and floats:
            torch._foreach_lerp_([a for a, _ in floats], [b.detach() for _, b in floats], 1.0 - warmup_decay(self.decay, n))
        self.n_averaged += 1
        self._n = n + 1

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self._n = None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)
