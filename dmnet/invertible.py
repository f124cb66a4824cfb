"""Dense invertible block (DIB) of DMNet: affine coupling layers (section III-B, Fig. 3).

One coupling layer, as in CDDFuse's detail branch and the DMNet code: mix the channels with a 1x1
conv, split them into halves (z1, z2), then

    z2 <- z2 + phi(z1)
    z1 <- z1 * exp(rho(z2)) + eta(z2)

with phi, rho, eta MobileNetV2 inverted residual blocks (expansion 2). Every step can be undone,
so the layer is a bijection (``CouplingLayer.inverse``): this is what makes the DIB a "lossless"
feature extractor. The mixing conv starts orthogonal (as Glow's invertible 1x1 conv) so it is
invertible from the first step on; training keeps it invertible almost surely.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dmnet import compiled_dib
from dmnet.dense import chain_sum
from dmnet.kernels import conv1x1, conv_act


class InvertedResidual(nn.Module):
    """MobileNetV2 inverted residual body: 1x1 expand, ReLU6, depthwise 3x3 (reflect pad), ReLU6,
    1x1 project. No skip connection and no bias (as in the CDDFuse/DMNet INN)."""

    def __init__(self, channels: int, expansion: int) -> None:
        super().__init__()
        hidden = channels * expansion
        self.body = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU6(),
            nn.ReflectionPad2d(1),
            nn.Conv2d(hidden, hidden, 3, groups=hidden, bias=False),
            nn.ReLU6(),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expand, _, pad, depthwise, _, project = self.body
        # ReLU6 fused into the convs (oneDNN), or in place on their fresh outputs (autograd
        # differentiates it through its result)
        h = conv_act(x, expand.weight, None, "relu6")
        h = conv_act(pad(h), depthwise.weight, None, "relu6", groups=depthwise.groups)
        return conv1x1(h, project.weight)


class CouplingLayer(nn.Module):
    """One invertible affine coupling layer over ``dim`` channels (``dim`` even)."""

    def __init__(self, dim: int, expansion: int) -> None:
        super().__init__()
        half = dim // 2
        self.mix = nn.Conv2d(dim, dim, 1, bias=True)
        nn.init.orthogonal_(self.mix.weight)
        self.phi = InvertedResidual(half, expansion)
        self.rho = InvertedResidual(half, expansion)
        self.eta = InvertedResidual(half, expansion)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the halves z1, z2 of the mixed channels as two separate (contiguous) tensors
        half = self.mix.out_channels // 2
        w, b = self.mix.weight, self.mix.bias
        z1, z2 = conv1x1(x, w[:half], b[:half]), conv1x1(x, w[half:], b[half:])
        z2 = z2 + self.phi(z1)
        z1 = torch.addcmul(self.eta(z2), z1, self.rho(z2).exp_())  # z1 * exp(rho) + eta
        return torch.cat((z1, z2), dim=1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """The exact inverse of ``forward`` (up to floating-point rounding)."""
        y1, z2 = y.chunk(2, dim=1)
        z1 = (y1 - self.eta(z2)) * torch.exp(-self.rho(z2))
        z2 = z2 - self.phi(z1)
        z = torch.cat((z1, z2), dim=1) - self.mix.bias.view(1, -1, 1, 1)
        w_inv = torch.linalg.inv(self.mix.weight[:, :, 0, 0].double()).to(y.dtype)
        return F.conv2d(z, w_inv[:, :, None, None])


class DIB(nn.Module):
    """Dense invertible block: chained coupling layers, output psi * (sum of their outputs)."""

    def __init__(self, dim: int, expansion: int, layers: int, psi: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(CouplingLayer(dim, expansion) for _ in range(layers))
        self.psi = psi

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if compiled_dib.supports(self, x):  # CPU inference of a small block: one compiled pass per layer
            return compiled_dib.dib_forward(self, x)
        return self.psi * chain_sum(self.layers, x)
