"""Stopping a run at its first non-finite loss, without a host sync per step on a GPU."""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from worldmot.errors import WorldmotError


class FiniteLossCheck:
    """Raises at the first step whose loss parts (total first, then the named parts) are not all finite.

    On the CPU a step is checked as it ends, before its update. On CUDA reading the parts would wait for the
    queued step and leave the GPU idle while the host packs the next batch, so the step's flag goes to fused
    AdamW instead (``found_inf``: the GPU skips that update, moments included), the parts are copied to pinned
    memory as the step runs, and the host reads them while the next step is queued. :meth:`flush` checks the
    step still pending: call it before anything is written from the weights.
    """

    def __init__(self, device: torch.device, names: tuple[str, ...], last_good: Callable[[], object]):
        self.deferred = device.type == "cuda"
        self.names = names
        self.last_good = last_good
        self.pending: tuple[int, torch.Tensor, torch.cuda.Event] | None = None

    def check(self, step: int, parts: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """parts (1 + len(names),) of 0-based ``step``, after its backward and before ``optimizer.step()``."""
        if not self.deferred:
            self._raise_if_bad(step, parts.tolist())
            return
        optimizer.found_inf = (~torch.isfinite(parts).all()).float()
        host = parts.to("cpu", non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        previous, self.pending = self.pending, (step, host, done)
        if previous is not None:
            self._read(previous)

    def flush(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            self._read(pending)

    def _read(self, pending: tuple[int, torch.Tensor, torch.cuda.Event]) -> None:
        step, host, done = pending
        done.synchronize()  # waits for that step's backward only, not for what was queued after it
        self._raise_if_bad(step, host.tolist())

    def _raise_if_bad(self, step: int, values: list[float]) -> None:
        if all(math.isfinite(v) for v in values):
            return
        bad = [n for n, v in zip(self.names, values[1:]) if not math.isfinite(v)] or ["total"]
        good = self.last_good()
        raise WorldmotError(f"step {step + 1}: non-finite {'+'.join(bad)} loss ({values}); stopped. "
                            f"The last good checkpoint is {good or 'none (no checkpoint written yet)'}")
