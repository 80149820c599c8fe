"""The SVM probe: an RBF support-vector machine fitted on frozen features, as one kernel layer.

A frozen encoder's pooled features separate emotions better along curved boundaries than along
straight ones: on CREMA-D's Whisper-base features an RBF support-vector machine beats the linear
probe (:mod:`avemotion.runtime.linear_probe`) by about 0.05 clip by clip (docs/results/
cremad-voices.md). Like the linear probe it is fitted in closed form on every labelled training clip, with
no learning rate and no epochs.

The machine is one-vs-rest, one binary SVM per emotion (scikit-learn's, on a kernel computed
once), so that it folds into one layer: each emotion's decision is a weighted sum of kernels to the
support vectors, which is what ONNX runs and what :class:`KernelLayer` computes. Its penalty C is
chosen by speaker-grouped cross-validation on the training clips themselves (validation speakers
included), and a temperature fitted on the same held-out decisions turns the decisions into
probabilities without moving their argmax.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import numpy as np

from avemotion.runtime.linear_probe import ABSENT_CLASS_BIAS

# The penalties the cross-validation chooses among; on CREMA-D's and RAVDESS's training speakers the
# choice falls in this range, and a wider one only costs time.
SVM_CS = (0.3, 1.0, 3.0, 10.0)
CV_FOLDS = 5  # speaker-grouped folds of the training clips that choose C and the temperature
TEMPERATURES = np.geomspace(0.02, 50.0, 81)  # the temperatures tried on the held-out decisions
# The kernel is N x N float64: 12,000 clips are 1.2 GB, and a cross-validation fold's part of it
# 0.7 GB more. A larger training set is subsampled (stratified by emotion) to this many clips, the
# voices as recorded kept before any augmented copy of them.
MAX_KERNEL_CLIPS = 12_000
MIN_STD = 1e-6  # a feature (nearly) constant over the training clips is centred, not scaled


@dataclass(frozen=True)
class KernelLayer:
    """logits = (coefficients · exp(-gamma |z - anchor|^2) + bias) / temperature, for the features
    z standardised with the training clips' mean and scale: a one-vs-rest RBF SVM's decisions."""

    mean: np.ndarray  # float32 (D,)
    scale: np.ndarray  # float32 (D,)
    anchors: np.ndarray  # float32 (S, D): the support vectors, standardised
    coefficients: np.ndarray  # float32 (classes, S): each emotion's dual coefficients (0 off its support)
    bias: np.ndarray  # float32 (classes,)
    gamma: float
    temperature: float
    C: float  # the penalty the cross-validation chose (a record; the decisions do not need it)

    KIND = "rbf_svm"
    _ARRAYS = ("mean", "scale", "anchors", "coefficients", "bias")

    @property
    def num_classes(self) -> int:
        return self.coefficients.shape[0]

    def logits(self, features: np.ndarray) -> np.ndarray:
        standardised = (np.asarray(features, np.float32) - self.mean) / self.scale
        squared = ((standardised ** 2).sum(axis=1, keepdims=True) - 2 * standardised @ self.anchors.T
                   + (self.anchors ** 2).sum(axis=1))
        kernel = np.exp(-self.gamma * np.maximum(squared, 0.0))
        return (kernel @ self.coefficients.T + self.bias) / self.temperature

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything the layer holds, as arrays (the checkpoint's form)."""
        scalars = {"gamma": self.gamma, "temperature": self.temperature, "C": self.C}
        return {**{name: getattr(self, name) for name in self._ARRAYS},
                **{name: np.asarray(value, np.float32) for name, value in scalars.items()}}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> KernelLayer:
        return cls(**{name: np.asarray(arrays[name], np.float32) for name in cls._ARRAYS},
                   **{name: float(arrays[name]) for name in ("gamma", "temperature", "C")})

    def to_json(self) -> str:
        """The layer as JSON, its arrays as base64 float32 (an ONNX file's metadata holds it: a
        few thousand support vectors as decimal lists would be four times the size)."""
        encoded = {name: {"shape": list(array.shape),
                          "float32": base64.b64encode(np.ascontiguousarray(array, np.float32)).decode()}
                   for name, array in self.arrays().items()}
        return json.dumps({"kind": self.KIND, **encoded})

    @classmethod
    def from_json(cls, text: str) -> KernelLayer:
        values = json.loads(text)
        return cls.from_arrays({name: np.frombuffer(base64.b64decode(value["float32"]), np.float32)
                                .reshape(value["shape"])
                                for name, value in values.items() if name != "kind"})


def fit_svm_layer(features: np.ndarray, targets: np.ndarray, num_classes: int, speakers=None,
                  seed: int = 0, copies=None) -> KernelLayer:
    """A one-vs-rest RBF SVM from features (N, D) to class indices, its C and temperature chosen
    on speaker-grouped folds of these clips (`speakers` names each row's; None: folds of clips),
    folded into one kernel layer. `copies` marks the rows that are augmented copies of others
    (speed perturbation's): where the kernel cannot hold every row, they are the ones left out."""
    features, targets = np.asarray(features, np.float64), np.asarray(targets)
    copies = np.zeros(len(targets), bool) if copies is None else np.asarray(copies, bool)
    rows = _bounded(targets, copies, seed)
    features, targets = features[rows], targets[rows]
    groups = np.arange(len(targets)) if speakers is None else np.asarray([str(s) for s in speakers])[rows]
    mean, scale = feature_statistics(features)
    standardised = (features - mean) / scale
    gamma = 1.0 / features.shape[1]  # scikit-learn's 'scale' for standardised features
    kernel = _rbf_kernel(standardised, gamma)
    C, temperature = _chosen_by_cross_validation(kernel, targets, groups, num_classes)
    support, coefficients, bias = _folded(_one_vs_rest(kernel, targets, num_classes, C))
    as_float32 = (array.astype(np.float32) for array in (mean, scale, standardised[support], coefficients, bias))
    return KernelLayer(*as_float32, gamma=gamma, temperature=temperature, C=C)


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each feature's mean and spread over these clips (N, D), what a probe standardises with; a
    feature (nearly) constant over them gets a spread of 1: centred, not scaled."""
    mean, scale = features.mean(axis=0), features.std(axis=0)
    scale[scale < MIN_STD] = 1.0
    return mean, scale


@dataclass(frozen=True)
class _BinaryMachine:
    """One emotion's SVM against the rest: decision = kernel[:, support] · dual + intercept."""

    support: np.ndarray  # row indices of the training kernel
    dual: np.ndarray
    intercept: float


def _one_vs_rest(kernel: np.ndarray, targets: np.ndarray, num_classes: int,
                 C: float) -> list[_BinaryMachine | None]:
    """Each class's binary SVM on a precomputed training kernel; None for a class the clips do not
    show. A class that is every clip has nothing to be told from: its machine says 'yes' always."""
    from sklearn.svm import SVC

    machines: list[_BinaryMachine | None] = []
    for label in range(num_classes):
        positive = targets == label
        if not positive.any():
            machines.append(None)
        elif positive.all():
            machines.append(_BinaryMachine(np.zeros(0, int), np.zeros(0), 1.0))
        else:
            svm = SVC(C=C, kernel="precomputed").fit(kernel, positive.astype(int))
            # classes_ is [0, 1]: a positive decision says 'this emotion'
            machines.append(_BinaryMachine(svm.support_, svm.dual_coef_[0], float(svm.intercept_[0])))
    return machines


def _folded(machines: list[_BinaryMachine | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The machines as one layer: the union of their support vectors (training rows), each
    emotion's coefficients on them (0 off its own support), and each emotion's intercept."""
    support = np.unique(np.concatenate([m.support for m in machines if m is not None]))
    coefficients = np.zeros((len(machines), len(support)))
    bias = np.full(len(machines), ABSENT_CLASS_BIAS)
    for label, machine in enumerate(machines):
        if machine is not None:
            coefficients[label, np.searchsorted(support, machine.support)] = machine.dual
            bias[label] = machine.intercept
    return support, coefficients, bias


def _decisions(machines: list[_BinaryMachine | None], kernel_to_train: np.ndarray) -> np.ndarray:
    """(N, classes) decisions of clips from their kernel rows against the training clips."""
    columns = [np.full(len(kernel_to_train), ABSENT_CLASS_BIAS) if m is None
               else kernel_to_train[:, m.support] @ m.dual + m.intercept for m in machines]
    return np.stack(columns, axis=1)


def _chosen_by_cross_validation(kernel: np.ndarray, targets: np.ndarray, groups: np.ndarray,
                                num_classes: int) -> tuple[float, float]:
    """The C whose held-out decisions are the most accurate over speaker-grouped folds (the
    smallest of equals), and the temperature that gives those decisions the lowest log loss.
    Too few speakers or clips to hold any out: the middle C, temperature 1."""
    from sklearn.model_selection import GroupKFold

    folds = min(CV_FOLDS, len(np.unique(groups)))
    if folds < 2:
        return SVM_CS[len(SVM_CS) // 2], 1.0
    held_out = {C: np.zeros((len(targets), num_classes)) for C in SVM_CS}
    for train, test in GroupKFold(n_splits=folds).split(kernel, targets, groups):
        inside, across = kernel[np.ix_(train, train)], kernel[np.ix_(test, train)]
        for C in SVM_CS:
            held_out[C][test] = _decisions(_one_vs_rest(inside, targets[train], num_classes, C), across)
    accuracy = {C: np.mean(decisions.argmax(axis=1) == targets) for C, decisions in held_out.items()}
    best = max(SVM_CS, key=lambda C: (accuracy[C], -C))
    return best, _temperature(held_out[best], targets)


def _temperature(decisions: np.ndarray, targets: np.ndarray) -> float:
    """The temperature T whose softmax(decisions / T) gives these targets the lowest log loss."""
    losses = [_log_loss(decisions / temperature, targets) for temperature in TEMPERATURES]
    return float(TEMPERATURES[int(np.argmin(losses))])


def _log_loss(logits: np.ndarray, targets: np.ndarray) -> float:
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probabilities[np.arange(len(targets)), targets].mean())


def _rbf_kernel(standardised: np.ndarray, gamma: float) -> np.ndarray:
    from sklearn.metrics.pairwise import rbf_kernel

    return rbf_kernel(standardised, gamma=gamma)


def _bounded(targets: np.ndarray, copies: np.ndarray, seed: int) -> np.ndarray:
    """The rows the kernel is computed on (in their order): all of them where they fit in
    MAX_KERNEL_CLIPS; else every original row and a class-stratified sample of the copies that fills
    the rest, since the voices as recorded are what the test voices are like; else, with more
    originals than that, a class-stratified sample of the originals alone."""
    if len(targets) <= MAX_KERNEL_CLIPS:
        return np.arange(len(targets))
    originals, copied = np.flatnonzero(~copies), np.flatnonzero(copies)
    if len(originals) >= MAX_KERNEL_CLIPS:
        return _stratified_sample(originals, targets, MAX_KERNEL_CLIPS, seed)
    room = MAX_KERNEL_CLIPS - len(originals)
    return np.sort(np.concatenate([originals, _stratified_sample(copied, targets, room, seed)]))


def _stratified_sample(rows: np.ndarray, targets: np.ndarray, size: int, seed: int) -> np.ndarray:
    """`size` of these rows (fewer than they are), sorted: each class in its share where both the
    sample and what it leaves have room for every class, a plain random sample otherwise."""
    from sklearn.model_selection import train_test_split

    _, counts = np.unique(targets[rows], return_counts=True)
    stratified = counts.min() >= 2 and min(size, len(rows) - size) >= len(counts)
    kept, _ = train_test_split(rows, train_size=size, random_state=seed,
                               stratify=targets[rows] if stratified else None)
    return np.sort(kept)
