"""ImageNet weights from a local file in torchvision's, efficientnet_pytorch's or timm's layout: each
is made here by the library that defines its layout, with random weights, saved, loaded through
`--weights`, and must give the very features that library's own network gives."""

from __future__ import annotations

import pytest
import timm
import torch

from avemotion.errors import WeightsUnavailable
from avemotion.training.backbone_weights import layout
from avemotion.training.models import create_backbone, create_model

from conftest import TEST_IMAGE_SIZE


def saved(tmp_path, network: torch.nn.Module, name: str = "weights.pth"):
    torch.save(network.state_dict(), tmp_path / name)
    return tmp_path / name


def images() -> torch.Tensor:
    return torch.randn(2, 3, TEST_IMAGE_SIZE, TEST_IMAGE_SIZE, generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def test_a_torchvision_mobilenet_v2_file_starts_the_still_face_model_end_to_end(tmp_path):
    torchvision = pytest.importorskip("torchvision", reason="torchvision (with timm) makes the layout")
    torch.manual_seed(0)
    network = torchvision.models.mobilenet_v2().eval()  # random weights, torchvision's key names
    file = saved(tmp_path, network, "mobilenet_v2-b0353104.pth")
    assert layout(torch.load(file)) == "torchvision"
    model = create_model("mobilenetv2_face", weights=file, image_size=TEST_IMAGE_SIZE).eval()
    backbone = model.encoders["video"].backbone
    expected = network.features(images()).mean(dim=(2, 3))
    assert torch.allclose(backbone(images()), expected, atol=1e-5)


@pytest.mark.parametrize(("module", "reference", "backbone"), [
    ("efficientnet_lite_pytorch", "efficientnet-lite0", "tf_efficientnet_lite0"),  # no squeeze-excitation
    ("efficientnet_pytorch", "efficientnet-b0", "tf_efficientnet_b0"),  # with squeeze-excitation
])
@torch.no_grad()
def test_an_efficientnet_pytorch_file_gives_that_librarys_features(module, reference, backbone, tmp_path):
    library = pytest.importorskip(module, reason=f"{module} (the dev extra) makes the layout")
    torch.manual_seed(0)
    network = library.EfficientNet.from_name(reference).eval()
    file = saved(tmp_path, network)
    assert layout(torch.load(file)) == "efficientnet_pytorch"
    loaded = create_backbone(backbone, True, file, in_chans=3).eval()
    expected = network.extract_features(images()).mean(dim=(2, 3))
    assert torch.allclose(loaded(images()), expected, atol=1e-5)


def test_a_timm_file_is_loaded_as_timm_saved_it(tmp_path):
    torch.manual_seed(0)
    network = timm.create_model("mobilenetv2_100")
    loaded = create_backbone("mobilenetv2_100", True, saved(tmp_path, network), in_chans=3)
    assert torch.equal(loaded.state_dict()["blocks.6.0.conv_pwl.weight"],
                       network.state_dict()["blocks.6.0.conv_pwl.weight"])


def test_a_file_of_another_architecture_is_named_with_what_does_not_fit(tmp_path):
    torchvision = pytest.importorskip("torchvision", reason="torchvision (with timm) makes the layout")
    file = saved(tmp_path, torchvision.models.mobilenet_v2(width_mult=0.5))
    with pytest.raises(WeightsUnavailable) as error:
        create_backbone("mobilenetv2_100", True, file, in_chans=3)
    message = str(error.value)
    assert str(file) in message and "do not fit mobilenetv2_100" in message
    assert "other shapes: conv_stem.weight (16, 3, 3, 3) (expected (32, 3, 3, 3))" in message


def test_a_file_missing_a_tensor_names_it(tmp_path):
    torchvision = pytest.importorskip("torchvision", reason="torchvision (with timm) makes the layout")
    weights = torchvision.models.mobilenet_v2().state_dict()
    del weights["features.5.conv.1.0.weight"]
    torch.save(weights, tmp_path / "partial.pth")
    with pytest.raises(WeightsUnavailable, match=r"missing: blocks\.2\.1\.conv_dw\.weight\)"):
        create_backbone("mobilenetv2_100", True, tmp_path / "partial.pth", in_chans=3)


def test_a_file_that_is_not_weights_is_named(tmp_path):
    (tmp_path / "notes.pth").write_text("not a tensor in sight")
    with pytest.raises(WeightsUnavailable, match="notes.pth: not a weights file"):
        create_backbone("mobilenetv2_100", True, tmp_path / "notes.pth", in_chans=3)
