"""Quantization: uniform arithmetic (TFLite int8 spec), calibration observers, fake-quantized layers, PTQ/QAT."""

from nntailor.compress.quant.binary import BinarizeConfig, binarize, binary_bits
from nntailor.compress.quant.formats import layer_arith, layer_formats, weight_widths
from nntailor.compress.quant.hawq import MixedPrecisionConfig
from nntailor.compress.quant.modules import QuantConv2d, QuantLinear, quant_bits
from nntailor.compress.quant.ptq import QuantizeConfig, quantize_model

__all__ = [
    "BinarizeConfig", "MixedPrecisionConfig", "QuantConv2d", "QuantLinear", "QuantizeConfig", "binarize",
    "binary_bits", "layer_arith", "layer_formats", "quant_bits", "quantize_model",
    "weight_widths",
]
