from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import timm
import torch

from avemotion.cli import main
from avemotion.datasets.cremad import EMOTIONS
from avemotion.errors import UsageError
from avemotion.media.features import FeatureSettings
from avemotion.registry import alternatives, hybrids, model_settings, with_ablations
from avemotion.runtime.linear_probe import LinearLayer
from avemotion.runtime.speakers import SpeakerNormalisation
from avemotion.training.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from avemotion.training.models import FUSIONS, TEMPORAL_MODELS, create_model, list_models, parameter_count

from conftest import TEST_IMAGE_SIZE

# the models of timm backbones (those of pretrained speech encoders need weights: test_speech.py)
MODELS = [name for name in list_models() if not model_settings(name).speech_encoder]
# Published sizes of the backbones without their classifiers (ResNet-18 with one input channel).
BACKBONE_PARAMETERS = {"resnet18": 11.17e6, "vit_tiny_patch16_224": 5.52e6, "efficientnet_b0": 4.01e6,
                       "mobilenetv2_100": 2.22e6, "tf_efficientnet_lite0": 3.37e6}
FEATURE_DIMS = {"resnet18": 512, "vit_tiny_patch16_224": 192, "efficientnet_b0": 1280, "mobilenetv2_100": 1280,
                "tf_efficientnet_lite0": 1280}


def small_model(name: str, **overrides):
    torch.manual_seed(0)
    return create_model(name, pretrained=False, image_size=TEST_IMAGE_SIZE, **overrides)


def test_every_hybrid_has_its_ablations_and_alternatives():
    assert {"resnet18_vit_lstm", "effnet_lstm"} <= set(hybrids())  # the paper's two
    for hybrid in hybrids():
        fused, audio_only, video_only = (model_settings(name) for name in with_ablations(hybrid))
        assert fused.modalities == ("video", "audio")
        assert audio_only.modalities == ("audio",) and audio_only.audio_backbone == fused.audio_backbone
        assert video_only.modalities == ("video",) and video_only.video_backbone == fused.video_backbone
        attention, gated = (model_settings(name) for name in alternatives(hybrid))
        assert (attention.temporal, gated.fusion) == ("attention", "gated")
    with pytest.raises(ValueError, match="unknown model 'resnet50'.*effnet_lstm"):
        create_model("resnet50", pretrained=False)


def test_temporal_models_and_fusions_are_looked_up_by_name():
    model = small_model("resnet18_vit_attnpool", fusion="gated")
    assert isinstance(model.temporal, TEMPORAL_MODELS["attention"])
    assert isinstance(model.head, FUSIONS["gated"])
    with pytest.raises(ValueError, match="unknown temporal model 'gru'; choose one of lstm, attention"):
        small_model("effnet_lstm", temporal="gru")
    with pytest.raises(ValueError, match="unknown fusion 'sum'"):
        small_model("effnet_lstm", fusion="sum")


def test_the_hidden_layer_head_gives_a_normalisation_what_it_reads(sample_batch):
    inputs, _ = sample_batch
    model = small_model("effnet_lstm_audio_only", fusion="mlp", temporal_hidden=32)
    assert isinstance(model.head, FUSIONS["mlp"]) and model.head.classifier.in_features == 32
    model.eval()
    with torch.no_grad():
        features = model.clip_features(inputs)  # what a speaker (or corpus) normalisation standardises
        assert features.shape == (6, model.head.hidden[1].in_features)
        activations = model.head.hidden(features)
        assert activations.shape == (6, 32) and (activations > -0.2).all()  # GELU activations
        assert torch.allclose(model.head.classifier(activations), model(inputs), atol=1e-5)


def test_attention_pooling_weighs_frames_and_ignores_their_order(sample_batch):
    frames = sample_batch[0]["frames"]
    model = small_model("resnet18_vit_attnpool").eval()
    with torch.no_grad():
        reference = model.encode_video(frames)
        assert torch.allclose(model.encode_video(frames.flip(1)), reference, atol=1e-5)
        lstm = small_model("resnet18_vit_lstm").eval()
        assert not torch.allclose(lstm.encode_video(frames.flip(1)), lstm.encode_video(frames), atol=1e-5)


def test_vit_input_size_comes_from_timm_configuration():
    small = create_model("resnet18_vit_lstm_video_only", image_size=32, pretrained=False)
    assert small.encoders["video"].backbone.patch_embed.img_size == (32, 32)
    with torch.no_grad():
        assert small.encode_video(torch.zeros(1, 8, 3, 32, 32, dtype=torch.uint8)).shape == (1, 256)


# the paper's two hybrids in the inner loop; their ablations and alternatives in the full run
@pytest.mark.parametrize("name", [name if name in hybrids() else pytest.param(name, marks=pytest.mark.slow)
                                  for name in MODELS])
def test_forward_and_backward_on_real_clips(name, sample_batch):
    inputs, targets = sample_batch
    model = small_model(name).train()
    logits = model(inputs)
    assert logits.shape == (6, len(EMOTIONS))
    assert torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, targets).backward()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None, parameter_name
        assert torch.isfinite(parameter.grad).all(), parameter_name
    # timm zero-initialises the last norm of each residual block, which blocks the gradient of
    # that block's other layers until a first update; after it, every tensor must learn
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(inputs), targets).backward()
    silent = [n for n, p in model.named_parameters() if not p.grad.abs().sum() > 0]
    assert silent == []


@pytest.mark.parametrize("name", MODELS)
def test_backbones_have_their_published_sizes(name):
    model = create_model(name, pretrained=False)
    backbones = {"video": model.settings.video_backbone, "audio": model.settings.audio_backbone}
    for branch, encoder in model.encoders.items():
        published = BACKBONE_PARAMETERS[backbones[branch]]
        assert abs(parameter_count(encoder) - published) / published < 0.02, branch
        assert encoder.dim == FEATURE_DIMS[backbones[branch]]


def test_frame_normalisation_comes_from_the_backbone_configuration():
    model = small_model("resnet18_vit_lstm_video_only")
    config = timm.data.resolve_data_config({}, model=model.encoders["video"].backbone)
    assert model.encoders["video"].mean.flatten().tolist() == pytest.approx(config["mean"])
    assert model.encoders["video"].std.flatten().tolist() == pytest.approx(config["std"])


@pytest.mark.parametrize("name", ["resnet18_vit_lstm", "effnet_lstm"])
def test_encoders_give_clip_features(name, sample_batch):
    frames, mel = sample_batch[0]["frames"], sample_batch[0]["mel"]
    model = small_model(name).eval()
    with torch.no_grad():
        assert model.encode_video(frames).shape == (6, 256)
        assert model.encode_audio(mel).shape == (6, FEATURE_DIMS[model.settings.audio_backbone])


@pytest.mark.parametrize("name", [m for m in MODELS if m.endswith("_only")])
def test_ablations_ignore_the_other_input(name, sample_batch):
    frames, mel = sample_batch[0]["frames"], sample_batch[0]["mel"]
    model = small_model(name).eval()
    with torch.no_grad():
        reference = model({"frames": frames, "mel": mel})
        if name.endswith("audio_only"):
            assert model.inputs == ("mel",)
            other = model({"frames": torch.zeros_like(frames), "mel": mel})
            assert torch.equal(model({"mel": mel}), reference)
        else:
            assert model.inputs == ("frames",)
            other = model({"frames": frames, "mel": torch.full_like(mel, -80.0)})
            assert torch.equal(model({"frames": frames}), reference)
    assert torch.equal(reference, other)


# every temporal model, fusion and branch layout once: the paper's hybrid (LSTM, concatenation),
# attention pooling, the gated fusion, each ablation, a still-face model (mean over frames)
ROUND_TRIP_MODELS = ["resnet18_vit_lstm", "effnet_attnpool", "resnet18_vit_lstm_gated", "effnet_lstm_audio_only",
                     "effnet_lstm_video_only", "resnet18_face"]


@pytest.mark.parametrize("name", ROUND_TRIP_MODELS)
def test_checkpoint_round_trip_gives_identical_logits(name, sample_batch, tmp_path):
    inputs = sample_batch[0]
    model = small_model(name, temporal_hidden=64).eval()
    features = FeatureSettings(frame_size=TEST_IMAGE_SIZE)
    save_checkpoint(tmp_path / "m.ckpt", model, Checkpoint.of(model, features, EMOTIONS, epoch=3, best_metric=0.5))
    loaded, info = load_checkpoint(tmp_path / "m.ckpt")
    assert (info.epoch, info.best_metric, info.labels) == (3, 0.5, list(EMOTIONS))
    assert info.feature_settings == features and info.model_settings.name == name
    assert info.model_settings.temporal_hidden == 64 and info.inputs == model.inputs
    with torch.no_grad():
        assert torch.equal(model(inputs), loaded(inputs))


def test_a_max_pooled_stem_keeps_the_efficientnets_weights_and_survives_checkpoint_and_export(
        sample_batch, tmp_path):
    """The from-scratch recipe's EfficientNet on the spectrogram: its stem downsamples by max pooling."""
    import onnxruntime

    from avemotion.training.export import export_onnx

    mel = sample_batch[0]["mel"]
    plain, pooled = small_model("effnet_lstm_audio_only"), small_model("effnet_lstm_audio_only", stem_max_pool=True)
    stem = pooled.encoders["audio"].backbone.conv_stem
    assert stem.stride == (1, 1) and isinstance(pooled.encoders["audio"].backbone.bn1[1], torch.nn.MaxPool2d)
    assert torch.equal(stem.weight, plain.encoders["audio"].backbone.conv_stem.weight)  # the same weights
    assert parameter_count(pooled) == parameter_count(plain)
    standardised = (mel.float() + 45.0) / 18.0
    with torch.no_grad():
        maps = [model.encoders["audio"].backbone.forward_features(standardised) for model in (plain, pooled)]
        assert maps[0].shape == maps[1].shape == (6, 1280, 2, 4)  # the same resolutions after the stem
        assert not torch.allclose(maps[0], maps[1])  # but another stem
    save_checkpoint(tmp_path / "m.ckpt", pooled.eval(),
                    Checkpoint.of(pooled, FeatureSettings(), EMOTIONS, epoch=1, best_metric=0.5))
    loaded, info = load_checkpoint(tmp_path / "m.ckpt")
    assert info.model_settings.stem_max_pool
    with torch.no_grad():
        expected = pooled({"mel": mel})
        assert torch.equal(loaded({"mel": mel}), expected)
    session = onnxruntime.InferenceSession(str(export_onnx(tmp_path / "m.ckpt", tmp_path / "m.onnx")))
    (logits,) = session.run(["logits"], {"mel": mel.float().numpy()})
    assert np.allclose(logits, expected.numpy(), atol=1e-4)


def test_only_a_backbone_with_a_strided_stem_convolution_takes_a_max_pooled_stem():
    with pytest.raises(UsageError, match="resnet18: stem_max_pool is for backbones whose stem is a stride-2"):
        small_model("resnet18_vit_lstm_audio_only", stem_max_pool=True)


def test_the_speaker_normalisation_is_kept_apart_from_the_network_and_version_3_still_loads(tmp_path):
    model = small_model("effnet_lstm_audio_only").eval()
    width = model.head.classifier.in_features
    generator = np.random.default_rng(0)
    head = LinearLayer(generator.normal(size=(len(EMOTIONS), width)).astype(np.float32),
                       generator.normal(size=len(EMOTIONS)).astype(np.float32))
    save_checkpoint(tmp_path / "m.ckpt", model, Checkpoint.of(model, FeatureSettings(), EMOTIONS,
                                                              SpeakerNormalisation(head)))
    payload = torch.load(tmp_path / "m.ckpt", weights_only=True)
    assert not any(key.startswith("speaker_head") for key in payload["state_dict"])
    # version 3 kept the head among the network's weights
    payload["version"] = 3
    payload["state_dict"].update({f"speaker_head.{name}": payload["speaker_head"][name] for name in ("weight", "bias")})
    del payload["speaker_head"]
    torch.save(payload, tmp_path / "v3.ckpt")
    features = generator.normal(size=(5, width)).astype(np.float32)
    for path in (tmp_path / "m.ckpt", tmp_path / "v3.ckpt"):
        _, info = load_checkpoint(path)
        assert info.speaker_norm and np.array_equal(info.speaker_normalisation.head.weight, head.weight)
        assert np.allclose(info.speaker_normalisation.probabilities(features),
                           SpeakerNormalisation(head).probabilities(features))
    del payload["state_dict"]["speaker_head.weight"]  # a speaker-normalised model without its head
    torch.save(payload, tmp_path / "headless.ckpt")
    with pytest.raises(CheckpointError, match="speaker head"):
        load_checkpoint(tmp_path / "headless.ckpt")


def test_damaged_or_foreign_checkpoints_give_clear_errors(tmp_path):
    (tmp_path / "garbage.ckpt").write_bytes(b"\x00not a checkpoint" * 50)
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    model = small_model("effnet_lstm_audio_only")
    save_checkpoint(tmp_path / "future.ckpt", model,
                    Checkpoint.of(model, FeatureSettings(), EMOTIONS, epoch=1))
    payload = torch.load(tmp_path / "future.ckpt", weights_only=True)
    payload["version"] = 99
    torch.save(payload, tmp_path / "future.ckpt")
    expectations = {"garbage": "not a readable checkpoint", "foreign": "not an avemotion checkpoint",
                    "future": "format version 99", "absent": "no such checkpoint"}
    for stem, words in expectations.items():
        with pytest.raises(CheckpointError, match=words) as error:
            load_checkpoint(tmp_path / f"{stem}.ckpt")
        assert f"{stem}.ckpt" in str(error.value)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18_vit_lstm", "effnet_lstm"])
def test_hybrid_overfits_the_six_real_clips(name, sample_batch):
    inputs, targets = sample_batch
    model = small_model(name).train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    correct = []
    for _ in range(60):
        logits = model(inputs)  # training accuracy, read from the training pass itself
        correct.append(int((logits.argmax(1) == targets).sum()))
        if correct[-2:] == [6, 6]:
            break
        loss = torch.nn.functional.cross_entropy(logits, targets)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert correct[-2:] == [6, 6], correct
    assert correct[0] < 6


def test_local_weights_file_and_folder_are_loaded(tmp_path):
    torch.manual_seed(1)
    imagenet_like = timm.create_model("resnet18", pretrained=False)  # 1000-class, 3-channel
    torch.save(imagenet_like.state_dict(), tmp_path / "resnet18.pth")
    model = create_model("resnet18_vit_lstm_audio_only", weights=tmp_path, pretrained=True)
    loaded = model.encoders["audio"].backbone.state_dict()
    source = imagenet_like.state_dict()
    assert torch.equal(loaded["layer4.1.conv2.weight"], source["layer4.1.conv2.weight"])
    # the three-channel first convolution is folded into the one-channel input
    assert torch.allclose(loaded["conv1.weight"], source["conv1.weight"].sum(dim=1, keepdim=True))


@pytest.mark.slow
def test_missing_pretrained_weights_fail_with_one_paragraph(tmp_path):
    code = ("from avemotion.training.models import create_model, WeightsUnavailable\n"
            "try:\n    create_model('effnet_lstm', pretrained=True)\n"
            "except WeightsUnavailable as error:\n    print('MESSAGE', error)\n")
    # offline, with empty caches: a machine whose caches already hold the weights must fail too
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
                   "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"), "TORCH_HOME": str(tmp_path / "torch")}
    completed = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                               env=environment, timeout=120)
    message = completed.stdout
    assert message.startswith("MESSAGE Could not load ImageNet weights for efficientnet_b0")
    assert "--no-pretrained" in message and "--weights PATH" in message
    assert message.count("\n") == 1


def test_models_command_lists_every_model(capsys):
    assert main(["models", "--frame-size", "64"]) == 0
    output = capsys.readouterr().out
    ready, table = output.split("\nmodel ", 1)  # the ready models first, then the registered ones' table
    assert "avemotion-base-1" in ready and "CC BY-NC-SA 4.0" in ready
    rows = table.strip().splitlines()[1:]
    assert [row.split()[0] for row in rows] == list_models()
    assert all(float(columns_of(rows, name).split()[5][:-1]) > 2 for name in MODELS)  # millions (MobileNetV2: 2.2)
    whisper = columns_of(rows, "whisper_base_audio_only")
    assert "whisper-base" in whisper and "waveform (B, 96000) float16" in whisper
    assert "74 M parameters" in whisper and "'base'" in whisper  # where its weights come from
    assert "frames (B, 8, 3, 64, 64) uint8" in columns_of(rows, "effnet_lstm")
    assert "mel (B, 1, 64, 128) dB" in columns_of(rows, "effnet_lstm_audio_only")
    assert "frames" not in columns_of(rows, "effnet_lstm_audio_only")
    columns = {row.split()[0]: row.split()[1:5] for row in rows}
    assert columns["effnet_attnpool"] == ["efficientnet_b0", "attention", "efficientnet_b0", "concat"]
    assert columns["resnet18_vit_lstm_gated"] == ["vit_tiny_patch16_224", "lstm", "resnet18", "gated"]
    assert columns["effnet_lstm_audio_only"] == ["-", "-", "efficientnet_b0", "-"]


def columns_of(rows: list[str], name: str) -> str:
    return next(row for row in rows if row.split()[0] == name)
