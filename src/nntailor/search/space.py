"""Search spaces as data: a YAML file validated field by field (pydantic), sampled define-by-run.

A space is read once (``load_space``), then each trial walks it: ``space.suggest(trial)`` asks Optuna for every
dimension that exists given the values already drawn (a second FC layer's width only when there are two
layers) and returns a ``Design``; ``space.design(params)`` rebuilds the same ``Design`` from a parameter dict
(what a sampler's cheap objectives receive), ``build(design)`` makes the ``nn.Module``.

Kinds:

- ``mlp``, ``cnn``: seed 000's (OPAL) MNIST spaces: 1-2 conv layers of 8-128 filters, kernel 1x1-5x5,
  max-pool 2x2-4x4, 1-2 FC layers of 10-250 nodes, learning rate 0.01-0.8.
- ``blocks``: a stem conv, then stages, each one block from the zoo (depthwise-separable, bottleneck, Fire,
  shift, inverted residual; the zoo's own classes) at a chosen width and stride, then global pooling and a
  classifier.

Compression settings are dimensions like any other: ``bits`` (per MAC layer: 32 float, 2-16 fixed point as
seed 000's CIFAR experiment, 1 binary weights) and ``sparsity`` (per MAC layer, seed 003's joint tuning). They
map onto the compress step configs (``Design.recipe()``) and onto the widths ``analyze`` prices
(``Design.pricing()``).

The model is an ``nn.Sequential`` of segments, each an ``nn.Sequential`` that nothing fuses across (a conv and
its ReLU sit in one segment): ``search.costs`` prices each segment once and reuses it.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, model_validator

from nntailor.errors import UserError
from nntailor.yamlfile import read_yaml

BLOCKS = ("depthwise_separable", "bottleneck", "fire", "shift", "inverted_residual")
BINARY_BITS = 1
FLOAT_BITS = 32


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IntRange(_Strict):
    """Integers ``low``..``high`` (both included), every ``step``; ``log`` samples on a log scale."""

    low: int
    high: int
    step: int = Field(default=1, ge=1)
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if self.low > self.high:
            raise ValueError(f"low {self.low} > high {self.high}")
        if self.log and (self.low < 1 or self.step != 1):
            raise ValueError("log needs low >= 1 and step 1")
        return self


class FloatRange(_Strict):
    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        if self.low > self.high:
            raise ValueError(f"low {self.low} > high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"log needs low > 0, got {self.low}")
        return self


class Choice(_Strict):
    choices: list[Any] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> Choice:
        if len({repr(c) for c in self.choices}) != len(self.choices):
            raise ValueError(f"choices repeat a value: {self.choices}")
        return self


def _shape_of(value: Any) -> str:
    """Which form a dimension is written in: a ``choices`` list or a range (so errors name the right one)."""
    if isinstance(value, Choice) or (isinstance(value, dict) and "choices" in value):
        return "as_choices"
    return "as_range"


IntDim = Annotated[Annotated[IntRange, Tag("as_range")] | Annotated[Choice, Tag("as_choices")],
                   Discriminator(_shape_of)]
FloatDim = Annotated[Annotated[FloatRange, Tag("as_range")] | Annotated[Choice, Tag("as_choices")],
                     Discriminator(_shape_of)]


class Budgets(_Strict):
    """Budgets beyond the chip's memories (which come from the target): seconds and pJ per inference."""

    latency_s: float | None = Field(default=None, gt=0)
    energy_pj: float | None = Field(default=None, gt=0)


class _SpaceBase(_Strict):
    input_shape: list[Annotated[int, Field(ge=1)]] = Field(min_length=2)
    num_classes: int = Field(default=10, ge=2)
    lr: FloatDim = FloatRange(low=0.01, high=0.8, log=True)
    fc_layers: IntDim = IntRange(low=1, high=2)
    fc_nodes: IntDim = IntRange(low=10, high=250)
    # per MAC layer: 32 float, 2-16 fixed point, 1 binary weights (BinaryConnect); None: all at default_bits
    bits: Choice | None = None
    default_bits: int = Field(default=8, ge=2, le=32)
    sparsity: Choice | None = None  # per MAC layer, the fraction of weights pruned
    budgets: Budgets = Budgets()

    @model_validator(mode="after")
    def _widths(self) -> _SpaceBase:
        for b in (self.bits.choices if self.bits else []):
            if not isinstance(b, int) or not (b in (BINARY_BITS, FLOAT_BITS) or 2 <= b <= 16):
                raise ValueError(f"bits: {b!r} is not 1 (binary), 2-16 (fixed point) or 32 (float)")
        for s in (self.sparsity.choices if self.sparsity else []):
            if not isinstance(s, int | float) or not 0 <= s < 1:
                raise ValueError(f"sparsity: {s!r} is not in [0, 1)")
        return self


class MLPSpace(_SpaceBase):
    kind: Literal["mlp"]


class CNNSpace(_SpaceBase):
    kind: Literal["cnn"]
    conv_layers: IntDim = IntRange(low=1, high=2)
    filters: IntDim = IntRange(low=8, high=128)
    kernel: IntDim = IntRange(low=1, high=5)
    pool: IntDim = IntRange(low=2, high=4)


class BlocksSpace(_SpaceBase):
    kind: Literal["blocks"]
    stem: IntDim = Choice(choices=[8, 16])
    stages: IntDim = IntRange(low=1, high=3)
    block: Choice = Choice(choices=list(BLOCKS))
    width: IntDim = Choice(choices=[8, 16, 32])
    stride: IntDim = Choice(choices=[1, 2])
    fc_layers: IntDim = IntRange(low=0, high=1)

    @model_validator(mode="after")
    def _known_blocks(self) -> BlocksSpace:
        for b in self.block.choices:
            if b not in BLOCKS:
                raise ValueError(f"block: unknown block {b!r}; valid: {', '.join(BLOCKS)}")
        return self


class _SpaceFile(_Strict):
    space: Annotated[MLPSpace | CNNSpace | BlocksSpace, Field(discriminator="kind")]


Spec = MLPSpace | CNNSpace | BlocksSpace


@dataclass(frozen=True)
class Segment:
    """One piece of the model: ``signature`` says everything that fixes its costs, ``make`` builds it."""

    signature: tuple[Any, ...]
    make: Callable[[], nn.Sequential] = field(compare=False, repr=False)
    mac_layers: tuple[str, ...] = ()  # paths of its conv/linear modules inside the segment


@dataclass(frozen=True)
class Design:
    """One point of a space: the trial's parameters and the network they describe."""

    params: dict[str, Any]
    segments: tuple[Segment, ...]
    input_shape: tuple[int, ...]
    lr: float
    default_bits: int
    layer_widths: dict[str, int]  # MAC layer path -> its bits dimension (only layers with one)
    layer_sparsity: dict[str, float]

    def build(self) -> nn.Sequential:
        return build(self)

    def mac_layers(self) -> list[str]:
        return [f"{i}.{name}" for i, seg in enumerate(self.segments) for name in seg.mac_layers]

    def pricing(self) -> dict[str, Any]:
        """``analyze`` keyword arguments that price the design at its widths: fixed point layers at (b, b),
        binary layers with 1-bit weights done as adds, float layers at 32 bits."""
        layer_bits: dict[str, tuple[int, int]] = {}
        layer_arith: dict[str, str] = {}
        for path, b in self.layer_widths.items():
            if b == BINARY_BITS:
                layer_bits[path] = (1, self.default_bits)  # BinaryConnect: binary weights, activations kept
                layer_arith[path] = "add"
            else:
                layer_bits[path] = (b, b)
        return {"bits": self.default_bits, "layer_bits": layer_bits, "layer_arith": layer_arith}

    def recipe(self) -> list[Any]:
        """The compress steps that make the design's widths and sparsity (configs ``compress.apply`` takes)."""
        from nntailor.compress.prune import PruneConfig
        from nntailor.compress.quant.binary import BinarizeConfig
        from nntailor.compress.quant.ptq import QuantizeConfig

        steps: list[Any] = []
        sparse = {p: s for p, s in self.layer_sparsity.items() if s > 0}
        if sparse:
            steps.append(PruneConfig(sparsity=sparse, layers=sorted(sparse)))
        binary = sorted(p for p, b in self.layer_widths.items() if b == BINARY_BITS)
        if binary:
            steps.append(BinarizeConfig(method="binaryconnect", keep_first_last=False, layers=binary))
        for b in sorted({b for b in self.layer_widths.values() if 2 <= b <= 16}):
            paths = sorted(p for p, w in self.layer_widths.items() if w == b)
            steps.append(QuantizeConfig(scheme="fixed_point", weight_bits=b, act_bits=b, layers=paths))
        return steps


def build(design: Design) -> nn.Sequential:
    """The design's network (untrained, eval mode): one ``nn.Sequential`` child per segment."""
    return nn.Sequential(*[make_segment(seg) for seg in design.segments]).eval()


def make_segment(seg: Segment) -> nn.Sequential:
    """The segment with initial weights drawn from a seed of its signature: a design builds the same weights
    every time, and a segment priced alone has the weights (and so the zeros) it has in the whole model."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(zlib.crc32(repr(seg.signature).encode()))
        module = seg.make().eval()
    # torch's uniform_ init draws an exact 0.0 with probability 2**-24 per element (a 24-bit draw at its
    # midpoint), ~8% of seed 000's largest FC layers: such a weight is moved to the smallest normal float, so a
    # conv or linear layer starts with no zeros by construction and ``search.compile`` knows its non-zero count
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, nn.Conv2d | nn.Linear):
                for w in layer.parameters(recurse=False):
                    w.masked_fill_(w == 0, torch.finfo(w.dtype).tiny)
    return module


Ask = Callable[[str, Any], Any]


class Space:
    """A validated space. ``suggest(trial)`` for Optuna, ``design(params)`` for a parameter dict."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec

    @property
    def budgets(self) -> Budgets:
        return self.spec.budgets

    def suggest(self, trial: Any) -> Design:
        def ask(name: str, dim: Any) -> Any:
            if isinstance(dim, Choice):
                return trial.suggest_categorical(name, dim.choices)
            if isinstance(dim, IntRange):
                return trial.suggest_int(name, dim.low, dim.high, step=dim.step, log=dim.log)
            return trial.suggest_float(name, dim.low, dim.high, log=dim.log)

        return self._walk(ask)

    def design(self, params: dict[str, Any]) -> Design:
        """The design ``params`` describe; keys the space does not reach for these values are ignored."""

        def ask(name: str, dim: Any) -> Any:
            if name not in params:  # KeyError: a sampler's candidate that does not reach this dimension yet
                raise KeyError(f"parameter {name!r} is missing from the design's parameters")
            return params[name]

        return self._walk(ask)

    def _walk(self, ask: Ask) -> Design:
        spec = self.spec
        used: dict[str, Any] = {}

        def get(name: str, dim: Any) -> Any:
            used[name] = ask(name, dim)
            return used[name]

        shape = tuple(spec.input_shape)
        segments: list[Segment] = []
        widths: dict[str, int] = {}
        sparsity: dict[str, float] = {}

        def compress_dims(tag: str, seg_index: int, paths: tuple[str, ...]) -> None:
            for j, path in enumerate(paths):
                suffix = f"{tag}" if len(paths) == 1 else f"{tag}_{j}"
                if spec.bits is not None:
                    widths[f"{seg_index}.{path}"] = int(get(f"bits_{suffix}", spec.bits))
                if spec.sparsity is not None:
                    sparsity[f"{seg_index}.{path}"] = float(get(f"sparsity_{suffix}", spec.sparsity))

        features = math.prod(shape[1:])
        if isinstance(spec, CNNSpace | BlocksSpace):
            if len(shape) != 4:
                raise UserError(f"space input_shape {list(shape)}: a {spec.kind} space needs (N, C, H, W)")
            channels, h, w = shape[1], shape[2], shape[3]
            if isinstance(spec, CNNSpace):
                for i in range(int(get("conv_layers", spec.conv_layers))):
                    out, k, p = int(get(f"filters_{i}", spec.filters)), int(get(f"kernel_{i}", spec.kernel)), \
                        int(get(f"pool_{i}", spec.pool))
                    seg, h, w = _conv_pool(channels, out, k, p, h, w)
                    compress_dims(f"conv{i}", len(segments), seg.mac_layers)
                    segments.append(seg)
                    channels = out
            else:
                stem = int(get("stem", spec.stem))
                seg = _stem(channels, stem)
                compress_dims("stem", len(segments), seg.mac_layers)
                segments.append(seg)
                channels = stem
                for i in range(int(get("stages", spec.stages))):
                    kind = str(get(f"block_{i}", spec.block))
                    out, stride = int(get(f"width_{i}", spec.width)), int(get(f"stride_{i}", spec.stride))
                    if stride > 1 and min(h, w) < 2:
                        stride = 1  # the map is 1x1 already: a strided block would keep it at 1x1 anyway
                    seg = _block(kind, channels, out, stride)
                    compress_dims(f"block{i}", len(segments), seg.mac_layers)
                    segments.append(seg)
                    channels, h, w = seg.signature[-1], (h - 1) // stride + 1, (w - 1) // stride + 1
                segments.append(_global_pool())
                h = w = 1
            features = channels * h * w
        for i in range(int(get("fc_layers", spec.fc_layers))):
            nodes = int(get(f"fc_nodes_{i}", spec.fc_nodes))
            seg = _dense(features, nodes, relu=True, flatten=i == 0)
            compress_dims(f"fc{i}", len(segments), seg.mac_layers)
            segments.append(seg)
            features = nodes
        after_dense = bool(segments) and segments[-1].signature[0] == "dense"
        seg = _dense(features, spec.num_classes, relu=False, flatten=not after_dense)
        compress_dims("out", len(segments), seg.mac_layers)
        segments.append(seg)
        lr = float(get("lr", spec.lr))
        return Design(params=used, segments=tuple(segments), input_shape=shape, lr=lr,
                      default_bits=spec.default_bits, layer_widths=widths, layer_sparsity=sparsity)


def _conv_pool(cin: int, cout: int, k: int, pool: int, h: int, w: int) -> tuple[Segment, int, int]:
    # padding k // 2 never shrinks the map (odd k keeps it, even k grows it by one), so seed 000's 5x5 kernels
    # and 4x4 pools stay valid on small inputs; a pool never exceeds the map it pools
    pad = k // 2
    h, w = h + 2 * pad - k + 1, w + 2 * pad - k + 1
    p = max(1, min(pool, h, w))

    def make() -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, k, padding=pad), nn.ReLU(), nn.MaxPool2d(p))

    return Segment(("conv_pool", cin, cout, k, p, h, w), make, ("0",)), h // p, w // p


def _dense(fin: int, fout: int, *, relu: bool, flatten: bool) -> Segment:
    def make() -> nn.Sequential:
        layers: list[nn.Module] = [nn.Flatten()] if flatten else []
        layers.append(nn.Linear(fin, fout))
        if relu:
            layers.append(nn.ReLU())
        return nn.Sequential(*layers)

    return Segment(("dense", fin, fout, relu, flatten), make, ("1" if flatten else "0",))


def _stem(cin: int, cout: int) -> Segment:
    from nntailor.zoo.mobilenet import ConvBNAct

    def make() -> nn.Sequential:
        return nn.Sequential(ConvBNAct(cin, cout, 3))

    return Segment(("stem", cin, cout), make, ("0.0",))


def _global_pool() -> Segment:
    def make() -> nn.Sequential:
        return nn.Sequential(nn.AdaptiveAvgPool2d(1))

    return Segment(("global_pool",), make, ())


def _block(kind: str, cin: int, cout: int, stride: int) -> Segment:
    """One zoo block; the signature ends with its output channels."""
    from nntailor.zoo.mobilenet import DepthwiseSeparable, InvertedResidual
    from nntailor.zoo.resnet import Bottleneck, conv1x1
    from nntailor.zoo.shift import ShiftBlock
    from nntailor.zoo.squeezenet import Fire

    if kind == "depthwise_separable":
        def make() -> nn.Sequential:
            return nn.Sequential(DepthwiseSeparable(cin, cout, stride))
        paths: tuple[str, ...] = ("0.dw.0", "0.pw.0")
    elif kind == "inverted_residual":
        def make() -> nn.Sequential:
            return nn.Sequential(InvertedResidual(cin, cout, stride, expand_ratio=6))
        paths = ("0.conv.0.0", "0.conv.1.0", "0.conv.2")
    elif kind == "bottleneck":
        planes = max(1, cout // Bottleneck.expansion)
        cout = planes * Bottleneck.expansion

        def make() -> nn.Sequential:
            down = None
            if stride != 1 or cin != cout:
                down = nn.Sequential(conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))
            return nn.Sequential(Bottleneck(cin, planes, stride, down))
        paths = ("0.conv1", "0.conv2", "0.conv3") + (("0.downsample.0",) if stride != 1 or cin != cout else ())
    elif kind == "shift":
        def make() -> nn.Sequential:
            return nn.Sequential(ShiftBlock(cin, cout, stride))
        paths = ("0.conv1", "0.conv2") + (("0.shortcut.0",) if stride != 1 or cin != cout else ())
    elif kind == "fire":
        # Fire has no stride: a strided stage is Fire then a 2x2 max pool (SqueezeNet pools between Fires)
        squeeze, e = max(1, cout // 8), max(1, cout // 2)
        cout = 2 * e

        def make() -> nn.Sequential:
            layers: list[nn.Module] = [Fire(cin, squeeze, e, e)]
            if stride > 1:
                layers.append(nn.MaxPool2d(stride, stride, ceil_mode=True))
            return nn.Sequential(*layers)
        paths = ("0.squeeze", "0.expand1x1", "0.expand3x3")
    else:
        raise UserError(f"unknown block {kind!r}; valid: {', '.join(BLOCKS)}")
    return Segment((kind, cin, stride, cout), make, paths)


def _format(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = [str(p) for p in first["loc"] if p not in ("space",) and not str(p).startswith(("function-", "tagged"))]
    loc = [p for p in loc if p not in ("mlp", "cnn", "blocks", "as_range", "as_choices")]
    msg = str(first["msg"]).removeprefix("Value error, ")
    return f"{'.'.join(loc)}: {msg}" if loc else msg  # model-level checks name their field themselves


def space_from_dict(data: object, origin: str = "space") -> Space:
    if not isinstance(data, dict):
        raise UserError(f"{origin}: expected a mapping with a 'space' entry, got {type(data).__name__}")
    kinds = ("mlp", "cnn", "blocks")
    inner = data.get("space")
    if isinstance(inner, dict) and inner.get("kind") not in kinds:
        raise UserError(f"{origin}: kind: {inner.get('kind')!r} is not one of {', '.join(kinds)}")
    try:
        return Space(_SpaceFile.model_validate(data).space)
    except ValidationError as err:
        raise UserError(f"{origin}: {_format(err)}") from None


def load_space(path: str | Path) -> Space:
    """Read a space YAML (``space: {kind: cnn, input_shape: [1, 1, 28, 28], filters: {low: 8, high: 128}}``)."""
    return space_from_dict(read_yaml(path, "space"), origin=f"space {path}")
