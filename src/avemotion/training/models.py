"""The hybrid audio-visual networks of the paper, their unimodal ablations, and their alternatives.

Every model is one :class:`EmotionNet`: a video branch (an encoder on each frame, then a temporal
model over the frame features), an audio branch (an encoder on the voice: the paper's is an image
backbone on the one-channel log-Mel spectrogram, pooled), a fusion of the two, and one linear layer
to the emotion logits. The paper's temporal model is an LSTM's last hidden state and its fusion is
concatenation with dropout. Encoders, temporal models and fusions are each a class and one line in
ENCODERS, TEMPORAL_MODELS or FUSIONS; an encoder declares the input it reads (by name, see
:mod:`avemotion.media.inputs`) and the width of its features, and takes its normalisation from its own
configuration. Every fusion ends in a `classifier` over the vector its `features` make (a linear
layer, or for the frozen speech encoders an RBF support-vector machine fitted in closed form; the
`mlp` fusion has one hidden layer between them). The
models differ only in their :class:`ModelSettings`, registered by name in :mod:`avemotion.registry`.

A pretrained speech encoder (Whisper, WavLM … : :mod:`avemotion.media.speech`) can be the audio branch:
it runs outside the network, frozen, on the waveform, and only what follows it (its layer weights,
the fusion, the head) is trained and saved.

Speaker normalisation (:mod:`avemotion.runtime.speakers`) reads that vector (`clip_features`) after the
network, standardised with its speaker's statistics: the network itself is the same with or without it.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from avemotion.errors import UsageError, WeightsUnavailable
from avemotion.media.inputs import FRAME_SIZE, FRAMES, MEL, WAVEFORM, FeatureSettings, embedding_input
from avemotion.media.speech import EncoderIdentity, LazySpeechEncoder, weights_folder
from avemotion.registry import (
    MODELS,
    SPEECH_POOLINGS,
    TUNED_SPEECH_ENCODER,
    ModelSettings,
    list_models,
    model_settings,
)
from avemotion.runtime.hidden_layer import HiddenLayer
from avemotion.runtime.svm_probe import KernelLayer
from avemotion.training.backbone_weights import local_weights_overlay

__all__ = ["ENCODERS", "FUSIONS", "MODELS", "TEMPORAL_MODELS", "EmotionNet", "ModelSettings",
           "WeightsUnavailable", "create_model", "list_models", "model_settings"]

ENCODERS: dict[str, type[nn.Module]] = {}  # name -> class(backbone, settings, image_size, weights)
TEMPORAL_MODELS: dict[str, type[nn.Module]] = {}  # name -> class(input_dim, settings)
FUSIONS: dict[str, type[nn.Module]] = {}  # name -> class(input_dims, settings)


def register(registry: dict[str, type], name: str):
    """Class decorator: make an encoder, a temporal model or a fusion available under `name`."""
    def add(cls: type) -> type:
        registry[name] = cls
        return cls
    return add


def _lookup(registry: dict[str, type], kind: str, name: str) -> type:
    if name not in registry:
        raise UsageError(f"unknown {kind} {name!r}; choose one of {', '.join(registry)}")
    return registry[name]


def create_model(name: str, image_size: int = FRAME_SIZE, weights: str | Path | None = None,
                 **overrides) -> EmotionNet:
    """Build a registered model for frames of image_size pixels; `weights` is a local file or
    folder of ImageNet backbone weights."""
    return EmotionNet(model_settings(name, **overrides), image_size=image_size, weights=weights)


def model_inputs(settings: ModelSettings) -> tuple[str, ...]:
    """The inputs a model of these settings reads (its encoders'), without building it."""
    return tuple(_lookup(ENCODERS, "encoder", encoder).input for encoder, _ in settings.branches().values())


class Encoder(nn.Module):
    """What every encoder declares: the input it reads, whether it gives one feature vector per
    frame (then a temporal model follows it) or one per clip, and that vector's width (`dim`).

    An encoder is built as ``cls(backbone, settings, image_size, weights)``: `backbone` is the
    branch's backbone name from the model settings (None where the encoder has none).

    A pretrained encoder that runs outside the network (``external``: a speech encoder) keeps its
    weights out of the checkpoint; its `identity` names them instead, and an exported model
    carries that identity and runs the encoder beside ONNX Runtime."""

    input: str
    per_frame: bool = False
    dim: int
    external: bool = False
    identity: EncoderIdentity | None = None
    PRETRAINED_LR_SCALE = 1.0  # of the learning rate, for its fine_tuned_parameters

    @property
    def embedding_shape(self) -> tuple[int, ...]:
        """The shape of one clip's (or one frame's) features, before any `adapter`."""
        return (self.dim,)

    def adapter(self) -> nn.Module | None:
        """A trainable layer between the standardised features and the fusion (None: none)."""
        return None

    def architecture(self) -> dict | None:
        """What rebuilds the encoder besides its weights, where its settings do not (a transformers
        encoder's configuration), saved with the checkpoint; None: nothing."""
        return None

    def fine_tuned_parameters(self) -> list[nn.Parameter]:
        """Pretrained weights that learn more slowly than the rest, at `PRETRAINED_LR_SCALE` of the
        learning rate (a fine-tuned speech encoder's)."""
        return []


@register(ENCODERS, "timm_frames")
class FrameEncoder(Encoder):
    """A timm image backbone applied to every frame of a clip at once: uint8 frames -> frame features,
    normalised with the backbone's own mean and spread (timm's data configuration).

    A still-face model's encoder judges, once trained, each face and its mirror image alike: a
    frame's features are the mean of the frame's and its mirror image's (faces are near-symmetric,
    and training mirrored them at random), at twice the cost of one pass."""

    input = FRAMES
    per_frame = True

    def __init__(self, backbone: str, settings: ModelSettings, image_size: int, weights: Path | None) -> None:
        super().__init__()
        # Backbones whose configuration fixes their input size (ViTs' position embeddings) are
        # built for the frames they will see; the others take any size.
        fixed = timm.models.get_pretrained_cfg(backbone).fixed_input_size
        extra = {"img_size": image_size} if fixed else {}
        self.backbone = create_backbone(backbone, settings.pretrained, weights, in_chans=3, **extra)
        config = timm.data.resolve_data_config({}, model=self.backbone)
        self.register_buffer("mean", torch.tensor(config["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config["std"]).view(1, 3, 1, 1), persistent=False)
        self.mirrored = settings.still_image

    @property
    def dim(self) -> int:
        return self.backbone.num_features

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) uint8 -> (B, T, D): one backbone call over all B×T frames (and their
        mirror images, for a trained still-face model)."""
        batch, steps = frames.shape[:2]
        images = frames.flatten(0, 1).float().div(255.0).sub(self.mean).div(self.std)
        if self.mirrored and not self.training:
            pair = self.backbone(torch.cat([images, images.flip(-1)]))
            return pair.view(2, batch, steps, -1).mean(dim=0)
        return self.backbone(images).view(batch, steps, -1)


@register(ENCODERS, "timm_spectrogram")
class SpectrogramEncoder(Encoder):
    """A timm image backbone on the one-channel log-Mel spectrogram: dB -> pooled features."""

    input = MEL
    # Log-Mel dB values (top_db 80, reference power 1) are standardised with these fixed constants,
    # measured over the bundled clips' spectrograms (mean -43 dB, standard deviation 17.6 dB).
    DB_MEAN = -45.0
    DB_STD = 18.0

    def __init__(self, backbone: str, settings: ModelSettings, image_size: int, weights: Path | None) -> None:
        super().__init__()
        self.backbone = create_backbone(backbone, settings.pretrained, weights, in_chans=1)
        if settings.stem_max_pool:
            max_pool_the_stem(self.backbone, backbone)

    @property
    def dim(self) -> int:
        return self.backbone.num_features

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, 1, n_mels, time) dB -> (B, D)."""
        return self.backbone((mel.float() - self.DB_MEAN) / self.DB_STD)


def max_pool_the_stem(backbone: nn.Module, name: str) -> nn.Module:
    """Move an EfficientNet's stem downsampling from its convolution's stride to a 3 x 3 max pooling
    after the stem, as a ResNet's stem downsamples: the same weights and the same resolutions after
    the stem, each position keeping the strongest response of its 3 x 3 neighbourhood (a little
    invariance to small shifts in pitch and time; docs/studies/efficientnet.md)."""
    stem = getattr(backbone, "conv_stem", None)
    if stem is None or tuple(stem.stride) != (2, 2):
        raise UsageError(f"{name}: stem_max_pool is for backbones whose stem is a stride-2 convolution "
                         "(timm's EfficientNets: conv_stem)")
    stem.stride = (1, 1)
    backbone.bn1 = nn.Sequential(backbone.bn1, nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    return backbone


# Published architectures of the registered speech encoders: (hidden-state layers pooled, width),
# so that `avemotion models` lists them without their weights.
SPEECH_ARCHITECTURES = {
    ("whisper", "tiny"): (1, 384), ("whisper", "base"): (1, 512), ("whisper", "small"): (1, 768),
    ("transformers", "microsoft/wavlm-base-plus"): (13, 768),
    ("transformers", "facebook/hubert-base-ls960"): (13, 768),
    ("transformers", "facebook/wav2vec2-base"): (13, 768),
    ("transformers", "openai/whisper-base"): (7, 512),
}


# Their published sizes in millions of parameters (the whole model: Whisper's decoder included).
PUBLISHED_SIZES = {("whisper", "tiny"): 39, ("whisper", "base"): 74, ("whisper", "small"): 244,
                   ("transformers", "microsoft/wavlm-base-plus"): 94.7,
                   ("transformers", "facebook/hubert-base-ls960"): 94.7,
                   ("transformers", "facebook/wav2vec2-base"): 95, ("transformers", "openai/whisper-base"): 74}


class PretrainedSpeechEncoder(Encoder):
    """A frozen pretrained speech encoder (:mod:`avemotion.media.speech`) on the waveform: each layer's
    hidden states pooled over time (mean and standard deviation), then, through its `adapter`,
    the layers' softmax-weighted sum (the SUPERB protocol's learned layer weights).

    It always runs with its pretrained weights (there is nothing to train from scratch), loaded
    from `weights`, the hub or its cache: with the model, or on first use where its size is known
    without them (a model rebuilt from a checkpoint, which refuses weights other than its recorded
    `identity`'s, or a registered model built with `pretrained` False, as `avemotion models` lists it)."""

    input = WAVEFORM
    external = True
    family: str

    def __init__(self, backbone: str, settings: ModelSettings, image_size: int, weights: Path | None,
                 identity: EncoderIdentity | None = None) -> None:
        super().__init__()
        self.speech = LazySpeechEncoder(self.family, backbone, weights, identity)
        if identity is not None:
            self.layers, self.width = identity.layers, identity.width
        elif not settings.pretrained and (self.family, backbone) in SPEECH_ARCHITECTURES:
            self.layers, self.width = SPEECH_ARCHITECTURES[(self.family, backbone)]
        else:  # its size is known from its weights only
            loaded = self.speech.encoder.identity
            self.layers, self.width = loaded.layers, loaded.width
        # An SVM reads the layers side by side and weighs them itself, and so does any head of a
        # model whose settings say so; else a trained head learns a softmax weight per layer, whose
        # equal start a closed-form probe would keep (the layers' average: Whisper base's seven on
        # CREMA-D's voices gave 0.729 averaged, 0.745 side by side).
        self.side_by_side = (settings.fusion == "svm" or settings.speech_layers == "side_by_side") and self.layers > 1

    @property
    def identity(self) -> EncoderIdentity | None:
        return self.speech.identity

    @property
    def short_name(self) -> str:
        short = self.speech.name.rstrip("/").split("/")[-1]
        return f"whisper-{short}" if self.family == "whisper" and "whisper" not in short else short

    def provenance(self) -> str:
        """The encoder's published size and where its weights come from, in words."""
        size = PUBLISHED_SIZES.get((self.family, self.speech.name))
        source = ("faster-whisper's hub model" if self.family == "whisper" else "the hub's model")
        return (f"frozen {self.short_name}" + (f" ({size:g} M parameters, whole model)" if size else "")
                + f" from --weights or {source} {self.speech.name!r}")

    @property
    def dim(self) -> int:
        """Features per clip after the adapter: one layer's, or every layer's side by side."""
        return (self.layers if self.side_by_side else 1) * 2 * self.width

    @property
    def embedding_shape(self) -> tuple[int, ...]:
        return (self.layers, 2 * self.width)

    def adapter(self) -> nn.Module:
        return nn.Flatten() if self.side_by_side else LayerWeights(self.layers)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, samples) zero-padded voices -> (B, layers, 2 × width), computed outside torch."""
        embedded = self.speech.embed(waveform.detach().cpu().float().numpy())
        return torch.from_numpy(embedded).to(waveform.device)


@register(ENCODERS, "whisper")
class WhisperSpeechEncoder(PretrainedSpeechEncoder):
    """Whisper's encoder in CTranslate2, by faster-whisper's model name (tiny, base, small …) or folder."""

    family = "whisper"


@register(ENCODERS, "transformers")
class TransformersSpeechEncoder(PretrainedSpeechEncoder):
    """An audio AutoModel (WavLM, HuBERT, wav2vec 2.0 …) by hub name or folder, every layer."""

    family = "transformers"


@register(ENCODERS, TUNED_SPEECH_ENCODER)
class TunedSpeechEncoder(Encoder):
    """A transformers audio encoder (WavLM, HuBERT, wav2vec 2.0 … by hub name or folder) inside the
    network, fine-tuned with the head (SpeechBrain's emotion recipes fine-tune wav2vec 2.0 so): the
    waveform through it, its layers' hidden states in a learned softmax-weighted sum (as the frozen
    family's), pooled over the voice's frames (the padding left out) by `settings.speech_pooling`.

    Its convolutional feature extractor stays frozen, as fine-tuning recipes keep it; the rest learns
    at PRETRAINED_LR_SCALE of the head's learning rate. Every weight is in the checkpoint, with the
    encoder's configuration (`architecture`), so a checkpoint rebuilds it without the hub."""

    input = WAVEFORM
    PRETRAINED_LR_SCALE = 0.05  # pretrained layers move slowly beside the freshly initialised head
    MIN_SAMPLES = 400  # the shortest voice the convolutional stem reads (25 ms at 16 kHz)

    def __init__(self, backbone: str, settings: ModelSettings, image_size: int, weights: Path | None,
                 architecture: dict | None = None) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel

        if settings.speech_pooling not in SPEECH_POOLINGS:
            raise UsageError(f"unknown speech pooling {settings.speech_pooling!r}; "
                             f"choose {', '.join(SPEECH_POOLINGS)}")
        folder = None if architecture is not None else weights_folder("transformers", backbone, weights)
        # rebuilt from a checkpoint, from the configuration it saved (its weights follow)
        config = AutoConfig.for_model(**architecture) if folder is None else AutoConfig.from_pretrained(folder)
        if config.is_encoder_decoder:
            raise UsageError(f"{backbone}: fine-tuning reads self-supervised encoders (WavLM, HuBERT, "
                             "wav2vec 2.0); Whisper runs frozen (whisper_*_audio_only)")
        if folder is None:
            self.model = AutoModel.from_config(config)
            self.normalise = bool(architecture["avemotion_normalise"])
        else:
            self.model = AutoModel.from_pretrained(folder) if settings.pretrained else AutoModel.from_config(config)
            self.normalise = _normalises_waveform(folder)
        if hasattr(self.model, "freeze_feature_encoder"):
            self.model.freeze_feature_encoder()
        self.backbone = backbone
        self.layers = config.num_hidden_layers + 1  # + the input embedding
        self.width = config.hidden_size
        self.layer_weights = LayerWeights(self.layers)
        self.pooling = StatisticsPooling(self.width, attentive=settings.speech_pooling == "attentive")

    @property
    def dim(self) -> int:
        return 2 * self.width

    def architecture(self) -> dict:
        """The encoder's configuration, saved with the checkpoint."""
        return {**self.model.config.to_dict(), "avemotion_normalise": self.normalise}

    def fine_tuned_parameters(self) -> list[nn.Parameter]:
        return [parameter for parameter in self.model.parameters() if parameter.requires_grad]

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, samples) voices zero-padded at the end -> (B, 2 × width)."""
        waveform = waveform.float()
        lengths = _voice_lengths(waveform).clamp(min=self.MIN_SAMPLES)
        samples = torch.arange(waveform.shape[1], device=waveform.device)
        voiced = samples[None] < lengths[:, None]
        if self.normalise:  # each voice to zero mean and unit variance, as its feature extractor does
            count = voiced.sum(dim=1, keepdim=True)
            mean = (waveform * voiced).sum(dim=1, keepdim=True) / count
            spread = (((waveform - mean) * voiced) ** 2).sum(dim=1, keepdim=True) / count
            waveform = (waveform - mean) / torch.sqrt(spread + 1e-7) * voiced
        # encoders whose stem normalises each layer (not over time) take the padding as a mask, as
        # their feature extractors give it; the others read the zeros (every voice is padded to the
        # same waveform_seconds in training and prediction alike)
        masked = getattr(self.model.config, "feat_extract_norm", "group") == "layer"
        hidden = self.model(waveform, attention_mask=voiced.long() if masked else None,
                            output_hidden_states=True).hidden_states  # layers × (B, T, width)
        frames = self.layer_weights(torch.stack(hidden, dim=2))  # (B, T, width)
        counts = self.model._get_feat_extract_output_lengths(lengths)
        mask = torch.arange(frames.shape[1], device=frames.device)[None] < counts[:, None]
        return self.pooling(frames, mask)


def _voice_lengths(waveform: torch.Tensor) -> torch.Tensor:
    """Each zero-padded voice's length in samples: up to its last sample that is not zero."""
    positions = torch.arange(1, waveform.shape[1] + 1, device=waveform.device)
    return (positions * (waveform != 0)).amax(dim=1)


def _normalises_waveform(folder: Path) -> bool:
    """Whether the encoder's feature extractor standardises each voice (wav2vec 2.0's, WavLM's do)."""
    from transformers import AutoFeatureExtractor

    try:
        return bool(getattr(AutoFeatureExtractor.from_pretrained(folder), "do_normalize", False))
    except (OSError, ValueError):  # a folder without a feature extractor's configuration
        return False


class StatisticsPooling(nn.Module):
    """Frames (B, T, D) and which of them are voice (B, T) -> (B, 2D): their mean and standard
    deviation; with `attentive`, both weighted by a learned attention over the frames (attentive
    statistics pooling, Okabe et al. 2018), so the frames that carry the emotion count most."""

    def __init__(self, width: int, attentive: bool, hidden: int = 128) -> None:
        super().__init__()
        self.attention = (nn.Sequential(nn.Linear(width, hidden), nn.Tanh(), nn.Linear(hidden, 1))
                          if attentive else None)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.attention is None:
            scores = torch.zeros(mask.shape, dtype=frames.dtype, device=frames.device)
        else:
            scores = self.attention(frames).squeeze(-1)
        weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=1).unsqueeze(-1)
        mean = (weights * frames).sum(dim=1)
        variance = (weights * (frames - mean.unsqueeze(1)) ** 2).sum(dim=1)
        return torch.cat([mean, torch.sqrt(variance.clamp(min=1e-8))], dim=-1)


class LayerWeights(nn.Module):
    """A learned softmax-weighted sum over an encoder's layers: (B, layers, D) -> (B, D)."""

    def __init__(self, layers: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(layers))  # equal weights to begin with

    def forward(self, layered: torch.Tensor) -> torch.Tensor:
        return (torch.softmax(self.logits, dim=0)[:, None] * layered).sum(dim=-2)


@register(TEMPORAL_MODELS, "lstm")
class LastHiddenLSTM(nn.Module):
    """The paper's temporal model: an LSTM over the frame features, summarised by its last hidden state."""

    def __init__(self, input_dim: int, settings: ModelSettings) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_dim, settings.temporal_hidden, num_layers=settings.lstm_layers,
                            batch_first=True, bidirectional=settings.bidirectional)
        self.dim = settings.temporal_hidden * (2 if settings.bidirectional else 1)

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, hidden × directions): the top layer's last hidden state(s)."""
        _, (hidden, _) = self.lstm(sequence)
        directions = 2 if self.lstm.bidirectional else 1
        return hidden[-directions:].transpose(0, 1).flatten(1)


@register(TEMPORAL_MODELS, "attention")
class AttentionPooling(nn.Module):
    """Attention pooling over frames: each frame is projected, scored, and the clip is the
    softmax-weighted mean of the projections, so the frames that show the emotion count most."""

    def __init__(self, input_dim: int, settings: ModelSettings) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Linear(input_dim, settings.temporal_hidden), nn.Tanh())
        # no bias: the softmax over frames ignores a constant added to every score
        self.score = nn.Linear(settings.temporal_hidden, 1, bias=False)
        self.dim = settings.temporal_hidden

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, hidden)."""
        projected = self.project(sequence)
        weights = torch.softmax(self.score(projected), dim=1)  # (B, T, 1), summing to 1 over frames
        return (weights * projected).sum(dim=1)


@register(TEMPORAL_MODELS, "mean")
class MeanPooling(nn.Module):
    """The mean of the frame features: a still-image model's, for which one image is one frame and
    a video's frames each count alike."""

    def __init__(self, input_dim: int, settings: ModelSettings) -> None:
        super().__init__()
        self.dim = input_dim

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, D)."""
        return sequence.mean(dim=1)


@register(FUSIONS, "concat")
class ConcatFusion(nn.Module):
    """The paper's late fusion: concatenate the modalities' features, dropout, one linear layer."""

    def __init__(self, input_dims: list[int], settings: ModelSettings) -> None:
        super().__init__()
        self.dropout = nn.Dropout(settings.dropout)
        self.classifier = nn.Linear(sum(input_dims), settings.num_classes)

    def features(self, features: list[torch.Tensor]) -> torch.Tensor:
        """The vector the classifier reads: the modalities' features side by side."""
        return torch.cat(features, dim=1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(features)))


@register(FUSIONS, "gated")
class GatedFusion(nn.Module):
    """A gated multimodal unit: each modality is projected to a common width, and a gate computed
    from all of them decides, feature by feature, how much each modality contributes."""

    def __init__(self, input_dims: list[int], settings: ModelSettings) -> None:
        super().__init__()
        width = settings.temporal_hidden
        self.projections = nn.ModuleList(nn.Linear(dim, width) for dim in input_dims)
        self.gate = nn.Linear(sum(input_dims), width * len(input_dims))
        self.dropout = nn.Dropout(settings.dropout)
        self.classifier = nn.Linear(width, settings.num_classes)

    def features(self, features: list[torch.Tensor]) -> torch.Tensor:
        """The vector the classifier reads: the gated sum of the projected modalities."""
        projected = torch.stack([torch.tanh(p(f)) for p, f in zip(self.projections, features)], dim=1)
        gates = self.gate(torch.cat(features, dim=1)).view(projected.shape)
        weights = torch.softmax(gates, dim=1)  # (B, modalities, width): sums to 1 over modalities
        return (weights * projected).sum(dim=1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(features)))


@register(FUSIONS, "mlp")
class HiddenLayerFusion(nn.Module):
    """Concatenation, then one hidden layer (temporal_hidden wide, GELU) before the last layer: the
    small nonlinear head that frozen features call for where a corpus is large enough to fit it."""

    def __init__(self, input_dims: list[int], settings: ModelSettings) -> None:
        super().__init__()
        self.hidden = nn.Sequential(nn.Dropout(settings.dropout),
                                    nn.Linear(sum(input_dims), settings.temporal_hidden), nn.GELU())
        self.dropout = nn.Dropout(settings.dropout)
        self.classifier = nn.Linear(settings.temporal_hidden, settings.num_classes)

    def features(self, features: list[torch.Tensor]) -> torch.Tensor:
        """The vector a speaker (or corpus) normalisation standardises: what the head reads, the
        modalities' features side by side, on which its hidden layer is fitted again."""
        return torch.cat(features, dim=1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.dropout(self.hidden(self.features(features))))

    @torch.no_grad()
    def load_layer(self, layer: HiddenLayer) -> None:
        """Take the weights of a hidden-layer probe fitted on this head's inputs."""
        weight, bias = layer.folded()
        linear = self.hidden[1]
        for parameter, value in ((linear.weight, weight), (linear.bias, bias),
                                 (self.classifier.weight, layer.weight), (self.classifier.bias, layer.bias)):
            parameter.copy_(torch.as_tensor(value))


@register(FUSIONS, "svm")
class SupportVectorFusion(nn.Module):
    """Concatenation, then an RBF support-vector machine as the last layer: the frozen speech
    encoders' head, fitted in closed form by the probe (:mod:`avemotion.runtime.svm_probe`), never
    by gradient descent."""

    def __init__(self, input_dims: list[int], settings: ModelSettings) -> None:
        super().__init__()
        self.classifier = KernelClassifier(sum(input_dims), settings.num_classes)

    def features(self, features: list[torch.Tensor]) -> torch.Tensor:
        """The vector the classifier reads: the modalities' features side by side."""
        return torch.cat(features, dim=1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.features(features))


class KernelClassifier(nn.Module):
    """A :class:`~avemotion.runtime.svm_probe.KernelLayer` as a module: its arrays are buffers,
    sized by the layer it is given (or the checkpoint it loads), so that ONNX exports it. Unfitted,
    it has no support vectors and every logit is 0."""

    _SIZED = ("anchors", "coefficients")  # their first or second axis is the count of support vectors

    def __init__(self, width: int, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("scale", torch.ones(width))
        self.register_buffer("anchors", torch.zeros(0, width))
        self.register_buffer("coefficients", torch.zeros(num_classes, 0))
        self.register_buffer("bias", torch.zeros(num_classes))
        self.register_buffer("gamma", torch.tensor(1.0 / width))
        self.register_buffer("temperature", torch.tensor(1.0))
        self.register_buffer("C", torch.tensor(0.0))  # the penalty the probe chose: a record

    def load_layer(self, layer: KernelLayer) -> None:
        for name in ("mean", "scale", "anchors", "coefficients", "bias"):
            setattr(self, name, torch.from_numpy(getattr(layer, name)).clone())
        for name in ("gamma", "temperature", "C"):
            getattr(self, name).fill_(getattr(layer, name))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        for name in self._SIZED:  # take the saved machine's size before its values are copied
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        standardised = (features - self.mean) / self.scale
        squared = ((standardised ** 2).sum(dim=1, keepdim=True) - 2 * standardised @ self.anchors.T
                   + (self.anchors ** 2).sum(dim=1))
        kernel = torch.exp(-self.gamma * squared.clamp_min(0.0))
        return (kernel @ self.coefficients.T + self.bias) / self.temperature


class EmotionNet(nn.Module):
    """A late-fusion audio-visual emotion classifier (or one of its unimodal ablations).

    Its inputs and outputs travel by name: `forward` takes a mapping from input names (``frames``,
    ``mel``, ``waveform``) to batches, and the encoders' features are a mapping from branch names
    (``video``, ``audio``) to tensors; an ablation ignores the inputs it has no branch for."""

    def __init__(self, settings: ModelSettings, image_size: int = FRAME_SIZE,
                 weights: str | Path | None = None,
                 identities: dict[str, EncoderIdentity] | None = None,
                 architectures: dict[str, dict] | None = None) -> None:
        """`identities`: the external encoders' recorded identities by branch (a checkpoint's),
        whose weights are then loaded on first use and checked against them; `architectures`:
        the encoders' saved configurations by branch (a checkpoint's), built without the hub."""
        super().__init__()
        self.settings = settings
        weights = Path(weights) if weights is not None else None
        self.encoders = nn.ModuleDict()  # branch -> encoder, in the order the fusion takes them
        self.adapters = nn.ModuleDict()  # branch -> trainable layer after an encoder, where it has one
        self.temporal = None
        for branch, (encoder_name, backbone) in settings.branches().items():
            cls = _lookup(ENCODERS, "encoder", encoder_name)
            extra = {"identity": identities[branch]} if identities and branch in identities else {}
            if architectures and branch in architectures:
                extra["architecture"] = architectures[branch]
            encoder = cls(backbone, settings, image_size, weights, **extra)
            self.encoders[branch] = encoder
            if (adapter := encoder.adapter()) is not None:
                self.adapters[branch] = adapter
            if encoder.per_frame:
                self.temporal = _lookup(TEMPORAL_MODELS, "temporal model", settings.temporal)(encoder.dim, settings)
        fused = [self.temporal.dim if encoder.per_frame else encoder.dim for encoder in self.encoders.values()]
        self.head = _lookup(FUSIONS, "fusion", settings.fusion)(fused, settings)
        # Standardisation of the encoders' features before the temporal model and the head: the
        # identity unless the frozen-backbone mode sets it from the training clips' embeddings.
        for branch, encoder in self.encoders.items():
            self.register_buffer(f"{branch}_feature_mean", torch.zeros(encoder.embedding_shape))
            self.register_buffer(f"{branch}_feature_std", torch.ones(encoder.embedding_shape))

    def encoder_architectures(self) -> dict[str, dict]:
        """The encoders' configurations a checkpoint saves, by branch (where they have one)."""
        return {branch: architecture for branch, encoder in self.encoders.items()
                if (architecture := encoder.architecture()) is not None}

    def external_identities(self) -> dict[str, EncoderIdentity]:
        """The identities of the encoders that run outside the network, by branch."""
        return {branch: encoder.speech.encoder.identity if encoder.identity is None else encoder.identity
                for branch, encoder in self.encoders.items() if encoder.external}

    @property
    def trains_encoders(self) -> bool:
        """Whether any encoder has weights training can change (a speech encoder has none)."""
        return any(not encoder.external for encoder in self.encoders.values())

    @property
    def inputs(self) -> tuple[str, ...]:
        """The names of the inputs this model reads, one per encoder."""
        return model_inputs(self.settings)

    def embed(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each branch's encoder features, (B, T, D) per frame or (B, D) per clip: what the
        frozen-backbone mode caches."""
        return {branch: encoder(inputs[encoder.input]) for branch, encoder in self.encoders.items()}

    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) uint8 frames -> (B, D_v) clip features."""
        return self._branch_features("video", self.encoders["video"](frames))

    def encode_audio(self, voice: torch.Tensor) -> torch.Tensor:
        """The audio encoder's input (a spectrogram or a waveform) -> (B, D_a) clip features."""
        return self._branch_features("audio", self.encoders["audio"](voice))

    def _branch_features(self, branch: str, embedding: torch.Tensor) -> torch.Tensor:
        """A branch's standardised encoder features, through the temporal model if per frame."""
        mean, std = getattr(self, f"{branch}_feature_mean"), getattr(self, f"{branch}_feature_std")
        standardised = (embedding - mean) / std
        if branch in self.adapters:
            standardised = self.adapters[branch](standardised)
        return self.temporal(standardised) if self.encoders[branch].per_frame else standardised

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Emotion logits (B, num_classes) from the inputs by name."""
        return self.forward_embeddings(self.embed(inputs))

    def forward_embeddings(self, embeddings: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits from the encoders' features: the temporal model, fusion and head, the part
        trained when frozen."""
        return self.head(self._branches(embeddings))

    def clip_features(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, D): what speaker normalisation standardises: the vector the last layer reads (the
        hidden layer's inputs, for a head that has one)."""
        return self.clip_features_from_embeddings(self.embed(inputs))

    def clip_features_from_embeddings(self, embeddings: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, D) from the encoders' features, as :meth:`clip_features`."""
        return self.head.features(self._branches(embeddings))

    def head_inputs_from_embeddings(self, embeddings: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, D): the branches' features side by side, what the head reads and a probe is fitted on."""
        return torch.cat(self._branches(embeddings), dim=1)

    def _branches(self, embeddings: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Each branch's clip features, in the order the fusion takes them."""
        return [self._branch_features(branch, embeddings[branch]) for branch in self.encoders]

    def set_feature_standardisation(self, embeddings: dict[str, torch.Tensor]) -> None:
        """Standardise encoder features with the mean and spread of these training features."""
        for branch, features in embeddings.items():
            if features.numel() == 0:
                continue
            mean = getattr(self, f"{branch}_feature_mean")
            flat = features.reshape(-1, *mean.shape)  # over clips (and frames), per feature
            mean.copy_(flat.mean(dim=0))
            getattr(self, f"{branch}_feature_std").copy_(flat.std(dim=0).clamp_min(1e-6))

    def backbones(self) -> list[nn.Module]:
        """The encoders, for freezing them."""
        return list(self.encoders.values())


class ByName(nn.Module):
    """A model as a module of positional tensors, in `names`' order: what ONNX export traces (an
    ONNX model's inputs are named, but a traced call is positional). The names are the inputs of
    the encoders inside the network and, for an encoder that runs outside it, its branch's
    embedding (:func:`embedding_input`). Gives the logits, or with `features` the clip features."""

    def __init__(self, model: EmotionNet, names: tuple[str, ...], features: bool = False) -> None:
        super().__init__()
        self.model = model  # a submodule, so that tracing sees its weights as parameters
        self.names = names
        self.features = features

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        given = dict(zip(self.names, tensors))
        embeddings = {branch: given[embedding_input(branch)] if encoder.external else encoder(given[encoder.input])
                      for branch, encoder in self.model.encoders.items()}
        if self.features:
            return self.model.clip_features_from_embeddings(embeddings)
        return self.model.forward_embeddings(embeddings)


def judges_frames_alone(model: EmotionNet) -> bool:
    """Whether a model's logits for a clip are the mean of its frames' logits, each frame judged as a
    clip of one: frames alone, averaged over time, then standardisation, dropout and one linear
    layer (a still-face model), every step after the encoder linear in the frames' features. A
    timeline then judges each frame once, however many windows share it."""
    return (list(model.encoders) == ["video"] and isinstance(model.temporal, MeanPooling)
            and isinstance(model.head, ConcatFusion) and not model.adapters)


class FramesOneByOne(nn.Module):
    """A still model's frames each judged as a clip of one: (B, T, 3, H, W) -> (B, T, labels), whose
    mean over T is the clip's logits (:func:`judges_frames_alone`)."""

    def __init__(self, model: EmotionNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        batch, steps = frames.shape[:2]
        return self.model({FRAMES: frames.flatten(0, 1).unsqueeze(1)}).view(batch, steps, -1)


def network_inputs_of(model: EmotionNet) -> tuple[str, ...]:
    """The names of an exported network's inputs: each encoder's input, or for an encoder that
    runs outside the network, its branch's embedding."""
    return tuple(embedding_input(branch) if encoder.external else encoder.input
                 for branch, encoder in model.encoders.items())


def create_backbone(
    name: str, pretrained: bool, weights: Path | None, in_chans: int, **kwargs
) -> nn.Module:
    """A timm backbone without its classifier; ImageNet weights from timm's hub/cache or a local file
    (in timm's, torchvision's or efficientnet_pytorch's layout: backbone_weights.py)."""
    if not pretrained:
        return timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_chans, **kwargs)
    # a local file's weights are read, renamed and checked first, so that a file that does not fit
    # is named with what does not fit rather than the hub's help
    overlay = local_weights_overlay(name, _local_weights(name, weights)) if weights is not None else None
    try:
        return timm.create_model(name, pretrained=True, num_classes=0, in_chans=in_chans,
                                 pretrained_cfg_overlay=overlay, **kwargs)
    except Exception as error:  # the hub client raises many kinds; all mean the same to a user
        raise WeightsUnavailable(_weights_help(name, weights, error)) from error


WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def _local_weights(backbone: str, weights: Path) -> Path:
    """The weights file of a backbone: `weights` itself, or `<backbone>.<suffix>` inside a folder."""
    if weights.is_file():
        return weights
    candidates = [weights / f"{backbone}{suffix}" for suffix in WEIGHT_SUFFIXES]
    candidates += [weights / backbone / f"model{suffix}" for suffix in WEIGHT_SUFFIXES]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise WeightsUnavailable(
        f"no weights for {backbone} in {weights}: expected one of "
        + ", ".join(str(c.relative_to(weights)) for c in candidates[:2]) + ", …"
    )


def _weights_help(backbone: str, weights: Path | None, error: Exception) -> str:
    """The one-paragraph message shown when pretrained weights cannot be loaded."""
    source = f"from {weights}" if weights is not None else "from the Hugging Face hub or its cache"
    return (
        f"Could not load ImageNet weights for {backbone} {source} "
        f"({type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}). "
        "On a machine with internet access they download once into the hub cache "
        "(~/.cache/huggingface); offline, download them elsewhere (for example "
        f"`huggingface-cli download {_hub_name(backbone)}`) and pass the file or a folder "
        f"holding `{backbone}.safetensors` with --weights PATH, or train from scratch with "
        "--no-pretrained."
    )


def _hub_name(backbone: str) -> str:
    """timm's default hub repository for a backbone name."""
    try:
        return timm.models.get_pretrained_cfg(backbone).hf_hub_id or f"timm/{backbone}"
    except Exception:  # noqa: BLE001 - only for the help text
        return f"timm/{backbone}"


def parameter_count(module: nn.Module | None, trainable_only: bool = False) -> int:
    """Number of parameters of a module (0 for None)."""
    if module is None:
        return 0
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


MODEL_TABLE_COLUMNS = ("model", "video backbone", "temporal", "audio encoder", "fusion", "params", "inputs")


def model_table(features: FeatureSettings = FeatureSettings()) -> list[tuple[str, ...]]:
    """A row per registered model (MODEL_TABLE_COLUMNS): encoders, parameter count (a pretrained
    speech encoder's beside them, with where its weights come from), the inputs it reads. `avemotion
    models` prints it; the documentation's models page is made from it."""
    rows = []
    for name in list_models():
        settings = model_settings(name)
        inputs = " + ".join(describe_input(name, features) for name in model_inputs(settings))
        if settings.tuned_speech:  # its architecture comes with its weights: not fetched to list
            size = PUBLISHED_SIZES.get(("transformers", settings.audio_backbone))
            rows.append((name, "-", "-", settings.audio_backbone.split("/")[-1], "-",
                         f"~{size:g}M" if size else "?",
                         f"{inputs}  + fine-tuned, from --weights or the hub's {settings.audio_backbone!r}"))
            continue
        with torch.device("meta"):  # shapes without memory or initialisation: only counted
            model = create_model(name, image_size=features.frame_size, pretrained=False)
        temporal = settings.temporal if model.temporal is not None else "-"
        fusion = settings.fusion if len(model.encoders) > 1 or settings.fusion != "concat" else "-"
        # not .get(): a ModuleDict has none
        audio = model.encoders["audio"] if "audio" in model.encoders else None  # noqa: SIM401
        audio = "-" if audio is None else audio.short_name if audio.external else settings.audio_backbone
        rows.append((
            name, settings.video_backbone or "-", temporal, audio, fusion, _count(parameter_count(model)),
            inputs + (" (an image: 1 frame)" if settings.still_image else "")
            + "".join(f"  + {encoder.provenance()}" for encoder in model.encoders.values() if encoder.external)))
    return rows


def describe_models(features: FeatureSettings = FeatureSettings()) -> str:
    """`avemotion models`' table of every registered model, in aligned columns."""
    rows = [MODEL_TABLE_COLUMNS, *model_table(features)]
    name_width = max(len(row[0]) for row in rows) + 2  # a registered model's name may be any length
    return "\n".join(_row(name_width, *row) for row in rows)


def _row(name_width: int, name: str, video: str, temporal: str, audio: str, fusion: str, params: str,
         inputs: str) -> str:
    """One line of `avemotion models`' table."""
    return f"{name:<{name_width}}{video:<22}{temporal:<11}{audio:<19}{fusion:<8}{params:>9}  {inputs}"


def _count(parameters: int) -> str:
    """A parameter count in millions, or thousands below a tenth of a million."""
    return f"{parameters / 1e6:.2f}M" if parameters >= 100_000 else f"{parameters / 1e3:.1f}k"


def describe_input(name: str, features: FeatureSettings) -> str:
    """An input's name and batch shape, as `avemotion models` lists it."""
    from avemotion.media.inputs import INPUT_DTYPES, input_shape

    shape = ", ".join(map(str, ("B", *input_shape(name, features))))
    return f"{name} ({shape}) {'dB' if name == MEL else INPUT_DTYPES[name].__name__}"
