"""EfficientNet-Lite backbone (issue #13): released ImageNet weights load strictly and classify a real
photo correctly (which proves the weights, the block layout and the TF "SAME" padding), frozen BN,
frozen stages, and the ausm-lite encoder on top of it."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ausm.errors import ConfigError
from ausm.model.efficientnet_lite import (IMAGENET_MEAN, IMAGENET_STD, EfficientNetLite, FrozenBatchNorm2d,
                                          SameConv2d, load_imagenet_weights)

from conftest import SHARED, needs_shared


def _imagenet_input(path, size=224) -> torch.Tensor:
    with Image.open(path) as im:
        a = np.array(im.convert("RGB").resize((size, size), Image.BILINEAR))
    x = torch.from_numpy(a).permute(2, 0, 1).float()[None] / 255.0
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def lite0_head():
    return load_imagenet_weights(EfficientNetLite("lite0", imagenet_head=True)).eval()


@needs_shared
def test_imagenet_head_recognises_the_black_swan(lite0_head):
    x = _imagenet_input(SHARED / "davis2016/JPEGImages/480p/blackswan/00000.jpg")
    with torch.no_grad():
        p = lite0_head.classify(x).softmax(-1)[0]
    assert int(p.argmax()) == 100  # ImageNet class 100 = "black swan"
    assert float(p[100]) > 0.5


@needs_shared
def test_a_one_pixel_shift_changes_the_features(lite0_head):
    """Why the SAME-padding detail matters (its correctness is proven by the black-swan test and the
    geometry test below): a one-pixel shift of the input, the size of the error symmetric padding makes on
    the stride-2 layers' sampling grid, changes the features far more than float noise."""
    x = _imagenet_input(SHARED / "davis2016/JPEGImages/480p/blackswan/00000.jpg")
    with torch.no_grad():
        a = lite0_head(x)[0]
        b = lite0_head(F.pad(x, (1, 0, 1, 0))[..., :-1, :-1])[0]
    assert float((a - b).abs().mean() / a.abs().mean()) > 0.05


def test_same_padding_puts_the_extra_pixel_bottom_right():
    conv = SameConv2d(1, 1, 3, stride=2)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = 1.0  # picks the top-left tap of each window
    x = torch.arange(36.0).view(1, 1, 6, 6)
    y = conv(x)
    assert y.shape[-2:] == (3, 3)
    # total padding 1 → 0 on top/left, 1 on bottom/right: first window starts at pixel (0, 0)
    assert torch.equal(y[0, 0], x[0, 0, ::2, ::2])
    assert SameConv2d(1, 1, 3, stride=2)(torch.zeros(1, 1, 7, 9)).shape[-2:] == (4, 5)


def test_strict_load_without_head_and_feature_shapes():
    net = load_imagenet_weights(EfficientNetLite("lite0"))
    assert not any(k.startswith(("_fc.", "_conv_head.")) for k in net.state_dict())
    feats = net(torch.zeros(1, 3, 192, 352))
    assert [tuple(f.shape[1:]) for f in feats] == [(24, 48, 88), (40, 24, 44), (112, 12, 22), (320, 6, 11)]
    assert net.channels == [24, 40, 112, 320]
    with pytest.raises(RuntimeError, match="no ImageNet head"):
        net.classify(torch.zeros(1, 3, 64, 64))


def test_variants_and_bad_arguments():
    assert EfficientNetLite("lite2").channels == [24, 48, 120, 352]
    assert len(EfficientNetLite("lite1")._blocks) > len(EfficientNetLite("lite0")._blocks)
    with pytest.raises(ConfigError, match="variant"):
        EfficientNetLite("lite9")
    with pytest.raises(ConfigError, match="frozen_stages"):
        EfficientNetLite("lite0", frozen_stages=9)


def test_frozen_batchnorm_equals_eval_batchnorm_and_passes_gradients():
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(5, eps=1e-3).eval()
    bn.running_mean.normal_()
    bn.running_var.uniform_(0, 2)
    bn.running_var[0] = 0.0  # the released weights have exact zeros
    bn.weight.data.normal_()
    bn.bias.data.normal_()
    fb = FrozenBatchNorm2d(5)
    fb.load_state_dict(bn.state_dict())
    x = torch.randn(2, 5, 4, 4, requires_grad=True)
    assert torch.allclose(fb(x), bn(x), atol=1e-5)
    fb.train()
    before = fb.running_mean.clone()
    fb(x).sum().backward()
    assert torch.equal(fb.running_mean, before) and x.grad is not None
    assert not list(fb.parameters())


def test_frozen_stages_stop_gradients_where_asked():
    net = EfficientNetLite("lite0", frozen_stages=2)
    assert not net._conv_stem.weight.requires_grad
    last4 = net.stage_ends[0]
    assert not any(p.requires_grad for b in net._blocks[: last4 + 1] for p in b.parameters())
    assert all(p.requires_grad for b in net._blocks[last4 + 1:] for p in b.parameters())


def test_ausm_lite_encoder_loads_imagenet_weights_and_trainer_keeps_fixed_layers():
    from ausm.config import get_config
    from ausm.model.ausm import AUSMModel
    from ausm.train.trainer import freeze_backbone

    cfg = get_config("ausm-lite")
    assert cfg.num_ids >= 32 and cfg.pixel_mean == IMAGENET_MEAN
    model = AUSMModel(cfg)
    ref = load_imagenet_weights(EfficientNetLite("lite0"))
    bb = model.backbone
    assert torch.equal(bb._blocks[5]._depthwise_conv.weight, ref._blocks[5]._depthwise_conv.weight)
    freeze_backbone(model, False)  # the trainer's "not frozen" must keep the stem / stride-4 blocks fixed
    assert not bb._conv_stem.weight.requires_grad and bb._blocks[-1]._project_conv.weight.requires_grad
    freeze_backbone(model, True)
    assert not any(p.requires_grad for p in bb.parameters())


def test_checkpoint_load_does_not_refetch_imagenet_weights(tmp_path, monkeypatch):
    """A saved ausm-lite model holds every weight: loading it must not read the ImageNet package
    (and must keep ``backbone_pretrained`` in its config)."""
    import ausm.model.efficientnet_lite as effl
    from ausm.checkpoint import load_model, save_model
    from ausm.config import get_config
    from ausm.model.ausm import AUSMModel

    cfg = get_config("ausm-lite", backbone_pretrained=None, compressor_layers=1, history_decoder_layers=1,
                     pixel_decoder_layers=1, hidden_dim=32, mask_dim=16, fine_dim=16)
    torch.manual_seed(0)
    model = AUSMModel(cfg.replace(backbone_pretrained="imagenet"))
    d = save_model(model, tmp_path / "lite")

    def boom(net):
        raise AssertionError("ImageNet weights were loaded again")

    monkeypatch.setattr(effl, "load_imagenet_weights", boom)
    loaded = load_model(d)
    assert loaded.cfg.backbone_pretrained == "imagenet"
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k


def test_inference_folds_batchnorm_into_the_convolutions():
    """Without autograd every conv + FrozenBatchNorm pair is one convolution with folded weights: the same
    features to float rounding; an in-place weight change invalidates the cache; a copy folds its own."""
    import copy

    from ausm.model.efficientnet_lite import EfficientNetLite

    torch.manual_seed(0)
    net = EfficientNetLite("lite0").eval()
    for m in net.modules():
        if hasattr(m, "running_var"):
            m.running_var.uniform_(0.5, 2.0)
            m.running_mean.normal_()
    x = torch.randn(1, 3, 64, 96)
    ref = net(x)  # autograd on: the plain conv → BatchNorm pair
    with torch.inference_mode():
        folded = net(x)
    for a, b in zip(ref, folded):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        net._blocks[2]._project_conv.weight.mul_(0.5)
        changed = net(x)
    assert not torch.allclose(changed[0], folded[0], atol=1e-3)  # block 2 ends the stride-4 stage
    twin = copy.deepcopy(net)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(twin(x), net(x)))
