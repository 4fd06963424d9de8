"""Helpers for the recurrent state that every module's ``step`` carries.

A state is a dict of tensors (batch first); composite modules nest their children's states under the
child's attribute name. Safetensors stores flat mappings, hence :func:`flatten_state` and
:func:`unflatten_state`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

State = dict[str, "torch.Tensor | State"]


def flatten_state(state: Mapping, prefix: str = "") -> dict[str, torch.Tensor]:
    """Flatten a nested state into ``{"a.b.c": tensor}``.

    Examples
    --------
    >>> import torch
    >>> flatten_state({"block": {"shift": torch.zeros(1)}, "n": torch.ones(1)})
    {'block.shift': tensor([0.]), 'n': tensor([1.])}
    """
    flat: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_state(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def unflatten_state(flat: Mapping[str, torch.Tensor]) -> State:
    """Inverse of :func:`flatten_state`.

    Examples
    --------
    >>> import torch
    >>> unflatten_state({"block.shift": torch.zeros(1)})
    {'block': {'shift': tensor([0.])}}
    """
    nested: State = {}
    for name, value in flat.items():
        node = nested
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def map_state(state: Mapping, fn) -> State:
    """Apply ``fn`` to every tensor of a nested state and return the new state."""
    return {
        key: map_state(value, fn) if isinstance(value, Mapping) else fn(value)
        for key, value in state.items()
    }
