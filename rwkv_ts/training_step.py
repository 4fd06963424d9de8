"""The optimisation step, run by rwkv-ts and replayed as a CUDA graph on a GPU.

Lightning's automatic optimisation runs every training step through Python: a few hundred small
kernels for the forward pass, the backward pass, gradient clipping and AdamW, each launched from
the host. For the small models of time-series work that host time *is* the step (an ETTh1 step of
``RWKVForecaster`` spent ~30 ms in Python against ~1 ms of WKV kernels on an H100). Captured once
as a CUDA graph, a step is one launch and the GPU runs it back to back.

:class:`GraphedStep` does forward, loss, backward, gradient-norm clipping and the optimiser step
of one batch. On a CUDA device it runs the first ``warmup`` batches eagerly on a side stream (lazy
initialisations: cuBLAS handles, the optimiser state, the kernel build), captures the step on the
next batch and replays it for every later batch of the same shapes; a batch of other shapes runs
eagerly, as does everything when capture fails (a model that reads a tensor's value on the host
cannot be captured: one :class:`CudaGraphWarning` says so). On the CPU every step is eager.

Nothing here synchronises with the device: the loss and the gradient norm come back as device
tensors, so the host can prepare the next batch while the GPU trains on this one. Whoever checks
them for NaN (the training system, once an epoch) decides what a non-finite step means.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

__all__ = ["CudaGraphWarning", "GraphedStep", "capturable_adamw"]


class CudaGraphWarning(RuntimeWarning):
    """The training step could not be captured as a CUDA graph; training goes on without it."""


def capturable_adamw(
    params: Sequence[nn.Parameter], learning_rate: float, weight_decay: float, device: torch.device
) -> torch.optim.AdamW:
    """AdamW whose step can be captured in a CUDA graph: the step counts and the learning rate
    are device tensors (a schedule sets the rate with ``group["lr"].fill_(value)``)."""
    return torch.optim.AdamW(
        params,
        lr=torch.tensor(learning_rate, dtype=torch.float32, device=device),
        weight_decay=weight_decay,
        capturable=True,
        foreach=True,
    )


class GraphedStep:
    """One optimisation step (forward, loss, backward, clipping, optimiser step) of a batch.

    Parameters
    ----------
    model : nn.Module
        Called as ``model(*inputs)``.
    loss_fn : callable
        ``loss_fn(prediction, target) -> scalar tensor``.
    optimizer : torch.optim.Optimizer
        On a CUDA device it must be capturable (:func:`capturable_adamw`).
    gradient_clip : float or None
        Clip the gradients' total 2-norm to this value (as Lightning's ``gradient_clip_val``);
        ``None`` or 0 leaves them as they are (the norm is still returned).
    use_graph : bool, default True
        Capture and replay the step as a CUDA graph when the parameters are on a CUDA device.
    warmup : int, default 3
        Eager steps (on a side stream) before the capture.

    Examples
    --------
    On the CPU every step is an ordinary eager step:

    >>> import torch
    >>> model = torch.nn.Linear(3, 1)
    >>> opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    >>> step = GraphedStep(model, torch.nn.functional.mse_loss, opt, gradient_clip=1.0)
    >>> loss, norm = step((torch.ones(4, 3),), torch.zeros(4, 1))
    >>> loss.shape, bool(norm >= 0), step.captured
    (torch.Size([]), True, False)
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        optimizer: torch.optim.Optimizer,
        gradient_clip: float | None,
        use_graph: bool = True,
        warmup: int = 3,
    ) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.gradient_clip = gradient_clip or None
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        device = self.params[0].device if self.params else torch.device("cpu")
        self.use_graph = bool(use_graph) and device.type == "cuda"
        self.warmup = max(int(warmup), 1)
        self._eager_steps = 0
        self._graph: torch.cuda.CUDAGraph | None = None
        self._static_inputs: list[Tensor] = []
        self._static_target: Tensor | None = None
        self._static_out: tuple[Tensor, Tensor] | None = None
        self._side_stream: torch.cuda.Stream | None = None

    @property
    def captured(self) -> bool:
        """Whether the step has been captured (later batches of its shapes are replayed)."""
        return self._graph is not None

    def _body(self, inputs: Sequence[Tensor], target: Tensor) -> tuple[Tensor, Tensor]:
        loss = self.loss_fn(self.model(*inputs), target)
        loss.backward()
        if self.gradient_clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(self.params, self.gradient_clip)
        else:
            grads = [p.grad for p in self.params if p.grad is not None]
            norm = torch.nn.utils.get_total_norm(grads)
        self.optimizer.step()
        return loss.detach(), norm.detach()

    def _eager(self, inputs: Sequence[Tensor], target: Tensor) -> tuple[Tensor, Tensor]:
        self.optimizer.zero_grad(set_to_none=True)
        return self._body(inputs, target)

    def _matches(self, inputs: Sequence[Tensor], target: Tensor) -> bool:
        if len(inputs) != len(self._static_inputs):
            return False
        pairs = zip([*self._static_inputs, self._static_target], [*inputs, target], strict=True)
        return all(
            a.shape == b.shape and a.dtype == b.dtype and a.device == b.device for a, b in pairs
        )

    def _capture(self, inputs: Sequence[Tensor], target: Tensor) -> bool:
        self._static_inputs = [x.clone() for x in inputs]
        self._static_target = target.clone()
        self.optimizer.zero_grad(set_to_none=True)  # the graph allocates the gradients
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                out = self._body(self._static_inputs, self._static_target)
        except Exception as exc:  # noqa: BLE001 - any capture failure means: stay eager
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            warnings.warn(
                f"rwkv_ts: the training step could not be captured as a CUDA graph ({first}); "
                "training continues without it (slower on small models)",
                CudaGraphWarning,
                stacklevel=3,
            )
            self.use_graph = False
            self._static_inputs, self._static_target = [], None
            self.optimizer.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            return False
        self._graph, self._static_out = graph, out
        return True

    def __call__(self, inputs: Sequence[Tensor], target: Tensor) -> tuple[Tensor, Tensor]:
        """Train on one batch; returns the loss and the gradients' total norm before clipping
        (device tensors; with a graph, overwritten by the next replay)."""
        if not self.use_graph:
            return self._eager(inputs, target)
        if self._graph is None and self._eager_steps < self.warmup:
            # Warm-up on a side stream, as CUDA graph capture requires.
            if self._side_stream is None:
                self._side_stream = torch.cuda.Stream(device=target.device)
            current = torch.cuda.current_stream(target.device)
            self._side_stream.wait_stream(current)
            with torch.cuda.stream(self._side_stream):
                out = self._eager(inputs, target)
            current.wait_stream(self._side_stream)
            self._eager_steps += 1
            return out
        if self._graph is None and not self._capture(inputs, target):
            return self._eager(inputs, target)
        if not self._matches(inputs, target):
            return self._eager(inputs, target)
        for static, x in zip(self._static_inputs, inputs, strict=True):
            static.copy_(x, non_blocking=True)
        self._static_target.copy_(target, non_blocking=True)
        self._graph.replay()
        return self._static_out

    def release(self) -> None:
        """Drop the graph and its memory (the parameters and the optimiser state stay)."""
        self._graph = None
        self._static_inputs, self._static_target, self._static_out = [], None, None
