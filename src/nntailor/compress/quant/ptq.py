"""Uniform quantization as a compress step: swap conv/linear for fake-quantized layers, calibrate on data.

PTQ is this step alone; QAT is this step followed by ``finetune`` (the straight-through estimator lets
gradients through the rounding). The int8 default is the TFLite spec: weights symmetric, narrow, per
output channel; activations asymmetric per tensor.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
from pydantic import Field, ValidationInfo, field_validator
from torch.utils.data import DataLoader

from nntailor.compress.attention import split_attention
from nntailor.compress.base import CompressConfig, Context, float_layer_filter, register, walk
from nntailor.compress.quant.arith import QSpec, activation_spec, fixed_point_spec
from nntailor.compress.quant.modules import ActivationQuantizer, QuantConv2d, QuantLinear
from nntailor.errors import UserError


class QuantizeConfig(CompressConfig):
    step: Literal["quantize"] = "quantize"
    # affine: the TFLite int8 scheme; fixed_point: Qm.n per layer and per data type (dynamic fixed point);
    # log2: LogNet's power-of-two weights (multiplies become shifts), activations affine
    scheme: Literal["affine", "fixed_point", "log2"] = "affine"
    weight_bits: int = 8
    act_bits: int = 8
    per_channel: bool = True
    axis: int = 0  # the per-channel axis of the weight (0: output channels, as TFLite's conv and linear)
    group_size: int | None = Field(default=None, ge=1)  # Q-BERT group-wise: rows sharing one weight range
    weight_symmetric: bool = True
    act_symmetric: bool = False
    calibration: Literal["minmax", "moving_average", "percentile", "mse", "kl"] = "minmax"
    percentile: float = Field(default=99.99, gt=50, le=100)
    calibration_batches: int = Field(default=8, ge=1)
    batch_size: int = Field(default=64, ge=1)
    layers: list[str] | None = None  # fnmatch patterns; default every conv and linear
    exclude: list[str] = Field(default_factory=list)
    keep_first_last: bool = False  # leave the first and last MAC layer in float, as low-bit papers do
    # QAT: learn the activation ranges while fine-tuning (LSQ's step size, or PACT's clipping for ReLU inputs)
    learn_ranges: Literal["none", "lsq", "pact"] = "none"
    # with scheme log2: activations in the log domain too (Miyashita et al. 2016), so a product is an exponent
    # add and a shift
    log2_activations: bool = False

    @field_validator("log2_activations")
    @classmethod
    def _log_acts(cls, v: bool, info: ValidationInfo) -> bool:
        if v and info.data.get("scheme") != "log2":
            raise ValueError("log2_activations needs scheme: log2")
        if v and info.data.get("learn_ranges", "none") != "none":
            raise ValueError("log2_activations has no learned ranges (learn_ranges: none)")
        return v

    @field_validator("weight_bits", "act_bits")
    @classmethod
    def _bits(cls, v: int) -> int:
        if not 2 <= v <= 16:
            raise ValueError(f"bits must be in 2..16, got {v}")
        return v


def _weight_spec(config: QuantizeConfig, module: nn.Module) -> QSpec:
    if config.scheme == "fixed_point":  # one format per layer for the weights (Ristretto's dynamic fixed point)
        return fixed_point_spec(config.weight_bits)
    if config.scheme == "log2":
        return QSpec(bits=config.weight_bits, symmetric=True, log2=True)
    axis = config.axis % module.weight.dim() if config.per_channel and config.group_size is None else None
    return QSpec(bits=config.weight_bits, symmetric=config.weight_symmetric, narrow=config.weight_symmetric,
                 axis=axis, group_size=config.group_size)


def _act_spec(config: QuantizeConfig) -> QSpec:
    if config.scheme == "fixed_point":  # and one per layer for its input activations
        return fixed_point_spec(config.act_bits)
    if config.log2_activations:
        return QSpec(bits=config.act_bits, log2=True)
    return activation_spec(config.act_bits, config.act_symmetric)


@register(QuantizeConfig)
def quantize_model(model: nn.Module, config: QuantizeConfig, context: Context | None = None) -> nn.Module:
    context = context or Context()
    calibration = context.need_train("quantization (calibration data)")
    if len(calibration) == 0:
        raise UserError("the calibration set is empty")
    # torch's fused q/k/v projection is out of reach of a layer swap: split it first (exactly the same function)
    model = split_attention(model)
    chosen = float_layer_filter(model, config.layers, config.exclude, config.keep_first_last)

    def swap(module: nn.Module, fqn: str) -> nn.Module:
        dims = module.weight.dim()
        if config.per_channel and not -dims <= config.axis < dims:
            raise UserError(f"quantize: per-channel axis {config.axis} does not exist in layer {fqn!r} (weight of "
                            f"shape {tuple(module.weight.shape)})")
        act = _act_spec(config)
        cls = QuantLinear if isinstance(module, nn.Linear) else QuantConv2d
        return cls(module, _weight_spec(config, module), act, config.calibration, config.percentile,
                   config.learn_ranges)

    model = walk(model, swap, chosen)
    calibrate(model, calibration, config.calibration_batches, config.batch_size, context.seed)
    return model


@torch.no_grad()
def calibrate(model: nn.Module, data, batches: int, batch_size: int, seed: int = 0) -> None:
    quantizers = [m for m in model.modules() if isinstance(m, ActivationQuantizer)]
    was_training = model.training
    model.eval()
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    for i, (x, _) in enumerate(loader):
        if i >= batches:
            break
        try:
            model(x)
        except RuntimeError as exc:
            raise UserError(
                f"calibration batch of shape {tuple(x.shape)} does not fit the model: {str(exc).splitlines()[0]}"
            ) from None
    for q in quantizers:
        q.freeze()
    model.train(was_training)

