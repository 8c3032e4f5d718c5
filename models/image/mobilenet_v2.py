"""MobileNetV2 (alpha 1.0, 224x224) with the nsfwjs classification head, written for torch.

This is the exact network nsfwjs ships as its "MobileNetV2" model (a Keras 2.2.4
`keras.applications.MobileNetV2` body plus a 256-128-5 dense head), so that its TensorFlow.js
weights load one to one (`training/image/convert_nsfwjs.py`). torchvision's MobileNetV2 is not
used on purpose: it differs in ways that break a weight port (symmetric padding on the stride-2
convolutions, BN epsilon 1e-5, no dense head), and torchvision is not a dependency.

What mirrors Keras/TF rather than torch defaults:
- Stride-2 convolutions pad explicitly with Keras's `ZeroPadding2D(((0, 1), (0, 1)))` (bottom and
  right only: what TF's "same" padding does for even sizes) and then convolve with "valid".
- Stride-1 3x3 "same" convolutions pad 1 on every side (TF and torch agree for odd kernels).
- BatchNorm epsilon is Keras's 1e-3 (torch's default is 1e-5), and ReLU6 follows every
  expansion and depthwise convolution, never a projection (linear bottleneck).
- The head is average pooling over the final 7x7 map, then dense 1280->256 (ReLU), 256->128
  (ReLU), 128->5 softmax. Dropout is a no-op at inference and is left out.

Input: float32 NHWC or NCHW pixels scaled to [0, 1] (nsfwjs divides uint8 by 255 and does not
subtract a mean). `forward` takes NCHW.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3  # Keras BatchNormalization default (the model.json says epsilon 0.001 for every BN)
CLASSES: tuple[str, ...] = ("drawing", "hentai", "neutral", "porn", "sexy")  # nsfwjs NSFW_CLASSES order
INPUT_SIZE = 224

# (expansion t, output channels c, repeats n, first stride s): Keras MobileNetV2, alpha 1.0.
BLOCKS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class ConvBN(nn.Module):
    """Conv (no bias) + BatchNorm (eps 1e-3) + optional ReLU6, with Keras's padding rules."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, relu6: bool = True) -> None:
        super().__init__()
        self.stride = stride
        self.kernel = kernel
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=0, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.relu6 = relu6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel > 1:
            # stride 2: ZeroPadding2D(((0, 1), (0, 1))) then "valid"; stride 1: "same" = 1 each side
            x = F.pad(x, (0, 1, 0, 1)) if self.stride == 2 else F.pad(x, (1, 1, 1, 1))
        x = self.bn(self.conv(x))
        return F.hardtanh(x, 0.0, 6.0) if self.relu6 else x


class InvertedResidual(nn.Module):
    """Expand (1x1, skipped when t == 1) -> depthwise 3x3 -> linear project; residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        self.expand = ConvBN(cin, hidden, 1) if expansion != 1 else None
        self.depthwise = ConvBN(hidden, hidden, 3, stride=stride, groups=hidden)
        self.project = ConvBN(hidden, cout, 1, relu6=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


class NSFWMobileNetV2(nn.Module):
    """nsfwjs's MobileNetV2 classifier: NCHW [0, 1] pixels in, 5 class probabilities out."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = ConvBN(3, 32, 3, stride=2)
        blocks: list[nn.Module] = []
        cin = 32
        for t, c, n, s in BLOCKS:
            for i in range(n):
                blocks.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        self.blocks = nn.Sequential(*blocks)
        self.last = ConvBN(cin, 1280, 1)
        self.fc1 = nn.Linear(1280, 256)
        self.fc2 = nn.Linear(256, 128)
        self.fc3 = nn.Linear(128, len(CLASSES))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = self.last(self.blocks(self.stem(x)))
        # Keras AveragePooling2D(7) over the 7x7 map of a 224 input; a mean over the map keeps the
        # network defined for other sizes too (the port is only validated at 224).
        x = x.mean(dim=(2, 3))
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=-1)


def keras_layer_names() -> list[tuple[str, str]]:
    """(torch module path, Keras layer prefix) for every ConvBN, in network order.

    Keras names: stem `Conv1`/`bn_Conv1`; block 0 `expanded_conv_{depthwise,project}`; block k
    `block_k_{expand,depthwise,project}`; last `Conv_1`/`Conv_1_bn`. The converter reads the
    weight names from this one table so the torch layout and the Keras names cannot drift.
    """
    out = [("stem", "Conv1")]
    n_blocks = sum(n for _, _, n, _ in BLOCKS)
    for k in range(n_blocks):
        prefix = "expanded_conv" if k == 0 else f"block_{k}"
        if k > 0:
            out.append((f"blocks.{k}.expand", f"{prefix}_expand"))
        out.append((f"blocks.{k}.depthwise", f"{prefix}_depthwise"))
        out.append((f"blocks.{k}.project", f"{prefix}_project"))
    out.append(("last", "Conv_1"))
    return out


def bn_name(keras_conv: str) -> str:
    """The Keras BatchNormalization layer that follows a conv layer."""
    if keras_conv == "Conv1":
        return "bn_Conv1"
    if keras_conv == "Conv_1":
        return "Conv_1_bn"
    return f"{keras_conv}_BN"


def fuse_batchnorm(model: NSFWMobileNetV2) -> NSFWMobileNetV2:
    """Fold every BatchNorm into its convolution (inference only): one op fewer per layer.

    Numerically the same function (float32 rounding aside); the model keeps its structure, the
    BN layers become identities."""
    for module in model.modules():
        if isinstance(module, ConvBN) and isinstance(module.bn, nn.BatchNorm2d):
            conv, bn = module.conv, module.bn
            assert bn.running_var is not None and bn.running_mean is not None
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            fused = nn.Conv2d(
                conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, 0, groups=conv.groups, bias=True
            )
            with torch.no_grad():
                fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
                fused.bias.copy_(bn.bias - bn.running_mean * scale)
            module.conv = fused
            module.bn = nn.Identity()  # type: ignore[assignment]
    return model
