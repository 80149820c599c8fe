"""The registered models by name: their settings only, so listing them needs no deep-learning import.

A model is a video encoder (by default a timm image backbone on each frame), a temporal model over
its frame features, an audio encoder (by default a timm image backbone on the log-Mel spectrogram)
and a fusion of the two branches; the encoders are named in :data:`avemotion.training.models.ENCODERS`. The
paper's two hybrids are registered with their unimodal ablations, and beside them one alternative
temporal model and one alternative fusion that the field uses, so that each can be compared with the
paper's choice on the same data. Pretrained speech encoders (Whisper, WavLM, HuBERT, wav2vec 2.0)
are registered as audio-only models, frozen, under an RBF support-vector machine
(``whisper_base_audio_only`` …) or a linear layer (``whisper_base_linear_audio_only`` …), and as the audio
branch of the paper's video branches (``vit_lstm_whisper_base`` …); the transformers ones also
inside the network, fine-tuned (``wavlm_base_plus_tuned_audio_only`` …). Still-face models
(``resnet18_face`` …) are the paper's frame encoders on one face image, trained from scratch on a
face corpus; the pretrained ones (``mobilenetv2_face`` …) start from ImageNet weights.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from avemotion.errors import UsageError
from avemotion.settings import setting


@dataclass(frozen=True)
class ModelSettings:
    """Everything needed to rebuild a model's architecture; saved in every checkpoint.

    The frame size is not here: it is a feature setting, and the model is built for the frames
    its features have."""

    name: str  # registered name
    video_backbone: str | None  # the video encoder's backbone (a timm name), if it has one
    audio_backbone: str | None  # the audio encoder's backbone: a timm name, or a speech encoder's name
    temporal: str = "lstm"  # how frame features become clip features: a name in models.TEMPORAL_MODELS
    fusion: str = "concat"  # how the branches' features are joined: a name in models.FUSIONS
    video_encoder: str | None = "timm_frames"  # a name in models.ENCODERS; None: no video branch
    audio_encoder: str | None = "timm_spectrogram"  # a name in models.ENCODERS; None: no audio branch
    temporal_hidden: int = setting(256, "width of the temporal model's clip features (LSTM hidden size)")
    lstm_layers: int = 1  # stacked LSTM layers (LSTM only)
    bidirectional: bool = False  # the LSTM reads the frames both ways (LSTM only)
    dropout: float = 0.5  # dropout on the fused features, before the classifier
    num_classes: int = 6  # emotions
    pretrained: bool = setting(True, "start the image backbones from ImageNet weights (hub, cache or "
                               "--weights); a speech encoder always runs with its pretrained weights")
    speech_pooling: str = setting("meanstd", "how a fine-tuned speech encoder's frames become the clip's "
                                  "features: meanstd (their mean and standard deviation) or attentive "
                                  "(attentive statistics pooling: learned weights over the frames)")
    # The spectrogram backbone's stem downsamples by a 3 x 3 max pooling after its convolution
    # instead of by that convolution's stride, as a ResNet's stem does (an EfficientNet's; the
    # from-scratch recipe sets it, see config.FROM_SCRATCH_EFFICIENTNET).
    stem_max_pool: bool = False
    # A speech encoder of several layers: "weighted", a learned softmax weight per layer (a probe in
    # closed form keeps them equal: the layers' average); "side_by_side", every layer's features
    # concatenated for the head to weigh (an SVM's always are).
    speech_layers: str = "weighted"

    def branches(self) -> dict[str, tuple[str, str | None]]:
        """Each branch the model has ('video', 'audio'), with its encoder's name and backbone."""
        present = {"video": (self.video_encoder, self.video_backbone),
                   "audio": (self.audio_encoder, self.audio_backbone)}
        return {branch: pair for branch, pair in present.items() if pair[0] is not None}

    @property
    def speech_encoder(self) -> bool:
        """Whether the audio branch is a pretrained speech encoder, frozen (avemotion.media.speech)
        or fine-tuned."""
        return self.audio_encoder in SPEECH_FAMILIES or self.tuned_speech

    @property
    def tuned_speech(self) -> bool:
        """Whether the audio branch is a pretrained speech encoder inside the network, fine-tuned with it."""
        return self.audio_encoder == TUNED_SPEECH_ENCODER

    @property
    def frozen_speech(self) -> bool:
        """Whether the model's only encoder is a pretrained speech encoder (nothing to fine-tune)."""
        return self.video_encoder is None and self.audio_encoder in SPEECH_FAMILIES

    @property
    def still_image(self) -> bool:
        """Whether this is a still-image model: a frame encoder whose frames are averaged, no voice."""
        return self.audio_encoder is None and self.temporal == "mean"

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities this model reads: ('video', 'audio'), ('video',) or ('audio',)."""
        return tuple(self.branches())


# The paper's hybrids by family: (per-frame video backbone, spectrogram backbone)
_FAMILIES = {
    "resnet18_vit": ("vit_tiny_patch16_224", "resnet18"),  # Hybrid 1: ViT-Tiny frames, ResNet-18 audio
    "effnet": ("efficientnet_b0", "efficientnet_b0"),  # Hybrid 2: EfficientNet-B0 on both
}
SPEECH_FAMILIES = ("whisper", "transformers")  # the encoders of avemotion.media.speech, in models.ENCODERS
TUNED_SPEECH_ENCODER = "transformers_tuned"  # a transformers encoder inside the network, fine-tuned
SPEECH_POOLINGS = ("meanstd", "attentive")
# Pretrained speech encoders as the audio branch (avemotion.media.speech), frozen: by registered short
# name, the encoder family and the name its library knows it by (faster-whisper's, or the hub's).
SPEECH_ENCODERS = {
    "whisper_tiny": ("whisper", "tiny"),
    "whisper_base": ("whisper", "base"),
    "whisper_small": ("whisper", "small"),
    "wavlm_base_plus": ("transformers", "microsoft/wavlm-base-plus"),
    "hubert_base": ("transformers", "facebook/hubert-base-ls960"),
    "wav2vec2_base": ("transformers", "facebook/wav2vec2-base"),
    # Whisper base's every layer through transformers (CTranslate2 gives its last layer only)
    "whisper_base_layers": ("transformers", "openai/whisper-base"),
}
# Encoders whose every layer a head reads side by side (the ready model's voice: 0.745 side by side on
# CREMA-D against 0.729 averaged); the others' layers are weighed (SUPERB's weighted sum).
SPEECH_LAYERS = {"whisper_base_layers": "side_by_side"}
# The paper's video branches beside a speech encoder: (fused model's prefix, frame backbone)
_SPEECH_HYBRID_VIDEO = {"vit_lstm": "vit_tiny_patch16_224", "effnet_lstm": "efficientnet_b0",
                        "mobilenetv2_lstm": "mobilenetv2_100"}
# The paper's video branch on a pretrained face model's frame encoder (--init-from mobilenetv2_face's
# checkpoint), alone: (model name, frame backbone)
_FACE_VIDEO_BRANCHES = {"mobilenetv2_lstm_video_only": "mobilenetv2_100"}
# beside the frames: Whisper base's last layer, WavLM's every layer, and Whisper base's every layer
# (the ready model's voice features: mobilenetv2_lstm_whisper_base_layers --init-from avemotion-base-1)
_SPEECH_HYBRID_ENCODERS = ("whisper_base", "wavlm_base_plus", "whisper_base_layers")
# Encoders also registered under a one-hidden-layer head (whisper_base_layers: the ready model's voice)
_SPEECH_HIDDEN_LAYER_HEADS = ("whisper_base", "wavlm_base_plus", "whisper_base_layers")
_TUNED_SPEECH_ENCODERS = ("wavlm_base_plus", "hubert_base", "wav2vec2_base")  # fine-tuned (a GPU's job)
# Still-face models: the frame encoders of the paper's video branches on one image, with a head,
# trained from scratch on a face corpus (FER2013) and a start for any video branch (--init-from).
FACE_BACKBONES = {"resnet18_face": "resnet18", "vit_tiny_face": "vit_tiny_patch16_224",
                  "efficientnet_b0_face": "efficientnet_b0"}
# Still-face models that start from ImageNet weights (the hub, or --weights in timm's, torchvision's or
# efficientnet_pytorch's layout) and are fine-tuned on a face corpus (config.PRETRAINED_STILL_IMAGE),
# as the others do with --pretrained. EfficientNet-Lite0's published weights were trained with
# TensorFlow's "same" padding: timm's tf_ variant.
PRETRAINED_FACE_BACKBONES = {"mobilenetv2_face": "mobilenetv2_100", "efficientnet_lite0_face": "tf_efficientnet_lite0"}
# The settings a user may change without changing which registered model it is.
TUNABLE_FIELDS = ("temporal_hidden", "lstm_layers", "bidirectional", "dropout", "pretrained", "speech_pooling",
                  "stem_max_pool")


def _registry() -> dict[str, ModelSettings]:
    """Each hybrid, its ablations, and its attention-pooling and gated-fusion alternatives."""
    models = {}
    for family, (video, audio) in _FAMILIES.items():
        hybrid = f"{family}_lstm"
        fused, audio_only, video_only = with_ablations(hybrid)
        models[fused] = ModelSettings(fused, video, audio)
        models[audio_only] = ModelSettings(audio_only, None, audio, video_encoder=None)
        models[video_only] = ModelSettings(video_only, video, None, audio_encoder=None)
        attention, gated = alternatives(hybrid)
        # attention pooling over the frames instead of the LSTM's last hidden state
        models[attention] = ModelSettings(attention, video, audio, temporal="attention")
        # a learned gate weighing the two modalities instead of plain concatenation
        models[gated] = ModelSettings(gated, video, audio, fusion="gated")
    for short, (encoder, name) in SPEECH_ENCODERS.items():
        # frozen, under an RBF support-vector machine fitted in closed form; `_linear_`: the linear probe
        for head, fusion in (("", "svm"), ("_linear", "concat")):
            models[f"{short}{head}_audio_only"] = ModelSettings(f"{short}{head}_audio_only", None, name,
                                                                fusion=fusion, video_encoder=None,
                                                                audio_encoder=encoder,
                                                                speech_layers=SPEECH_LAYERS.get(short, "weighted"))
    for short in _SPEECH_HIDDEN_LAYER_HEADS:  # the same encoder under a one-hidden-layer head
        encoder, name = SPEECH_ENCODERS[short]
        models[f"{short}_mlp_audio_only"] = ModelSettings(f"{short}_mlp_audio_only", None, name, fusion="mlp",
                                                          video_encoder=None, audio_encoder=encoder,
                                                          speech_layers=SPEECH_LAYERS.get(short, "weighted"))
    for short in _TUNED_SPEECH_ENCODERS:  # the encoder inside the network, fine-tuned with the head
        name = f"{short}_tuned_audio_only"
        models[name] = ModelSettings(name, None, SPEECH_ENCODERS[short][1], video_encoder=None,
                                     audio_encoder=TUNED_SPEECH_ENCODER)
    for name, video in _FACE_VIDEO_BRANCHES.items():
        models[name] = ModelSettings(name, video, None, audio_encoder=None)
    for prefix, video in _SPEECH_HYBRID_VIDEO.items():
        for short in _SPEECH_HYBRID_ENCODERS:
            encoder, name = SPEECH_ENCODERS[short]
            models[f"{prefix}_{short}"] = ModelSettings(f"{prefix}_{short}", video, name, audio_encoder=encoder)
    for faces, pretrained in ((FACE_BACKBONES, False), (PRETRAINED_FACE_BACKBONES, True)):
        for name, backbone in faces.items():
            models[name] = ModelSettings(name, backbone, None, temporal="mean", audio_encoder=None,
                                         dropout=0.0, pretrained=pretrained)
    return models


def alternatives(hybrid: str) -> tuple[str, str]:
    """A hybrid's attention-pooling and gated-fusion alternatives' names."""
    family = hybrid.removesuffix("_lstm")
    return f"{family}_attnpool", f"{hybrid}_gated"


def with_ablations(hybrid: str) -> tuple[str, str, str]:
    """A hybrid's name, then its audio-only and video-only ablations' names."""
    return hybrid, f"{hybrid}_audio_only", f"{hybrid}_video_only"


MODELS = _registry()


def register_model(settings: ModelSettings) -> ModelSettings:
    """Make a model available under its name (a new encoder's model, say), beside the paper's."""
    MODELS[settings.name] = settings
    return settings


def list_models() -> list[str]:
    """The registered model names (the CLI's --model choices)."""
    return list(MODELS)


def hybrids() -> list[str]:
    """The paper's hybrids, the registered models that have audio-only and video-only ablations."""
    return [name for name in MODELS if all(ablation in MODELS for ablation in with_ablations(name))]


def model_settings(name: str, **overrides) -> ModelSettings:
    """A registered model's settings with some fields changed (temporal_hidden=128, pretrained=False…)."""
    if name not in MODELS:
        raise UsageError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return replace(MODELS[name], **overrides)


def same_tuning(settings: ModelSettings, name: str) -> ModelSettings:
    """Another registered model with the tunable settings (hidden size, pretrained…) of these."""
    return model_settings(name, **{field: getattr(settings, field) for field in TUNABLE_FIELDS})
