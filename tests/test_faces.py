"""Still faces: image corpora (FER2013's layout, a folder per label, a manifest), the table's own
split, one-frame image features, still-face models trained from scratch and judging images and
videos, and their frame encoder starting the video branch of other models (--init-from).

The face corpus here is made of real faces: frames of the six bundled CREMA-D clips, cropped to
the face, grayscale and 48 px, laid out as FER2013 is (part folder / label folder / image)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from avemotion.config import TrainSettings, still_image
from avemotion.datasets import fer2013
from avemotion.datasets.index import index_dataset, write_metadata
from avemotion.datasets.splits import SplitError, given_split, make_split
from avemotion.errors import UsageError
from avemotion.media.features import MediaError, crop_faces, extract_features, read_image, sample_frames
from avemotion.media.inputs import FRAMES, FeatureSettings
from avemotion.registry import model_settings
from avemotion.samples import sample_videos

from conftest import make_tree

FACE_SIZE = 32  # the tests' frame size (a ViT-Tiny reads 2x2 patches: fast on two cores)
# CREMA-D's codes -> FER2013's label folders
FER_FOLDERS = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
# each clip's frames: four for training, one for validation, one for testing
PARTS = [("train", "Training")] * 4 + [("validation", "PublicTest"), ("test", "PrivateTest")]


def first_frame(video) -> np.ndarray:
    import av

    with av.open(str(video)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def write_face_corpus(root):
    """36 real 48 px grayscale faces from the bundled clips in FER2013's layout, and one augmented
    copy that is not part of it."""
    number = 0
    for video in sample_videos():
        frames = sample_frames(video, FeatureSettings(n_frames=len(PARTS), frame_size=256))
        faces, found = crop_faces(list(frames.transpose(0, 2, 3, 1)))
        assert found
        for face, (folder, part) in zip(faces, PARTS):
            number += 1
            path = root / folder / FER_FOLDERS[video.stem.split("_")[2]] / f"{part}_{number}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            gray = cv2.cvtColor(cv2.resize(face, (48, 48), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
            cv2.imwrite(str(path), gray)
    copy = root / "test" / "disgust" / f"PrivateTest_{number}.jpg0.jpg"
    copy.write_bytes(next((root / "test").rglob("*.jpg")).read_bytes())
    return root


def test_fer2013_names_give_parts_labels_and_shared_names_their_own_rows(tmp_path):
    root = make_tree(tmp_path, [
        "train/angry/Training_1.jpg", "train/sad/Training_1.jpg",  # two images sharing a name
        "train/happy/Training_2.jpg", "validation/fear/PublicTest_3.jpg",
        "test/disgust/PrivateTest_4.jpg", "test/disgust/PrivateTest_4.jpg2.jpg",  # an augmented copy
        "test/bored/PrivateTest_5.jpg", "train/happy/photo.png",
    ])
    result = index_dataset(root)
    table = result.table.set_index("clip")
    assert result.dataset == fer2013.NAME
    assert sorted(table.index) == ["PrivateTest_4", "PublicTest_3", "Training_2", "angry__Training_1",
                                   "sad__Training_1"]
    assert table.loc["angry__Training_1", "emotion"] == "anger" and table.loc["sad__Training_1", "emotion"] == "sadness"
    assert dict(table["split"]) == {"PrivateTest_4": "test", "PublicTest_3": "val", "Training_2": "train",
                                    "angry__Training_1": "train", "sad__Training_1": "train"}
    assert set(table["modality"]) == {"image"} and set(table["part"]) == {"Training", "PublicTest", "PrivateTest"}
    assert result.counts() == {"unparseable_name": 1, "unknown_code": 1, "augmented_copy": 1}
    assert "5 image clips, no actor ids" in result.summary()


def test_a_folder_per_label_and_a_manifest_of_images_are_image_corpora(tmp_path):
    folders = make_tree(tmp_path / "faces", ["happy/a.png", "sad/b.webp", "sad/c.bmp"])
    assert set(index_dataset(folders).table["modality"]) == {"image"}
    manifest = tmp_path / "faces.csv"
    manifest.write_text("path,label,speaker,split\nfaces/happy/a.png,happy,s1,train\n"
                        "faces/sad/b.webp,sad,s2,test\n")
    table = index_dataset(manifest).table
    assert list(table["modality"]) == ["image", "image"] and list(table["actor_id"]) == ["s1", "s2"]
    assert list(table["video_path"].map(lambda path: path.endswith((".png", ".webp")))) == [True, True]


def test_the_given_split_is_the_tables_own_column_in_any_of_its_spellings():
    table = pd.DataFrame({"split": ["Training", "PublicTest", "PrivateTest", "train", "validation", "test"]})
    assert list(make_split(table, "given")) == ["train", "val", "test", "train", "val", "test"]
    with pytest.raises(SplitError, match="has none"):
        given_split(pd.DataFrame({"clip": ["a"]}))
    with pytest.raises(SplitError, match=r"\['holdout'\]"):
        given_split(pd.DataFrame({"split": ["train", "holdout", "test"]}))
    with pytest.raises(SplitError, match="no val clips"):
        given_split(pd.DataFrame({"split": ["train", "test"]}))


def test_an_image_is_one_rgb_frame_and_a_bad_one_is_named(tmp_path):
    gray = tmp_path / "face.png"
    cv2.imwrite(str(gray), np.tile(np.arange(48, dtype=np.uint8) * 5, (48, 1)))
    features = extract_features(gray, FeatureSettings(frame_size=FACE_SIZE), inputs=(FRAMES, "mel"))
    frames = features[FRAMES]
    assert set(features.inputs) == {FRAMES}  # no voice
    assert frames.shape == (1, 3, FACE_SIZE, FACE_SIZE) and frames.dtype == np.uint8
    assert (frames[0, 0] == frames[0, 1]).all() and (frames[0, 1] == frames[0, 2]).all()  # gray in RGB
    assert frames[0, 0, :, -1].mean() > frames[0, 0, :, 0].mean() + 100  # enlarged, not flipped
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(MediaError, match="broken.jpg: not a readable image"):
        read_image(broken)
    huge = tmp_path / "huge.png"  # 36 megapixels of one colour: a tiny file
    cv2.imwrite(str(huge), np.zeros((4000, 9000), np.uint8))
    with pytest.raises(MediaError, match="9000x4000 image is larger than this tool reads"):
        read_image(huge)
    with pytest.raises(MediaError, match="has no voice"):
        extract_features(gray, FeatureSettings(), inputs=("mel",))


def test_still_face_models_are_a_frame_encoder_averaged_over_frames():
    from avemotion.training.models import create_model

    model = create_model("resnet18_face", image_size=FACE_SIZE)
    assert model.settings.still_image and not model.settings.pretrained and model.inputs == (FRAMES,)
    model.eval()
    image = torch.randint(0, 256, (1, 1, 3, FACE_SIZE, FACE_SIZE), dtype=torch.uint8)
    with torch.no_grad():  # a video of one image repeated is judged as the image
        assert torch.allclose(model({FRAMES: image}), model({FRAMES: image.repeat(1, 8, 1, 1, 1)}), atol=1e-5)
        # a face and its mirror image are seen alike once trained, not while training
        encoder, faces = model.encoders["video"], torch.cat([image, image.flip(-1)])
        assert torch.allclose(*encoder(faces), atol=1e-5)
        encoder.train()
        assert (encoder(faces)[0] - encoder(faces)[1]).abs().max() > 1e-2
    recipe = still_image(TrainSettings(model=model.settings), given=frozenset({"max_epochs"}))
    assert recipe.jitter_frames and recipe.label_smoothing > 0 and recipe.max_epochs == 10


def test_grayscale_reading_gives_each_frames_luma_in_every_channel_and_keeps_old_cache_names():
    from avemotion.media.features import as_read

    frames = np.random.default_rng(0).integers(0, 256, (2, 3, 4, 4), dtype=np.uint8)
    gray = as_read(frames, FeatureSettings(grayscale=True))
    luma = 0.299 * frames[:, 0] + 0.587 * frames[:, 1] + 0.114 * frames[:, 2]
    assert gray.shape == frames.shape and gray.dtype == np.uint8
    assert all(np.abs(gray[:, channel] - luma).max() <= 0.5 for channel in range(3))
    assert np.array_equal(as_read(frames, FeatureSettings()), frames)
    # a cache made before the setting existed keeps its name; the setting, when on, names another
    assert FeatureSettings(frame_size=96).digest() == "287dfd32844c"
    assert FeatureSettings(frame_size=96, grayscale=True).digest() != "287dfd32844c"


def test_jittered_frames_move_each_clip_alike_and_keep_shapes():
    from avemotion.training.augment import jitter_frames

    frames = torch.randint(0, 256, (4, 3, 3, 16, 16), dtype=torch.uint8)
    frames[:, 1:] = frames[:, :1]  # every clip's frames the same image
    moved = jitter_frames(frames, torch.Generator().manual_seed(0))
    assert moved.shape == frames.shape and moved.dtype == torch.float32
    assert torch.equal(moved[:, 0], moved[:, 1]) and torch.equal(moved[:, 1], moved[:, 2])
    assert not torch.allclose(moved, frames.float())
    assert 0 <= moved.min() and moved.max() <= 255


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """The face corpus indexed, and a ViT-Tiny still model trained two epochs on its given split."""
    from avemotion.media.preprocess import FeatureCache
    from avemotion.training.train import train

    root = tmp_path_factory.mktemp("faces")
    result = index_dataset(write_face_corpus(root / "fer"))
    write_metadata(result.table, root / "faces.csv")
    cache = FeatureCache.open(root / "cache", FeatureSettings(frame_size=FACE_SIZE))
    recipe = still_image(TrainSettings(model=model_settings("vit_tiny_face"), split="given", max_epochs=2,
                                       batch_size=8, progress=False), given=frozenset({"max_epochs", "batch_size"}))
    metrics = train(result.table, cache, root / "run", recipe)
    return {"root": root, "result": result, "metrics": metrics, "checkpoint": root / "run" / "model.ckpt"}


@pytest.mark.slow
def test_a_still_model_trains_on_the_given_split_and_judges_images_and_videos(faces, tmp_path):
    from avemotion.runtime.predict import load
    from avemotion.training.export import export_onnx

    assert faces["result"].counts() == {"augmented_copy": 1}
    assert faces["metrics"]["clips"] == 6  # the PrivateTest faces
    split = pd.read_csv(faces["root"] / "run" / "split.csv")
    assert split["split"].value_counts().to_dict() == {"train": 24, "val": 6, "test": 6}
    images = sorted((faces["root"] / "fer" / "test").rglob("PrivateTest_*[0-9].jpg"))
    classifier = load(faces["checkpoint"])
    assert ".jpg" in classifier.card.extensions and classifier.card.reading_settings.face_crop
    # it learned from grayscale faces alone: it reads colour frames in grayscale too
    assert classifier.card.grayscale_frames and classifier.card.reading_settings.grayscale
    frames = classifier.features(sample_videos()[0])[FRAMES]
    assert np.array_equal(frames[:, 0], frames[:, 1]) and np.array_equal(frames[:, 1], frames[:, 2])
    exported = load(export_onnx(faces["checkpoint"], tmp_path / "faces.onnx"))
    for judge in (classifier, exported):  # images and videos in one batch: one frame and eight
        results = judge.predict_batch([*images, *sample_videos()[:2]])
        assert all(result.ok for result in results), [result.error for result in results]
    table = lambda results: np.array([list(result.probabilities.values()) for result in results])
    assert np.abs(table(classifier.predict_batch(images)) - table(exported.predict_batch(images))).max() < 1e-4
    assert classifier.predict(sample_videos()[0]).features.face_found  # a video is judged by its face
    photo, blank = tmp_path / "photo.jpg", tmp_path / "blank.png"  # a whole frame, and no face at all
    cv2.imwrite(str(photo), cv2.cvtColor(first_frame(sample_videos()[0]), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(blank), np.full((48, 48), 128, np.uint8))
    assert classifier.predict(photo).features.face_found  # a photograph is judged by its face
    assert classifier.predict(blank).ok  # an image without a face found is taken as a face already cropped
    from fastapi.testclient import TestClient

    from avemotion.runtime.serve import create_app

    client = TestClient(create_app(exported))
    assert "a face image or a video with a face" in client.get("/").text
    answer = client.post("/predict", files={"file": (images[0].name, images[0].read_bytes(), "image/jpeg")})
    assert answer.status_code == 200 and answer.json()["label"] in classifier.labels


@pytest.mark.slow
def test_a_still_models_timeline_follows_the_face_and_marks_where_none_shows(faces, tmp_path):
    import av

    from avemotion.datasets.synth import write_media
    from avemotion.runtime.predict import load

    with av.open(str(sample_videos()[0])) as container:
        face = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)][:60]
    video = write_media(tmp_path / "face-then-nobody.mp4", face + [np.zeros_like(face[0])] * 90, fps=30)
    timeline = load(faces["checkpoint"]).timeline(video, window=1.0, hop=0.5)
    labels = dict(zip(timeline["start_s"], timeline["label"]))
    assert labels[0.0] != "(no face)" and labels[0.5] != "(no face)"  # the face's two seconds
    assert all(labels[start] == "(no face)" for start in labels if start >= 2.5)  # black frames only


def frame_encoder_weights(checkpoint):
    from avemotion.training.checkpoint import load_checkpoint

    model, info = load_checkpoint(checkpoint)
    return model.encoders["video"].state_dict(), info


@pytest.mark.parametrize("name", ["resnet18_vit_lstm_video_only", "resnet18_vit_lstm"])
@pytest.mark.slow
def test_a_still_models_frame_encoder_starts_a_video_branch(faces, name, sample_table, tmp_path):
    from avemotion.media.preprocess import FeatureCache
    from avemotion.training.train import train

    cache = FeatureCache.open(tmp_path / "cache", FeatureSettings(frame_size=FACE_SIZE))
    settings = TrainSettings(model=model_settings(name, pretrained=False, temporal_hidden=16), split="random",
                             max_epochs=2, batch_size=4, freeze_backbones=True, progress=False,
                             init_from=str(faces["checkpoint"]))
    train(sample_table, cache, tmp_path / "run", settings)
    started, info = frame_encoder_weights(tmp_path / "run" / "model.ckpt")
    face, _ = frame_encoder_weights(faces["checkpoint"])
    assert started.keys() == face.keys() and all(torch.equal(started[key], face[key]) for key in face)
    assert str(faces["checkpoint"].resolve()) in info.encoder_origins["video"]
    assert "vit_tiny_face" in info.encoder_origins["video"] and len(info.labels) == 6
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0 <= metrics["accuracy"] <= 1


@pytest.mark.slow
def test_init_from_refuses_a_frame_encoder_of_another_backbone(faces, sample_table, tmp_path):
    from avemotion.media.preprocess import FeatureCache
    from avemotion.training.train import train

    cache = FeatureCache.open(tmp_path / "cache", FeatureSettings(frame_size=FACE_SIZE))
    settings = TrainSettings(model=model_settings("effnet_lstm_video_only", pretrained=False), split="random",
                             max_epochs=1, progress=False, init_from=str(faces["checkpoint"]))
    with pytest.raises(UsageError, match="its frame encoder is vit_tiny_patch16_224"):
        train(sample_table, cache, tmp_path / "run", settings)


def test_eda_counts_each_emotion_in_each_part_of_the_given_split(tmp_path):
    from avemotion.datasets.eda import run_eda

    root = make_tree(tmp_path / "fer", ["train/angry/Training_1.jpg", "train/angry/Training_2.jpg",
                                        "train/happy/Training_3.jpg", "test/happy/PrivateTest_4.jpg"])
    run_eda(index_dataset(root).table, tmp_path / "eda")
    summary = json.loads((tmp_path / "eda" / "summary.json").read_text())
    assert summary["emotion_by_split"] == {"train": {"anger": 2, "happiness": 1}, "test": {"anger": 0, "happiness": 1}}
    assert (tmp_path / "eda" / "emotion_by_split_bar.png").stat().st_size > 0
    assert "emotion by split" in (tmp_path / "eda" / "report.html").read_text()


@pytest.fixture(scope="module")
def pretrained_faces(faces, tmp_path_factory):
    """A MobileNetV2 still model fine-tuned one epoch on the face corpus from a weights file in
    torchvision's own layout (random weights, saved as torchvision saves mobilenet_v2), through the CLI."""
    torchvision = pytest.importorskip("torchvision", reason="torchvision (with timm) makes the layout")
    from avemotion.cli import main

    root = tmp_path_factory.mktemp("pretrained-faces")
    torch.manual_seed(0)
    torch.save(torchvision.models.mobilenet_v2().state_dict(), root / "mobilenet_v2-b0353104.pth")
    code = main(["train", "--model", "mobilenetv2_face", "--metadata", str(faces["root"] / "faces.csv"),
                 "--cache", str(root / "cache"), "--out", str(root / "run"), "--split", "given",
                 "--weights", str(root / "mobilenet_v2-b0353104.pth"), "--epochs", "1", "--batch-size", "8",
                 "--frame-size", str(FACE_SIZE)])
    assert code == 0
    return {"root": root, "checkpoint": root / "run" / "model.ckpt"}


@pytest.mark.slow
def test_a_pretrained_face_model_trains_from_a_torchvision_file_and_exports_smaller(pretrained_faces, faces,
                                                                                     tmp_path):
    from avemotion.runtime.predict import load
    from avemotion.training.checkpoint import load_checkpoint
    from avemotion.training.export import export_onnx

    config = json.loads((pretrained_faces["root"] / "run" / "config.json").read_text())["train"]
    assert config["model"]["pretrained"] and config["backbone_lr_scale"] == 0.25  # the fine-tuning recipe
    model, _ = load_checkpoint(pretrained_faces["checkpoint"])  # rebuilt without the weights file
    assert model.settings.video_backbone == "mobilenetv2_100"
    images = sorted((faces["root"] / "fer" / "test").rglob("PrivateTest_*[0-9].jpg"))
    probabilities = {}
    for precision in ("float32", "float16", "int8"):
        path = export_onnx(pretrained_faces["checkpoint"], tmp_path / f"{precision}.onnx", precision=precision)
        results = load(path).predict_batch(images)
        assert all(result.ok for result in results), [result.error for result in results]
        probabilities[precision] = np.array([list(result.probabilities.values()) for result in results])
    sizes = {precision: (tmp_path / f"{precision}.onnx").stat().st_size for precision in probabilities}
    assert sizes["float16"] < 0.6 * sizes["float32"] and sizes["int8"] < 0.4 * sizes["float32"]
    assert np.abs(probabilities["float16"] - probabilities["float32"]).max() < 0.02


@pytest.mark.slow
def test_a_pretrained_face_model_starts_the_mobilenet_video_branch(pretrained_faces, sample_table, tmp_path):
    from avemotion.media.preprocess import FeatureCache
    from avemotion.training.train import train

    cache = FeatureCache.open(tmp_path / "cache", FeatureSettings(frame_size=FACE_SIZE))
    settings = TrainSettings(model=model_settings("mobilenetv2_lstm_video_only", pretrained=False, temporal_hidden=16),
                             split="random", max_epochs=1, batch_size=4, freeze_backbones=True, progress=False,
                             init_from=str(pretrained_faces["checkpoint"]))
    train(sample_table, cache, tmp_path / "run", settings)
    started, info = frame_encoder_weights(tmp_path / "run" / "model.ckpt")
    face, _ = frame_encoder_weights(pretrained_faces["checkpoint"])
    assert all(torch.equal(started[key], face[key]) for key in face)
    assert "mobilenetv2_face" in info.encoder_origins["video"]
    assert not info.grayscale_frames  # trained on colour clips: it reads them in colour


def calibrated_face_checkpoint(path, size: int, seed: int):
    """A still-face model of random weights whose BatchNorm statistics come from random frames (so
    that its answers differ from face to face), saved as training saves one."""
    from avemotion.datasets.cremad import EMOTIONS
    from avemotion.training.checkpoint import Checkpoint, save_checkpoint
    from avemotion.training.models import create_model

    torch.manual_seed(seed)
    model = create_model("mobilenetv2_face", pretrained=False, image_size=size)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # running statistics become the calibration batch's
    with torch.no_grad():
        model.train()({FRAMES: torch.randint(0, 256, (8, 1, 3, size, size), dtype=torch.uint8)})
    save_checkpoint(path, model.eval(), Checkpoint.of(model, FeatureSettings(frame_size=size), EMOTIONS))
    return path


@pytest.mark.slow
def test_an_exported_still_model_and_a_pair_judge_each_timeline_frame_once_as_the_whole_network_would(tmp_path):
    """A still model's ONNX file (and an ensemble's) also gives each frame's logits, so a timeline
    judges every grid frame once instead of once per window that reads it: the same probabilities
    as the whole network run window by window."""
    import copy

    from avemotion.runtime.predict import load
    from avemotion.training.export import export_face_ensemble, export_onnx

    small = calibrated_face_checkpoint(tmp_path / "small.ckpt", 32, seed=0)
    large = calibrated_face_checkpoint(tmp_path / "large.ckpt", 48, seed=1)
    for exported in (export_onnx(small, tmp_path / "face.onnx"),
                     export_face_ensemble([small, large], tmp_path / "pair.onnx")):
        shared = load(exported)
        assert shared.parts is not None
        whole = copy.copy(shared)
        whole.parts = None  # each window through the whole file
        labels = list(shared.labels)
        by_frame = shared.timeline(sample_videos()[0], window=1.0, hop=0.5)
        by_window = whole.timeline(sample_videos()[0], window=1.0, hop=0.5)
        assert len(by_frame) >= 3 and list(by_frame["label"]) == list(by_window["label"])
        assert np.abs(by_frame[labels].to_numpy() - by_window[labels].to_numpy()).max() < 1e-4
        assert by_frame[labels].to_numpy().std(axis=0).max() > 1e-3  # the windows' answers differ
