"""Option checks shared by the zoo factories.

Every check raises :class:`nntailor.errors.UserError` with a one-line message naming the option and its
range, because zoo options come straight from the user (``mobilenet_v1?width=0.5``). The ranges are wide
around what the papers use, and narrow enough that no value builds a model the machine cannot hold.
"""

from __future__ import annotations

import math

from nntailor.errors import UserError

# ImageNet-21k has 21,841 classes, the largest label set a zoo network is trained on; 100k leaves room.
NUM_CLASSES = (1, 100_000)
# MobileNet's width multiplier: the paper uses 0.25..1.0. Below 0.05 every layer is at the 8-channel floor
# (the result no longer depends on the value); above 4 the model has 16x the parameters of width 1.
WIDTH = (0.05, 4.0)
# Input side in pixels: MobileNet v1 downsamples 32x, so 32 is the least that reaches the classifier at
# 1x1 without collapsing earlier; 2048 is 9x the paper's largest (224), 84x its activations.
RESOLUTION = (32, 2048)


def int_in(option: str, value: object, low: int, high: int) -> int:
    """``value`` if it is an int in ``[low, high]`` (bools are refused), else UserError naming the range."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UserError(f"option {option}={value!r} must be an integer in {low:,}..{high:,}")
    return value


def float_in(option: str, value: object, low: float, high: float) -> float:
    """``value`` as a float if it is a finite number in ``[low, high]`` (bools refused), else UserError."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high or math.isnan(value):
        raise UserError(f"option {option}={value!r} must be a number in {low:g}..{high:g}")
    return float(value)


def check_num_classes(value: object) -> int:
    return int_in("num_classes", value, *NUM_CLASSES)


def check_width(value: object) -> float:
    return float_in("width", value, *WIDTH)


def check_resolution(value: object) -> int:
    return int_in("resolution", value, *RESOLUTION)
