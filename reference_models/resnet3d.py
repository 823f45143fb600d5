"""Section 2 of the article: a 3D ResNet changed so that its stages line up with the UNet encoder.

The two changes: the stem convolution's stride is 1 instead of 2, and ``Bottleneck.expansion`` is 2
instead of 4. Everything else follows the MedicalNet-style 3D ResNet the article starts from,
quirks included (see the docstrings).
"""
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from .stage_prints import stage_print


def conv3x3x3(in_planes, out_planes, stride=1, dilation=1):
    """3x3x3 convolution with padding equal to the dilation, no bias."""
    return nn.Conv3d(in_planes, out_planes, kernel_size=3, dilation=dilation, stride=stride,
                     padding=dilation, bias=False)


def downsample_basic_block(x, planes, stride, no_cuda=False):
    """Shortcut type 'A': strided identity, zero-padded up to ``planes`` channels.

    Quirks kept from the article: the zeros are made on the CPU in the default dtype and moved to the
    GPU only when ``x`` is a CUDA *float32* tensor (so on CUDA with ``no_cuda=True``, half precision or
    autocast, ``torch.cat`` fails on mixed devices); and the shortcut is detached from autograd (the
    article wraps ``.data`` in ``Variable``), so no gradient flows through it.
    """
    out = F.avg_pool3d(x, kernel_size=1, stride=stride)
    zero_pads = torch.zeros(out.size(0), planes - out.size(1), out.size(2), out.size(3), out.size(4))
    if not no_cuda and out.is_cuda and out.dtype == torch.float32:
        zero_pads = zero_pads.cuda()
    return torch.cat([out.detach(), zero_pads], dim=1)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3x3(inplanes, planes, stride=stride, dilation=dilation)
        self.bn1 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3x3(planes, planes, dilation=dilation)
        self.bn2 = nn.BatchNorm3d(planes)
        self.downsample = downsample
        self.stride = stride
        self.dilation = dilation

    def forward(self, x):
        residual = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            residual = self.downsample(x)
        out += residual
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3x3 (strided), 1x1 expand. ``expansion`` is 2 (the article's change from 4).

    Quirk kept: ``conv3``/``bn3`` use ``planes * 2`` literally, not ``planes * self.expansion``.
    """

    expansion = 2

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv3d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, kernel_size=3, stride=stride, dilation=dilation,
                               padding=dilation, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, planes * 2, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * 2)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride
        self.dilation = dilation

    def forward(self, x):
        residual = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            residual = self.downsample(x)
        out += residual
        return self.relu(out)


class _ResNetStages:
    """The stem and the four stages, shared by ``ResNet_3d`` and ``UNet_3d_resnet_encoder``."""

    def _build_stem_and_stages(self, in_channels, block, layers, shortcut_type):
        self.conv1 = nn.Conv3d(in_channels, 64, kernel_size=7, stride=(1, 1, 1),  # was (2, 2, 2)
                               padding=(3, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=(3, 3, 3), stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0], shortcut_type)
        self.layer2 = self._make_layer(block, 128, layers[1], shortcut_type, stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], shortcut_type, stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], shortcut_type, stride=2)

    def _stages(self, x):
        """x1 (the stem's output) and the outputs of layer1..layer4, printed when the switch is on."""
        x1 = self.relu(self.bn1(self.conv1(x)))
        stage_print("x1=", x1)
        stages = [x1, self.layer1(self.maxpool(x1))]
        for layer in (self.layer2, self.layer3, self.layer4):
            stage_print(f"x{len(stages)}=", stages[-1])
            stages.append(layer(stages[-1]))
        stage_print("x5=", stages[-1])
        return stages

    def _init_weights(self):
        # Every Conv3d in the model, decoder included (ConvTranspose3d is not a Conv3d and keeps
        # PyTorch's default init). Order matters for seeded reproducibility: modules() order.
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block, planes, blocks, shortcut_type, stride=1, dilation=1):
        """One stage. Quirks kept: ``dilation`` is accepted and ignored; the first block is always
        built, so ``blocks`` of 0 or less gives one block; any ``shortcut_type`` but 'A' means 'B'."""
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            if shortcut_type == "A":
                downsample = partial(downsample_basic_block, planes=planes * block.expansion,
                                     stride=stride, no_cuda=self.no_cuda)
            else:
                downsample = nn.Sequential(
                    nn.Conv3d(self.inplanes, planes * block.expansion, kernel_size=1, stride=stride,
                              bias=False),
                    nn.BatchNorm3d(planes * block.expansion),
                )
        layers = [block(self.inplanes, planes, stride=stride, downsample=downsample)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes))
        return nn.Sequential(*layers)


class ResNet_3d(_ResNetStages, nn.Module):
    """The article's modified 3D ResNet (a classifier when ``include_top``).

    The stem takes exactly one input channel (hard-coded, as in the article). The five printed stages
    ``x1`` ... ``x5`` are the stem output and the outputs of ``layer1`` ... ``layer4``.
    """

    def __init__(self, block, layers, num_classes=1000, shortcut_type="B", no_cuda=False, include_top=True):
        super().__init__()
        self.inplanes = 64
        self.no_cuda = no_cuda
        self.include_top = include_top
        self._build_stem_and_stages(1, block, layers, shortcut_type)
        if self.include_top:
            self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
            self.fc = nn.Linear(512 * block.expansion, num_classes)
        self._init_weights()

    def forward(self, x):
        x = self._stages(x)[-1]
        if self.include_top:
            x = self.avgpool(x)
            x = torch.flatten(x, 1)
            x = self.fc(x)
        return x
