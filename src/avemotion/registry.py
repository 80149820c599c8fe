"""The registered models by name: their settings only, so listing them needs no deep-learning import."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ModelSettings:
    """Everything needed to rebuild a model's architecture; saved in every checkpoint."""

    name: str  # registered name
    video_backbone: str | None  # timm name of the per-frame image backbone; None: no video branch
    audio_backbone: str | None  # timm name of the spectrogram backbone; None: no audio branch
    lstm_hidden: int = 256  # LSTM hidden size over the frame features
    lstm_layers: int = 1  # stacked LSTM layers
    bidirectional: bool = False  # LSTM reads the frames both ways
    dropout: float = 0.5  # dropout on the fused features, before the classifier
    num_classes: int = 6  # emotions
    image_size: int = 224  # frame side the video backbone expects, pixels
    pretrained: bool = True  # start from ImageNet weights (see load_pretrained)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The inputs this model reads: ('video', 'audio'), ('video',) or ('audio',)."""
        present = (("video", self.video_backbone), ("audio", self.audio_backbone))
        return tuple(name for name, backbone in present if backbone is not None)


_HYBRIDS = {
    # the paper's Hybrid 1: ViT-Tiny on frames, ResNet-18 on the spectrogram
    "resnet18_vit_lstm": ("vit_tiny_patch16_224", "resnet18"),
    # the paper's Hybrid 2: EfficientNet-B0 on both
    "effnet_lstm": ("efficientnet_b0", "efficientnet_b0"),
}


def _registry() -> dict[str, ModelSettings]:
    """Each hybrid and its audio-only and video-only ablations, sharing the same branch code."""
    models = {}
    for name, (video, audio) in _HYBRIDS.items():
        fused, audio_only, video_only = with_ablations(name)
        models[fused] = ModelSettings(fused, video, audio)
        models[audio_only] = ModelSettings(audio_only, None, audio)
        models[video_only] = ModelSettings(video_only, video, None)
    return models


def with_ablations(hybrid: str) -> tuple[str, str, str]:
    """A hybrid's name, then its audio-only and video-only ablations' names."""
    return hybrid, f"{hybrid}_audio_only", f"{hybrid}_video_only"


MODELS = _registry()


def list_models() -> list[str]:
    """The registered model names (the CLI's --model choices)."""
    return list(MODELS)


def model_settings(name: str, **overrides) -> ModelSettings:
    """A registered model's settings with some fields changed (lstm_hidden=128, pretrained=False…)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return replace(MODELS[name], **overrides)
