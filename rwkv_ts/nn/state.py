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


def restore_state(template: Mapping, flat: Mapping, prefix: str = "") -> State:
    """Rebuild a nested state shaped like ``template`` from flat named arrays (numpy or torch),
    as :func:`flatten_state` names them under ``prefix``; every entry is checked against the
    template's shape and cast to its dtype (copies). ``ValueError`` names a missing or misshaped
    entry.

    Examples
    --------
    >>> import numpy as np, torch
    >>> template = {"block": {"shift": torch.zeros(1, 2)}}
    >>> restore_state(template, {"m.block.shift": np.ones((1, 2))}, "m.")
    {'block': {'shift': tensor([[1., 1.]])}}
    >>> restore_state(template, {"m.block.shift": np.ones(3)}, "m.")
    Traceback (most recent call last):
    ...
    ValueError: state entry 'm.block.shift' has shape (3,); the model needs (1, 2)
    """
    out: State = {}
    for key, value in template.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out[key] = restore_state(value, flat, f"{name}.")
            continue
        if name not in flat:
            raise ValueError(f"state lacks the entry {name!r}")
        got = torch.as_tensor(flat[name])
        if tuple(got.shape) != tuple(value.shape):
            raise ValueError(
                f"state entry {name!r} has shape {tuple(got.shape)}; the model needs "
                f"{tuple(value.shape)}"
            )
        out[key] = got.to(value.dtype).clone()
    return out


def map_state(state: Mapping, fn) -> State:
    """Apply ``fn`` to every tensor of a nested state and return the new state."""
    return {
        key: map_state(value, fn) if isinstance(value, Mapping) else fn(value)
        for key, value in state.items()
    }
