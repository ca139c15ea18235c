"""Fake-quantized conv and linear layers: what PTQ calibrates and QAT trains.

Each layer quantizes its input (activation spec, range from calibration) and its weight (weight spec,
range from the current weight on every forward, so QAT sees its own updates). The gradient passes
straight through inside the range (torch's fake_quantize ops). ``op_kind`` keeps them ordinary conv and
linear layers for the capture and the cost model; ``quant_bits`` tells the cost model their widths.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from nntailor.compress.quant.arith import QSpec, fake_quant, log2_quant, qparams
from nntailor.compress.quant.observers import Observer


def round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


class ActivationQuantizer(nn.Module):
    """Calibrating: observe and pass through. Calibrated: fake-quantize with the frozen range, or with a learned
    one: LSQ (Esser et al. 2020) learns the step size, PACT (Choi et al. 2018) the clipping level alpha."""

    def __init__(self, spec: QSpec, calibration: str = "minmax", percentile: float = 99.99,
                 learn: str = "none") -> None:
        super().__init__()
        self.spec = spec
        self.learn = learn
        self.observer = Observer(calibration, spec, percentile=percentile)
        self.calibrating = True
        self.step_size: nn.Parameter | None = None  # LSQ
        self.alpha: nn.Parameter | None = None  # PACT
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("zero_point", torch.zeros((), dtype=torch.int32))
        # log-domain activations (Miyashita et al. 2016): the calibrated full-scale exponent, and whether any
        # value seen was negative (then one bit is the sign)
        self.register_buffer("log2_top", torch.zeros(()))
        self.register_buffer("log2_signed", torch.ones((), dtype=torch.bool))

    def freeze(self) -> None:
        scale, zero_point = self.observer.qparams_()
        self.scale.copy_(scale)
        self.zero_point.copy_(zero_point)
        lo, hi = self.observer.range_()
        self.log2_top.copy_(torch.round(torch.log2(torch.maximum(lo.abs(), hi.abs()).clamp(min=1e-12))))
        self.log2_signed.copy_(lo < 0)
        self.calibrating = False
        if self.learn == "lsq":  # learned from the calibrated step
            self.step_size = nn.Parameter(self.scale.detach().clone())
        elif self.learn == "pact":  # learned from the calibrated upper end
            self.alpha = nn.Parameter(self.observer.range_()[1].detach().clone().clamp(min=1e-3))
        self.observer.samples.clear()

    def _lsq(self, x: torch.Tensor) -> torch.Tensor:
        # gradient of the step scaled by 1 / sqrt(N qmax), as LSQ prescribes, so it learns at the weights' pace
        g = 1.0 / math.sqrt(x.numel() * self.spec.qmax)
        s = self.step_size * g + (self.step_size - self.step_size * g).detach()
        zp = self.zero_point.float()
        q = round_ste(torch.clamp(x / s + zp, self.spec.qmin, self.spec.qmax))
        return (q - zp) * s

    def _pact(self, x: torch.Tensor) -> torch.Tensor:
        # clamp(x, 0, alpha) written so alpha gets the gradient of the clipped part, then k-bit uniform in [0, alpha]
        y = 0.5 * (x.abs() - (x - self.alpha).abs() + self.alpha)
        levels = (1 << self.spec.bits) - 1
        step = self.alpha / levels
        return round_ste(y / step) * step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "meta":  # shape propagation by the capture: nothing to observe or round
            return x
        if self.calibrating:
            self.observer.observe(x)
            return x
        if self.step_size is not None:
            return self._lsq(x)
        if self.alpha is not None:
            return self._pact(x)
        if self.spec.log2:
            return log2_quant(x, self.spec, self.log2_top, bool(self.log2_signed))
        return fake_quant(x, self.scale, self.zero_point, self.spec)


def quantize_weight(weight: torch.Tensor, spec: QSpec) -> torch.Tensor:
    if weight.device.type == "meta":
        return weight
    if spec.log2:
        return log2_quant(weight, spec)
    if spec.group_size:  # Q-BERT: consecutive blocks of output rows (e.g. one attention head) share a range
        rows = weight.detach().reshape(weight.shape[0], -1)
        # a last, shorter group when the size does not divide
        group = torch.arange(len(rows), device=rows.device) // spec.group_size
        count = int(group[-1]) + 1
        like = {"dtype": rows.dtype, "device": rows.device}
        lo = torch.full((count,), float("inf"), **like).scatter_reduce(0, group, rows.min(1).values, "amin")
        hi = torch.full((count,), float("-inf"), **like).scatter_reduce(0, group, rows.max(1).values, "amax")
        scale, zero_point = qparams(lo, hi, spec)
        return fake_quant(weight, scale[group], zero_point[group], replace(spec, axis=0, group_size=None))
    if spec.axis is None:
        lo, hi = weight.detach().min(), weight.detach().max()
    else:
        flat = weight.detach().transpose(0, spec.axis).reshape(weight.shape[spec.axis], -1)
        lo, hi = flat.min(1).values, flat.max(1).values
    scale, zero_point = qparams(lo, hi, spec)
    return fake_quant(weight, scale, zero_point, spec)


class QuantLinear(nn.Linear):
    op_kind = "linear"

    def __init__(self, dense: nn.Linear, weight_spec: QSpec, act_spec: QSpec, calibration: str,
                 percentile: float = 99.99, learn: str = "none") -> None:
        super().__init__(dense.in_features, dense.out_features, bias=dense.bias is not None)
        self.load_state_dict(dense.state_dict())
        self.weight_spec = weight_spec
        self.input_quant = ActivationQuantizer(act_spec, calibration, percentile, learn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.input_quant(x), quantize_weight(self.weight, self.weight_spec), self.bias)


class QuantConv2d(nn.Conv2d):
    op_kind = "conv"

    def __init__(self, dense: nn.Conv2d, weight_spec: QSpec, act_spec: QSpec, calibration: str,
                 percentile: float = 99.99, learn: str = "none") -> None:
        super().__init__(dense.in_channels, dense.out_channels, dense.kernel_size, dense.stride, dense.padding,
                         dense.dilation, dense.groups, dense.bias is not None, dense.padding_mode)
        self.load_state_dict(dense.state_dict())
        self.weight_spec = weight_spec
        self.input_quant = ActivationQuantizer(act_spec, calibration, percentile, learn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.input_quant(x), quantize_weight(self.weight, self.weight_spec), self.bias)


QUANT_LAYERS = (QuantLinear, QuantConv2d)


def quant_bits(model: nn.Module) -> dict[str, tuple[int, int]]:
    """(weight bits, activation bits) of every quantized layer, for ``analyze(layer_bits=...)``."""
    return {name: (m.weight_spec.bits, m.input_quant.spec.bits)
            for name, m in model.named_modules() if isinstance(m, QUANT_LAYERS)}


def fixed_point_formats(model: nn.Module) -> dict[str, dict[str, str]]:
    """"Qm.n" of each fixed-point layer's weights and input activations (after calibration)."""
    from nntailor.compress.quant.arith import fixed_point_format

    formats = {}
    for name, m in model.named_modules():
        if isinstance(m, QUANT_LAYERS) and m.weight_spec.power_of_two:
            wm, wn = fixed_point_format(m.weight.detach().abs().max(), m.weight_spec.bits)
            an = -int(torch.log2(m.input_quant.scale))
            formats[name] = {"weights": f"Q{int(wm)}.{int(wn)}",
                             "activations": f"Q{m.input_quant.spec.bits - 1 - an}.{an}"}
    return formats
