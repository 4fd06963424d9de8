"""What the estimators' ``ensemble_size`` shares: the members' seeds, and the files that keep a
finished member until ``fit`` ends so that a killed ensemble fit resumes with the member it was
training (the member's own training checkpoint lives in a folder beside its file)."""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from torch import nn


def member_seeds(random_state: int | None, size: int) -> list[int | None]:
    """Seed of each member: ``random_state`` for member 0 (so member 0 is the single model of the
    same seed), seeds derived from it for the others; all ``None`` without a ``random_state``.

    Examples
    --------
    >>> member_seeds(7, 3)[0], len(set(member_seeds(7, 3)))
    (7, 3)
    >>> member_seeds(None, 2)
    [None, None]
    """
    if random_state is None:
        return [None] * size
    derived = [
        int(np.random.SeedSequence([int(random_state), i]).generate_state(1)[0])
        for i in range(1, size)
    ]
    return [int(random_state), *derived]


def fitted_ensemble_size(model: nn.Module) -> int:
    """How many members a fitted model holds (1 for a single model): what was fitted, which
    ``ensemble_size`` no longer says once ``set_params`` has changed it.

    Examples
    --------
    >>> from torch import nn
    >>> fitted_ensemble_size(nn.Linear(2, 1))
    1
    """
    members = getattr(model, "members", None)
    return 1 if members is None else len(members)


def member_file(checkpoint_dir: str, i: int) -> Path:
    """File of finished member ``i``; ``with_suffix("")`` is its training folder."""
    return Path(checkpoint_dir) / f"ensemble_member_{i}.safetensors"


def save_member(path: Path, model: nn.Module, summary: dict, tag: dict) -> None:
    """Keep a finished member (weights and its training summary) until ``fit`` ends."""
    from rwkv_ts._checkpoint import write_checkpoint

    write_checkpoint(path, {"weights": dict(model.state_dict()), **summary}, tag)


def load_member(
    path: Path,
    tag: dict,
    build: Callable[[], nn.Module],
    keys: tuple[str, ...],
    what: str = "finished ensemble member",
) -> tuple[nn.Module, dict] | None:
    """The finished member at ``path`` (a model from ``build`` with its weights) and its summary
    (``keys``), or ``None`` when there is none or it belongs to another run (with a
    ``CheckpointWarning`` that calls the file ``what``). Also keeps other finished runs of a
    fit (the early-stopped run before a refit)."""
    from rwkv_ts._checkpoint import CheckpointFileError, read_checkpoint
    from rwkv_ts.training import CheckpointWarning

    if not path.exists():
        return None
    try:
        saved, state = read_checkpoint(path)
        if saved != json.loads(json.dumps(tag)):
            raise CheckpointFileError(f"{path} was written by another training run")
        model = build()
        model.load_state_dict(state["weights"])
        return model, {k: state[k] for k in keys}
    except (CheckpointFileError, KeyError, RuntimeError) as exc:
        warnings.warn(
            f"not using the {what} in {path}: {exc}; it is trained again",
            CheckpointWarning,
            stacklevel=4,
        )
        return None


def remove_members(checkpoint_dir: str, size: int) -> None:
    """Delete the finished members' files and their (empty) training folders once ``fit`` ends."""
    for i in range(size):
        path = member_file(checkpoint_dir, i)
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            path.with_suffix("").rmdir()
