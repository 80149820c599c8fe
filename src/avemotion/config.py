"""The settings of the stages whose modules import the deep-learning, web or plotting stack
(training, serving, timelines, the demo), kept here so that the command line reads their defaults
without importing any of them.

The training recipe is the paper's: AdamW (lr 5e-5, weight decay 1e-2), cross-entropy, batch 8, at
most 10 epochs, early stopping after 3 epochs without a lower validation loss, and the
best-validation-loss weights restored and used on the test split. It assumes ImageNet weights; from
random weights (`--no-pretrained`) :func:`from_scratch` gives the recipe that learns (see
FROM_SCRATCH).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from avemotion.registry import ModelSettings, model_settings, same_tuning
from avemotion.settings import setting

SPLIT_KINDS = ("actor", "random", "given")  # the kinds splits.make_split makes


@dataclass(frozen=True)
class TrainSettings:
    """One training run's recipe; saved, resolved, as config.json in the run folder."""

    model: ModelSettings = setting(model_settings("effnet_lstm"), "the network, a registered model")
    learning_rate: float = setting(5e-5, "AdamW learning rate")
    weight_decay: float = setting(1e-2, "AdamW weight decay")
    batch_size: int = setting(8, "clips per optimisation step")
    max_epochs: int = setting(10, "at most this many epochs")
    patience: int = setting(3, "stop after this many epochs without a lower validation loss")
    split: str = setting("actor", "actor: 70/15/15 % of actors, gender-balanced, no actor in two "
                         "splits; random: clip-level, stratified by emotion; given: the table's own "
                         "split column (FER2013's parts)")
    folds: int = setting(0, "more than 1: actor-grouped K-fold cross-validation instead of one split")
    seed: int = setting(0, "seed of the split, the initialisation and the data order")
    freeze_backbones: bool = setting(False, "fast CPU mode: cache backbone embeddings once, train "
                                     "the temporal model, fusion and head only")
    weights: str | None = setting(None, "local file or folder of ImageNet backbone weights, or a speech "
                                  "encoder's model folder")
    accelerator: str = setting("auto", "Lightning accelerator: cpu, gpu or auto")
    devices: str = setting("auto", "Lightning devices: a count, a list (0,1) or auto")
    strategy: str = setting("auto", "Lightning strategy: auto, ddp, …")
    num_nodes: int = setting(1, "machines in a multi-node DDP run")
    precision: str = setting("32-true", "Lightning precision: 32-true, 16-mixed, bf16-mixed")
    num_workers: int = setting(0, "DataLoader worker processes (cache reads are cheap)")
    schedule: str = setting("constant", "learning rate schedule: constant, or onecycle (warm up to "
                            "the learning rate, then anneal to nearly zero)")
    mixup: float = setting(0.0, "mixup's Beta(α, α) parameter: train on blends of two clips and "
                           "their labels (0: off)")
    spec_masks: int = setting(0, "time and frequency masks laid over each training spectrogram "
                              "(SpecAugment; 0: off)")
    jitter_frames: bool = setting(False, "mirror, shift, scale and slightly rotate each training "
                                  "clip's frames at random (the same for all of a clip's frames)")
    label_smoothing: float = setting(0.0, "share of each training target spread evenly over the "
                                     "other labels (0: off)")
    init_from: str | None = setting(None, "a trained model's checkpoint (RUN/model.ckpt) whose frame "
                                    "encoder starts this model's video branch, with a new head for "
                                    "the new labels; with --freeze-backbones it stays as trained")
    linear_probe: bool = setting(False, "frozen encoders: fit the head on the training and validation "
                                 "clips instead of by gradient descent: in closed form (L2 logistic "
                                 "regression, or the RBF SVM of a model whose last layer is one), or by "
                                 "a fixed recipe of 60 epochs for a head with a hidden layer (_mlp_); "
                                 "the frozen speech encoders' recipe (their layer weights then stay equal)")
    speed_perturbation: tuple[float, ...] = setting((), "the probe: also fit it on each training "
                                                    "voice played at these speeds (0.9 1.1: 10 % slower "
                                                    "and faster; off unless given: docs/studies/"
                                                    "speed-perturbation.md)")
    test_time_speeds: tuple[float, ...] = setting((), "judge each voice also played at these speeds "
                                                  "and average its probabilities (0.9 1.1; test-time "
                                                  "augmentation, in evaluation and prediction alike; "
                                                  "off unless given)")
    common_labels: bool = setting(False, "trained on several corpora: keep only the labels every one "
                                  "of them has (else each label is trained where it is present)")
    speaker_norm: bool = setting(False, "after training, standardise each clip's features with the "
                                 "statistics of all its speaker's clips and refit the last layer on "
                                 "them (needs several clips per speaker, also to predict)")
    corpus_norm: bool = setting(False, "the same with each corpus in a speaker's place: standardise "
                                "each clip's features with the statistics of all its corpus's clips "
                                "(needs many clips of one source, also to predict: a folder of them, "
                                "a table to evaluate)")
    backbone_lr_scale: float = setting(1.0, "pretrained image backbones learn at this fraction of the "
                                       "learning rate, the freshly made layers after them at the whole "
                                       "of it (1: all alike, the paper's recipe)")
    channels_last: bool = setting(False, "lay the image backbones' tensors out channels-last: with "
                                  "--precision bf16-mixed, faster convolutions on a CPU that has bf16 "
                                  "instructions (1.7x a MobileNetV2 training step here)")
    progress: bool = True  # progress bars

    @property
    def normalised_by(self) -> str | None:
        """What a normalised model standardises together ("speaker", "corpus"), or None."""
        return "corpus" if self.corpus_norm else "speaker" if self.speaker_norm else None

    @property
    def keeps_last_epoch(self) -> bool:
        """With the one-cycle schedule, no early stopping, and the last epoch's weights are kept."""
        return self.schedule == "onecycle"

    def with_model(self, name: str) -> TrainSettings:
        """The same recipe for another registered model, with this one's hidden size, pretrained…"""
        return replace(self, model=same_tuning(self.model, name))


@dataclass(frozen=True)
class ServeSettings:
    """The web application's settings."""

    host: str = setting("127.0.0.1", "address to bind; the page is only reachable from this machine by default")
    port: int = setting(8000, "TCP port")
    max_upload_mb: int = setting(100, "largest upload accepted, in megabytes (413 beyond)")
    concurrency: int = setting(0, "predictions run at once; 0: one per core")
    queue: int = setting(16, "requests that wait for a free prediction; beyond them, 503 with Retry-After")
    time_limit: float = setting(60.0, "seconds one prediction may take; past them the request gets 504 "
                                "and its place is freed")

    def running_at_once(self) -> int:
        """The number of predictions run at once, with 0 meaning one per core."""
        return self.concurrency or os.cpu_count() or 1


# How an exported model's weights are stored: as trained, halved (float16 weights and arithmetic, the
# inputs and outputs as before) or as 8-bit integers (ONNX Runtime's dynamic quantisation: int8
# weights, activations quantised on the fly; about a quarter of the size)
EXPORT_PRECISIONS = ("float32", "float16", "int8")

DEFAULT_WINDOW_S = 2.5  # a timeline's window when the model does not know its training clips' length


@dataclass(frozen=True)
class TimelineSettings:
    """How a timeline's window slides."""

    window: float = setting(0.0, "window length in seconds; 0: the training clips' typical length "
                            f"(stored with the model; {DEFAULT_WINDOW_S} if unknown)")
    hop: float = setting(0.5, "seconds between the starts of consecutive windows")
    smooth: int = setting(1, "average each window's probabilities over this many neighbouring windows "
                          "(1: no smoothing)")


SCHEDULES = ("constant", "onecycle")

# Training whole networks from random weights (`--no-pretrained`): the paper's fine-tuning recipe
# (lr 5e-5, 10 epochs) barely moves a random network. A one-cycle schedule peaking at 1e-3 over 30
# epochs, batches of 32, two time and two frequency masks per spectrogram and mixup (α 0.2) let
# a ResNet-18 learn emotion from a corpus of about a thousand clips without memorising its speakers
# (docs/guide/train.md, "Training from scratch", and benchmarks/real_speech.py). With the one-cycle schedule
# there is no early stopping and the last epoch's weights are kept (see train.fit).
FROM_SCRATCH = {"learning_rate": 1e-3, "batch_size": 32, "max_epochs": 30,
                "schedule": "onecycle", "mixup": 0.2, "spec_masks": 2}


# An EfficientNet on the spectrogram from random weights learns less than a ResNet-18 under that
# recipe (0.396 against 0.543 on RAVDESS's six folds). Its stem downsampling by max pooling instead
# of its convolution's stride, as a ResNet's stem does (ModelSettings.stem_max_pool), and a peak
# learning rate of 3e-3 narrow the gap (0.488 on RAVDESS; on CREMA-D's first fold 0.550 against
# 0.496, the ResNet-18 0.573; docs/studies/efficientnet.md).
FROM_SCRATCH_EFFICIENTNET = {"learning_rate": 3e-3}


def from_scratch(settings: TrainSettings, given: frozenset[str] = frozenset()) -> TrainSettings:
    """The from-scratch recipe, and an EfficientNet spectrogram backbone's (its stem max-pooled),
    keeping the settings a user gave explicitly (`given`)."""
    recipe, model = FROM_SCRATCH, settings.model
    if efficientnet_spectrogram(model):
        recipe, model = {**FROM_SCRATCH, **FROM_SCRATCH_EFFICIENTNET}, replace(model, stem_max_pool=True)
    return replace(settings, model=model, **{name: value for name, value in recipe.items() if name not in given})


def efficientnet_spectrogram(model: ModelSettings) -> bool:
    """Whether the model's audio branch is an EfficientNet on the spectrogram."""
    return model.audio_encoder == "timm_spectrogram" and (model.audio_backbone or "").startswith("efficientnet")


# Training on a frozen pretrained speech encoder's features (avemotion.media.speech), computed once: the
# probe, the head fitted on every labelled training clip (validation speakers included: there is no
# early stopping to choose with them), in closed form an RBF support-vector machine (*_audio_only) or a
# logistic regression (*_linear_audio_only), by a fixed recipe one hidden layer (*_mlp_audio_only;
# training/hidden_probe.py). Without it (--no-linear-probe) the layer weights and the head learn by
# gradient descent at a rate the paper's fine-tuning recipe (5e-5, 10 epochs) would not give them,
# early-stopped on the validation speakers' loss.
FROZEN_SPEECH = {"linear_probe": True, "learning_rate": 1e-3, "batch_size": 32, "max_epochs": 100,
                 "patience": 10}


def frozen_speech(settings: TrainSettings, given: frozenset[str] = frozenset()) -> TrainSettings:
    """The frozen speech-encoder recipe, keeping the settings a user gave explicitly (`given`). A
    head the probe cannot fit (a gated fusion's) learns by gradient descent."""
    recipe = {**FROZEN_SPEECH, "linear_probe": settings.model.fusion in ("concat", "svm", "mlp")}
    return replace(settings, **{name: value for name, value in recipe.items() if name not in given})


# Training a still-image model (resnet18_face …) on a face corpus: the field's still-image recipe,
# the one-cycle schedule peaking at 1e-3 over 30 epochs of 64 images, AdamW's weight decay 0.05,
# every training face mirrored, shifted, scaled and rotated at random (augment.py) and label
# smoothing 0.1 (FER2013's labels are single annotators' and often ambiguous). Chosen on FER2013's
# validation part (PublicTest) (docs/results/faces.md).
STILL_IMAGE = {"learning_rate": 1e-3, "weight_decay": 0.05, "batch_size": 64, "max_epochs": 30,
               "schedule": "onecycle", "jitter_frames": True, "label_smoothing": 0.1}


# A still-face model that starts from ImageNet weights (mobilenetv2_face …) is fine-tuned with the same
# augmentation and schedule (its first 30 % a warm-up from 1/25 of the peak), the freshly made head
# at 2e-3 and the pretrained backbone at a quarter of it, so that the first steps' large gradients
# from a random head do not wash out what ImageNet taught it; 15 epochs (docs/results/faces.md).
PRETRAINED_STILL_IMAGE = {**STILL_IMAGE, "learning_rate": 2e-3, "backbone_lr_scale": 0.25, "max_epochs": 15}


def still_image(settings: TrainSettings, given: frozenset[str] = frozenset()) -> TrainSettings:
    """The still-image recipe, from scratch or fine-tuning ImageNet weights, keeping the settings a
    user gave explicitly (`given`)."""
    chosen = PRETRAINED_STILL_IMAGE if settings.model.pretrained else STILL_IMAGE
    return replace(settings, **{name: value for name, value in chosen.items() if name not in given})


# Fine-tuning a pretrained speech encoder inside the network (a *_tuned_* model), the shape of
# SpeechBrain's wav2vec 2.0 emotion recipe: small batches, a warm-up and decay, the head at 5e-4 and
# the encoder's layers at 1/20 of it (TunedSpeechEncoder.PRETRAINED_LR_SCALE), no mixup or masks
# (the waveform is not a spectrogram). A GPU's job: a base-size encoder is ~95 M parameters, and
# the recipe is not measured on these machines (no pretrained transformers weights reach them).
TUNED_SPEECH = {"learning_rate": 5e-4, "batch_size": 8, "max_epochs": 15, "schedule": "onecycle"}


def tuned_speech(settings: TrainSettings, given: frozenset[str] = frozenset()) -> TrainSettings:
    """The fine-tuning recipe, keeping the settings a user gave explicitly (`given`)."""
    return replace(settings, **{name: value for name, value in TUNED_SPEECH.items() if name not in given})


def recipe(settings: TrainSettings, given: frozenset[str] = frozenset()) -> TrainSettings:
    """The recipe for the model: frozen speech features, a still-image model's, a fine-tuned speech
    encoder's, from scratch (random weights, whole networks trained) or the paper's; the settings a
    user gave explicitly (`given`) win."""
    if settings.model.frozen_speech:
        return frozen_speech(settings, given)
    if settings.model.still_image and not settings.freeze_backbones:
        return still_image(settings, given)
    if settings.model.tuned_speech and not settings.freeze_backbones:
        return tuned_speech(settings, given)
    if not settings.model.pretrained and not settings.freeze_backbones:
        return from_scratch(settings, given)
    return settings


# Training from random weights with frozen backbones, as the demo and the learning check do: only the
# temporal model, fusion and head learn, from cached embeddings, so a higher learning rate and more
# (seconds-long) epochs than the paper's fine-tuning recipe.
FROZEN_FROM_SCRATCH = TrainSettings(model=model_settings("resnet18_vit_lstm", pretrained=False),
                                    freeze_backbones=True, learning_rate=3e-4, max_epochs=40, patience=8)


@dataclass(frozen=True)
class DemoSettings:
    """What `avemotion demo` trains on and how big it is; about two minutes on two cores."""

    family: str = setting("resnet18_vit_lstm", "hybrid trained beside its audio-only and video-only ablations")
    actors: int = setting(30, "actors of the synthetic training corpus")
    sentences: int = setting(3, "sentences per actor of the synthetic training corpus")
    frame_size: int = setting(64, "frame side in pixels for training (small frames keep it fast)")
    seed: int = setting(0, "seed of the synthetic corpus, the split and the training")
