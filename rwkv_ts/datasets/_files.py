"""Find a registered file (:data:`rwkv_ts.datasets._registry.DATA_FILES`) in the data home and
verify its checksum."""

from __future__ import annotations

import os
from pathlib import Path

from ._fetch import DATA_HOME_ENV, get_data_home, verify_file
from ._registry import DATA_FILES


def locate(relative: str, data_home: str | os.PathLike[str] | None, source: str) -> Path:
    """Path of the registered file ``relative`` (plain, or ``.gz`` where registered), verified.

    Parameters
    ----------
    relative : str
        Key of ``DATA_FILES``, e.g. ``"cmapss/train_FD001.txt"``.
    data_home : path, optional
        See :func:`rwkv_ts.datasets.get_data_home`.
    source : str
        Where a user can get the file, for the error message.

    Raises
    ------
    FileNotFoundError
        Neither variant is in the data home (the message names both paths and ``source``).
    ChecksumError
        The file does not match its registered sha256.
    """
    spec = DATA_FILES[relative]
    home = get_data_home(data_home)
    plain = home / spec.path
    gz = home / (spec.path + ".gz")
    if plain.is_file():
        verify_file(plain, spec.sha256, hint=f"Replace it with the original from {source}.")
        return plain
    if spec.gz_sha256 is not None and gz.is_file():
        verify_file(
            gz,
            spec.gz_sha256,
            content_sha256=spec.sha256,
            hint=f"Replace it with the original from {source}.",
        )
        return gz
    looked = f"{plain}" + (f" and {gz}" if spec.gz_sha256 is not None else "")
    raise FileNotFoundError(
        f"{Path(spec.path).name} not found: looked for {looked} (data home {home}, set by "
        f"data_home= or the environment variable {DATA_HOME_ENV}). It is not downloaded "
        f"automatically; get it from {source} and place it there."
    )
