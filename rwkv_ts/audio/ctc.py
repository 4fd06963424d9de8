"""Connectionist temporal classification (CTC) pieces of the speech recogniser: vocabularies,
greedy decoding (offline and incremental, one state machine), the word error rate and the CTC loss
for :func:`rwkv_ts.training.train_model`.

Token index 0 is the CTC blank; the vocabulary's tokens are 1..V. Greedy decoding takes the most
likely index of every model token, collapses repeats and drops blanks. :class:`GreedyCTCDecoder`
does this one index at a time; :func:`greedy_decode` runs the same decoder over a whole sequence,
so a stream's text equals the offline text for any split of the sequence.

Examples
--------
>>> vocab = get_vocabulary("digits")
>>> vocab.encode("3 9 9")
[4, 10, 10]
>>> greedy_decode([0, 4, 4, 0, 10, 0, 10, 10], vocab)
'3 9 9'
>>> word_error_rate(["3 9 1"], ["3 1"])
0.3333333333333333
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

__all__ = [
    "BLANK",
    "CTCLoss",
    "GreedyCTCDecoder",
    "Vocabulary",
    "edit_distance",
    "get_vocabulary",
    "greedy_decode",
    "word_error_rate",
]

#: index of the CTC blank in the model's outputs
BLANK = 0

VOCABULARIES = ("digits", "characters")


@dataclass(frozen=True)
class Vocabulary:
    """The output tokens of a recogniser (the blank excluded) and how text maps to them.

    ``"digits"``: tokens ``"0"``..``"9"``; a transcript is digits separated by spaces
    (``"3 9 1"``), every word one digit. ``"characters"``: lowercase letters, the apostrophe and the
    space; a transcript is words of those characters separated by single spaces.

    Examples
    --------
    >>> vocab = get_vocabulary("characters")
    >>> vocab.size, vocab.encode("it's")
    (28, [9, 20, 28, 19])
    >>> vocab.decode([9, 20, 28, 19])
    "it's"
    """

    name: str
    tokens: tuple[str, ...]

    @property
    def size(self) -> int:
        """Number of tokens, the blank excluded (the model has ``size + 1`` outputs)."""
        return len(self.tokens)

    @property
    def word_tokens(self) -> bool:
        """True when every token is a word of its own (digits); False when words are spelled
        (characters, with an explicit space token)."""
        return self.name == "digits"

    def encode(self, text: str, where: str = "transcript") -> list[int]:
        """Token indices (1..V) of ``text``; ``ValueError`` naming ``where`` and the offending
        character or word when ``text`` is empty or outside the vocabulary."""
        if not isinstance(text, str):
            raise TypeError(f"{where} must be a string, got {type(text).__name__}")
        words = text.split(" ")
        if not text.strip():
            raise ValueError(f"{where} is empty")
        if any(w == "" for w in words):
            raise ValueError(
                f"{where} {text!r} must be words separated by single spaces "
                "(no leading, trailing or repeated spaces)"
            )
        index = {t: i + 1 for i, t in enumerate(self.tokens)}
        if self.word_tokens:
            for w in words:
                if w not in index:
                    raise ValueError(
                        f"{where} {text!r} has the word {w!r}, which is not in the {self.name!r} "
                        f"vocabulary (one of {list(self.tokens)} per word, separated by spaces)"
                    )
            return [index[w] for w in words]
        for ch in text:
            if ch not in index:
                raise ValueError(
                    f"{where} {text!r} has the character {ch!r}, which is not in the "
                    f"{self.name!r} vocabulary (lowercase letters, apostrophe, space)"
                )
        return [index[ch] for ch in text]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of token indices (blanks and repeats are *not* collapsed here; see
        :func:`greedy_decode`)."""
        decoder = GreedyCTCDecoder(self)
        out = []
        for i in ids:
            out.append(decoder.emit(int(i)))
        return "".join(out)


def get_vocabulary(name: str) -> Vocabulary:
    """The vocabulary called ``name``: ``"digits"`` or ``"characters"``.

    Examples
    --------
    >>> get_vocabulary("digits").tokens[:3]
    ('0', '1', '2')
    """
    if name == "digits":
        return Vocabulary("digits", tuple(str(d) for d in range(10)))
    if name == "characters":
        letters = tuple(chr(c) for c in range(ord("a"), ord("z") + 1))
        return Vocabulary("characters", letters + (" ", "'"))
    raise ValueError(f"vocabulary must be one of {VOCABULARIES}, got {name!r}")


class GreedyCTCDecoder:
    """Incremental greedy CTC decoding: feed the best index of each model token, get the text it
    adds.

    The state is three integers: the previous index (for collapsing repeats), whether any text was
    written, and whether a space is pending (with characters, a space is written only when the
    next word starts, so the text never has leading, trailing or doubled spaces). Digits are
    written as words separated by single spaces.

    Examples
    --------
    >>> dec = GreedyCTCDecoder(get_vocabulary("digits"))
    >>> [dec.push(i) for i in (0, 2, 2, 0, 2, 5)]
    ['', '1', '', '', ' 1', ' 4']
    >>> dec.text
    '1 1 4'
    """

    def __init__(self, vocabulary: Vocabulary) -> None:
        self.vocabulary = vocabulary
        self._space = vocabulary.tokens.index(" ") + 1 if " " in vocabulary.tokens else -1
        self.reset()

    def reset(self) -> None:
        """Back to the start (no text, no previous token)."""
        self.previous = BLANK
        self.written = False
        self.pending_space = False
        self._parts: list[str] = []

    @property
    def text(self) -> str:
        """All text written so far."""
        return "".join(self._parts)

    def emit(self, index: int) -> str:
        """Write token ``index`` (no collapsing); return the text it adds."""
        if index == BLANK:
            return ""
        if not 1 <= index <= self.vocabulary.size:
            raise ValueError(
                f"token index {index} is outside 0..{self.vocabulary.size} (blank + vocabulary)"
            )
        if index == self._space:
            self.pending_space = self.written
            return ""
        token = self.vocabulary.tokens[index - 1]
        if self.vocabulary.word_tokens:
            out = f" {token}" if self.written else token
        else:
            out = f" {token}" if self.pending_space else token
        self.written = True
        self.pending_space = False
        self._parts.append(out)
        return out

    def push(self, index: int) -> str:
        """The best index of the next model token; return the text it adds (collapsing repeats
        and dropping blanks)."""
        index = int(index)
        previous, self.previous = self.previous, index
        if index == previous:
            return ""
        return self.emit(index)

    def push_many(self, indices: Iterable[int]) -> str:
        """:meth:`push` each index; return the text they add together."""
        return "".join(self.push(i) for i in indices)

    def get_state(self) -> dict[str, np.ndarray]:
        """The decoder state (and the text so far, as UTF-8 bytes) as numpy arrays."""
        return {
            "counters": np.array(
                [self.previous, int(self.written), int(self.pending_space)], dtype=np.int64
            ),
            "text": np.frombuffer(self.text.encode("utf-8"), dtype=np.uint8).copy(),
        }

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore a state of :meth:`get_state`."""
        counters = np.asarray(state["counters"])
        if counters.shape != (3,):
            raise ValueError(f"decoder state 'counters' has shape {counters.shape}, expected (3,)")
        previous = int(counters[0])
        if not 0 <= previous <= self.vocabulary.size:
            raise ValueError(f"decoder state holds token index {previous}, outside the vocabulary")
        text = bytes(np.asarray(state["text"], dtype=np.uint8)).decode("utf-8")
        self.previous = previous
        self.written = bool(counters[1])
        self.pending_space = bool(counters[2])
        self._parts = [text] if text else []


def best_path(logits: np.ndarray | torch.Tensor) -> np.ndarray:
    """Most likely index per token, ``(T,)`` int64, of logits or log-probabilities ``(T, V+1)``
    (the first index on ties)."""
    if isinstance(logits, torch.Tensor):
        logits = logits.detach().cpu().numpy()
    logits = np.asarray(logits)
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (tokens, outputs), got {logits.shape}")
    return logits.argmax(axis=-1).astype(np.int64)


def greedy_decode(
    sequence: Sequence[int] | np.ndarray | torch.Tensor, vocabulary: Vocabulary
) -> str:
    """Greedy CTC text of a whole sequence: best indices ``(T,)`` or logits ``(T, V+1)``.

    Runs :class:`GreedyCTCDecoder` over the sequence, so it agrees with incremental decoding of
    any split.

    Examples
    --------
    >>> greedy_decode([0, 8, 0, 0, 15, 15, 0, 27, 9, 0], get_vocabulary("characters"))
    'ho i'
    """
    if isinstance(sequence, torch.Tensor):
        sequence = sequence.detach().cpu().numpy()
    arr = np.asarray(sequence)
    ids = best_path(arr) if arr.ndim == 2 else arr.astype(np.int64).reshape(-1)
    decoder = GreedyCTCDecoder(vocabulary)
    decoder.push_many(ids.tolist())
    return decoder.text


# ---------------------------------------------------------------------- word error rate


def edit_distance(reference: Sequence, hypothesis: Sequence) -> int:
    """Levenshtein distance (substitutions, deletions, insertions) between two sequences.

    Examples
    --------
    >>> edit_distance("3 9 1".split(), "3 1 1 4".split())
    2
    """
    ref = list(reference)
    hyp = list(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        current = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
        previous = current
    return previous[-1]


def word_error_rate(references: Sequence[str] | str, hypotheses: Sequence[str] | str) -> float:
    """Word error rate: total word edits (substitutions + deletions + insertions) over the total
    number of reference words; words are split on whitespace.

    Parameters
    ----------
    references, hypotheses
        Lists of transcripts of the same length (or one string each).

    Examples
    --------
    >>> word_error_rate(["1 2 3", "4 5"], ["1 2 3", "4 6 7"])
    0.4
    """
    if isinstance(references, str):
        references = [references]
    if isinstance(hypotheses, str):
        hypotheses = [hypotheses]
    references, hypotheses = list(references), list(hypotheses)
    if len(references) != len(hypotheses):
        raise ValueError(
            f"references has {len(references)} transcripts but hypotheses has {len(hypotheses)}"
        )
    edits = 0
    words = 0
    for i, (ref, hyp) in enumerate(zip(references, hypotheses, strict=True)):
        for name, text in (("references", ref), ("hypotheses", hyp)):
            if not isinstance(text, str):
                raise TypeError(f"{name}[{i}] must be a string, got {type(text).__name__}")
        ref_words = ref.split()
        edits += edit_distance(ref_words, hyp.split())
        words += len(ref_words)
    if words == 0:
        raise ValueError("the references hold no words; the word error rate is undefined")
    return edits / words


# ---------------------------------------------------------------------- loss


def ctc_min_tokens(labels: Sequence[int]) -> int:
    """Fewest model tokens CTC needs for ``labels``: one per label plus a blank between repeats.

    Examples
    --------
    >>> ctc_min_tokens([3, 3, 4])
    4
    """
    labels = list(labels)
    repeats = sum(1 for a, b in zip(labels, labels[1:], strict=False) if a == b)
    return len(labels) + repeats


class CTCLoss:
    """CTC loss for :class:`rwkv_ts.training.TrainingOptions` (``loss=CTCLoss()``).

    Called as ``loss((log_probs, input_lengths), (targets, target_lengths), reduction=...)``:
    ``log_probs`` (B, T, V+1) log-softmax outputs, ``input_lengths`` (B,) valid tokens per row,
    ``targets`` (B, S) padded label indices (1..V), ``target_lengths`` (B,). ``"sum"`` is the total
    negative log-likelihood; ``"mean"`` divides it by the number of labels (as does the validation
    loss, through :meth:`n_targets`). Impossible alignments count as zero
    (``zero_infinity=True``).

    Examples
    --------
    >>> import torch
    >>> log_probs = torch.randn(2, 6, 4).log_softmax(-1)
    >>> targets = torch.tensor([[1, 2], [3, 0]])
    >>> loss = CTCLoss()
    >>> value = loss((log_probs, torch.tensor([6, 5])), (targets, torch.tensor([2, 1])))
    >>> bool(value > 0), loss.n_targets((targets, torch.tensor([2, 1])))
    (True, 3)
    """

    def __call__(self, prediction, target, reduction: str = "mean") -> torch.Tensor:
        log_probs, input_lengths = prediction
        targets, target_lengths = target
        total = F.ctc_loss(
            log_probs.transpose(0, 1).float(),
            targets,
            input_lengths,
            target_lengths,
            blank=BLANK,
            reduction="sum",
            zero_infinity=True,
        )
        if reduction == "sum":
            return total
        if reduction != "mean":
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        return total / target_lengths.sum().clamp(min=1)

    @staticmethod
    def n_targets(target) -> int:
        """Labels in a batch target ``(targets, target_lengths)``."""
        return int(target[1].sum())
