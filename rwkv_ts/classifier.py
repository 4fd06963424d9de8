"""``RWKVClassifier``: sequence classification with an RWKV-TS encoder, scikit-learn's classifier
contract."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d

from rwkv_ts.data.instances import align_targets, check_y
from rwkv_ts.data.validation import DataValidationError, format_list
from rwkv_ts.losses import WeightedCrossEntropy
from rwkv_ts.sequence_estimator import _SHARED_DOC, SequenceEstimator


def _class_weights(class_weight: Any, classes: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each class's weight in ``classes`` order, refusing what scikit-learn's
    :func:`~sklearn.utils.class_weight.compute_class_weight` would accept or misname: labels that
    are not classes, negative or non-finite weights, weights that are all zero."""
    if class_weight is None:
        return np.ones(len(classes))
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(
                f"class_weight must be a dict, 'balanced' or None, got {class_weight!r}"
            )
    elif isinstance(class_weight, Mapping):
        known = set(classes.tolist())
        unknown = [label for label in class_weight if label not in known]
        if unknown:
            raise ValueError(
                f"class_weight names label(s) {format_list(unknown)} that are not classes of y "
                f"{format_list(classes.tolist())}"
            )
        for label, weight in class_weight.items():
            if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
                raise ValueError(f"class_weight[{label!r}] must be a number, got {weight!r}")
            if not (np.isfinite(weight) and weight >= 0):
                raise ValueError(f"class_weight[{label!r}] must be finite and >= 0, got {weight!r}")
    else:
        raise ValueError(
            "class_weight must be a dict, 'balanced' or None, got "
            f"{type(class_weight).__name__} {class_weight!r}"
        )
    weights = compute_class_weight(class_weight, classes=classes, y=y).astype(np.float64)
    if not (weights > 0).any():
        raise ValueError(f"class_weight gives every class weight 0: {class_weight!r}")
    return weights


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class RWKVClassifier(ClassifierMixin, SequenceEstimator):
    __doc__ = (
        """Classify whole sequences (recordings, heartbeats, gestures) with an RWKV-TS encoder.

    Patches of all channels are embedded together, run through RWKV-6 blocks (multi-scale token
    shift, causal TCN branch) and read by a causal pooling and a linear layer; trained with
    cross-entropy. Because every part is causal, the probabilities are defined on every prefix:
    :meth:`stream` gives them after each new sample (early classification) and they equal
    :meth:`predict_proba` on the same prefix.

    Parameters
    ----------"""
        + _SHARED_DOC
        + """    class_weight : dict, "balanced" or None, default None
        Weights of the classes in the cross-entropy, for imbalanced data (scikit-learn's
        convention): a dict from label to a non-negative weight (labels left out weigh 1), or
        ``"balanced"``, ``n_instances / (n_classes * count of the class)`` from the training
        labels, so that every class weighs as much in total. ``None``: every instance counts
        the same. It changes what is learned, not how probabilities are read: the predicted
        probabilities are those of a reweighted training set.

    Attributes
    ----------
    classes_ : ndarray
        The class labels, sorted (any type ``numpy.unique`` sorts: strings, ints, -1/1 ...).
    class_weight_ : ndarray of shape (n_classes,)
        The weight of each class in ``classes_`` order (ones without ``class_weight``).
    model_ : RWKVSequenceModel or SequenceEnsemble
        The model; a :class:`~rwkv_ts.nn.sequence.SequenceEnsemble` when ``ensemble_size > 1``.
    config_ : SequenceConfig
    channels_ : list of str
    scale_mean_, scale_std_ : ndarray of shape (n_channels,)
        Per-channel standardisation fitted on the training instances.
    history_ : list of dict
        Per epoch: ``epoch``, ``train_loss``, ``val_loss`` (with a validation split),
        ``train_seconds`` and ``skipped_steps`` (see ``on_nonfinite_loss``).
    best_epoch_ : int or None
        ``history_`` and ``best_epoch_`` are member 0's in an ensemble.
    member_histories_ : list of list of dict
        The ``history_`` of every member (one for a single model).
    refit_epochs_ : int or None
        Epochs of the refit on all instances (see ``refit``); ``None`` without one.

    Examples
    --------
    >>> import numpy as np
    >>> from rwkv_ts import RWKVClassifier
    >>> rng = np.random.default_rng(0)
    >>> t = np.linspace(0, 6, 40)
    >>> X = np.stack([np.sin(t * (1 + k % 2)) + 0.1 * rng.normal(size=40) for k in range(40)])
    >>> y = np.array(["slow", "fast"] * 20)
    >>> clf = RWKVClassifier(d_model=16, head_size=8, n_layers=1, max_epochs=30,
    ...                      random_state=0).fit(X[:, None, :], y)
    >>> clf.predict_proba(X[:3, None, :]).shape, clf.classes_.tolist()
    ((3, 2), ['fast', 'slow'])
    """
    )

    _ensemble_combine = "probability"

    def __init__(
        self,
        patch_len: int = 8,
        stride: int = 4,
        d_model: int = 128,
        n_layers: int = 2,
        head_size: int = 16,
        ffn_mult: float = 2.0,
        shift_distances: tuple[int, ...] = (1, 2, 4),
        tcn_dilations: tuple[int, ...] = (1, 2, 4),
        decay: str = "data",
        norm: str = "none",
        norm_window: int = 64,
        pooling: str = "mean+max",
        dropout: float = 0.2,
        conv_channels: tuple[int, ...] = (),
        conv_kernels: tuple[int, ...] = (8, 5, 3),
        max_epochs: int = 100,
        batch_size: int | str = "auto",
        learning_rate: float = 3e-3,
        weight_decay: float = 1e-2,
        patience: int = 20,
        ema_epochs: float | None = None,
        augment: str | None = None,
        class_weight: dict | str | None = None,
        val_fraction: float = 0.0,
        refit: float | None = None,
        ensemble_size: int = 1,
        impute: str | None = None,
        id_col: str | None = None,
        time_col: str | None = None,
        value_cols: list[str] | None = None,
        random_state: int | None = None,
        accelerator: str = "auto",
        devices: int | str = "auto",
        verbose: bool = False,
        log_dir: str | None = None,
        on_nonfinite_loss: str = "raise",
        checkpoint_dir: str | None = None,
    ) -> None:
        self.patch_len = patch_len
        self.stride = stride
        self.d_model = d_model
        self.n_layers = n_layers
        self.head_size = head_size
        self.ffn_mult = ffn_mult
        self.shift_distances = shift_distances
        self.tcn_dilations = tcn_dilations
        self.decay = decay
        self.norm = norm
        self.norm_window = norm_window
        self.pooling = pooling
        self.dropout = dropout
        self.conv_channels = conv_channels
        self.conv_kernels = conv_kernels
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.patience = patience
        self.ema_epochs = ema_epochs
        self.augment = augment
        self.class_weight = class_weight
        self.val_fraction = val_fraction
        self.refit = refit
        self.ensemble_size = ensemble_size
        self.impute = impute
        self.id_col = id_col
        self.time_col = time_col
        self.value_cols = value_cols
        self.random_state = random_state
        self.accelerator = accelerator
        self.devices = devices
        self.verbose = verbose
        self.log_dir = log_dir
        self.on_nonfinite_loss = on_nonfinite_loss
        self.checkpoint_dir = checkpoint_dir

    def fit(self, X: Any, y: Any) -> RWKVClassifier:
        """Train on instances ``X`` with labels ``y``.

        Parameters
        ----------
        X : array (n_instances, n_channels, n_timepoints), array (n_instances, n_timepoints),
            list of (n_channels, T_i) arrays, or a long pandas/polars frame
            Every instance needs at least ``patch_len`` samples.
        y : array-like of shape (n_instances,)
            Labels of any sortable type. For a long frame, a pandas Series (or dict) indexed by
            instance id is matched by id; an array is taken in order of first appearance.

        Returns
        -------
        self
        """
        self._check_params()
        inst = self._instances(X)
        check_y(y, type(self).__name__)
        y = column_or_1d(np.asarray(align_targets(y, inst)), warn=True)
        check_classification_targets(y)
        classes, encoded = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise DataValidationError(
                f"y has 1 class ({classes[0]!r}); a classifier needs at least 2 classes"
            )
        weights = _class_weights(self.class_weight, classes, y)
        self.classes_ = classes
        self.class_weight_ = weights
        self._train(
            inst,
            encoded.astype(np.int64),
            n_outputs=len(classes),
            loss=(
                "cross_entropy"
                if self.class_weight is None
                # scaled to mean 1 over the instances: the loss keeps its scale (and the learning
                # rate its meaning) whatever the weights; the minimiser is the same
                else WeightedCrossEntropy(weights / weights[encoded].mean())
            ),
            stratify=encoded,
        )
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (n_instances, n_classes), columns in ``classes_`` order, read at
        the last complete patch of each instance."""
        inst = self._fitted_instances(X)
        return _softmax(self._raw_outputs(inst))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each instance."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def predict_proba_steps(self, X: Any) -> list[np.ndarray]:
        """Class probabilities after every sample of each instance: one (T_i, n_classes) array
        per instance; row ``t`` equals ``predict_proba`` on the first ``t + 1`` samples (NaN
        before the first complete patch)."""
        inst = self._fitted_instances(X, min_length=1)
        return [_softmax(out) for out in self._raw_step_outputs(inst)]

    def _outputs_from_raw(self, raw: np.ndarray) -> np.ndarray:
        return _softmax(raw)


__all__ = ["RWKVClassifier"]
