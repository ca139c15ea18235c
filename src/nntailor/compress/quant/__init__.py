"""Quantization: uniform arithmetic (TFLite int8 spec), calibration observers, fake-quantized layers, PTQ/QAT."""

from nntailor.compress.quant.modules import QuantConv2d, QuantLinear, quant_bits
from nntailor.compress.quant.ptq import QuantizeConfig, quantize_model

__all__ = ["QuantConv2d", "QuantLinear", "QuantizeConfig", "quant_bits", "quantize_model"]
