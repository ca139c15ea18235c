"""A chip as plain data: compute, memories, clock, energy per operation. Validated by pydantic.

Units follow ARCHITECTURE.md: bytes, pJ, Hz, cycles. Every field error names the field, so a bad
YAML gives ``error: target foo.yaml: memories.0.size_bytes: Input should be greater than 0``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from nntailor.errors import UserError

DType = Literal["int8", "int16", "int32", "fp16", "fp32"]
Role = Literal["weights", "inputs", "outputs"]

# Horowitz, "Computing's energy problem", ISSCC 2014, 45 nm, pJ per operation.
# int16 multiply is not in the talk: scaled from int8 by (16/8)^2, since array multipliers grow with
# the square of the width. A MAC is one multiply plus one add at the accumulator width (int32 for
# integer types, the same float type otherwise).
HOROWITZ_45NM_MULT_PJ: dict[str, float] = {"int8": 0.2, "int16": 0.8, "int32": 3.1, "fp16": 1.1, "fp32": 3.7}
HOROWITZ_45NM_ADD_PJ: dict[str, float] = {"int8": 0.03, "int16": 0.05, "int32": 0.1, "fp16": 0.4, "fp32": 0.9}
_ACC = {"int8": "int32", "int16": "int32", "int32": "int32", "fp16": "fp16", "fp32": "fp32"}
HOROWITZ_45NM_MAC_PJ: dict[str, float] = {
    d: round(HOROWITZ_45NM_MULT_PJ[d] + HOROWITZ_45NM_ADD_PJ[_ACC[d]], 6) for d in HOROWITZ_45NM_MULT_PJ
}

# How a layer's multiply-accumulates are done: a multiplier, a shift (power-of-two weights), an add or
# subtract (binary/ternary weights), or XNOR-popcount (binary weights and activations).
ARITH_KINDS = ("mul", "shift", "add", "xnor")
_DTYPE_BYTES = {"int8": 1, "int16": 2, "int32": 4, "fp16": 2, "fp32": 4}

# OPAL's cost proxy (seed 000): energy is a weighted sum of MACs and memory accesses, one memory
# access costing about 100 MACs.
OPAL_MEMORY_WEIGHT = 100.0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Memory(_Strict):
    """One level of the memory hierarchy.

    ``stores`` lists the tensors whose compulsory traffic (each byte once) passes through this level;
    ``per_mac_accesses`` is how many operand accesses each MAC makes here (Eyeriss' RF: read input,
    read weight, read and write the partial sum = 4). Together they give a reuse-perfect traffic
    model; dataflow-specific reuse is the accelerator models' job.
    """

    name: str = Field(min_length=1)
    size_bytes: PositiveInt
    read_pj_per_byte: float = Field(ge=0)
    write_pj_per_byte: float | None = Field(default=None, ge=0)
    bandwidth_bytes_per_cycle: PositiveFloat | None = None
    stores: list[Role] = Field(default_factory=list)
    per_mac_accesses: float = Field(default=0.0, ge=0)
    holds: list[Literal["weights", "activations"]] = Field(default_factory=list)

    @property
    def write_pj(self) -> float:
        return self.read_pj_per_byte if self.write_pj_per_byte is None else self.write_pj_per_byte


class Compute(_Strict):
    """How fast the chip does arithmetic.

    ``cycles_per_mac`` maps an op class (conv, depthwise, pointwise, linear, matmul, default) to
    cycles per MAC for each data type, for the whole chip (a 12x14 PE array does 168 MACs a cycle:
    1/168 cycles per MAC). ``cycles_per_op`` prices the other arithmetic (adds, BN, activations).
    """

    pes: PositiveInt = 1
    cycles_per_mac: dict[str, dict[DType, PositiveFloat]]
    cycles_per_op: dict[DType, PositiveFloat] = Field(default_factory=lambda: {"int8": 1.0, "fp32": 1.0}, min_length=1)
    # Per output element of a conv/linear: bias, requantization (TFLM's MultiplyByQuantizedMultiplier), clamp,
    # store. It is why layers with few input channels cost more per MAC on an MCU.
    cycles_per_output: float = Field(default=0.0, ge=0)
    layer_overhead_cycles: float = Field(default=0.0, ge=0)
    # Zero-skipping hardware (Eyeriss gates zero operands; EIE stores only non-zeros): MACs with a zero
    # weight cost nothing, and weights move compressed, each non-zero carrying a ``sparse_index_bits`` index.
    skip_zeros: bool = False
    sparse_index_bits: int = Field(default=4, ge=0, le=32)

    @field_validator("cycles_per_mac")
    @classmethod
    def _has_default(cls, v: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        if "default" not in v:
            raise ValueError("needs a 'default' entry")
        allowed = {"default", "conv", "depthwise", "pointwise", "linear", "matmul"}
        unknown = set(v) - allowed
        if unknown:
            raise ValueError(f"unknown op class {sorted(unknown)}; valid: {sorted(allowed)}")
        return v


class Energy(_Strict):
    """Energy per operation in pJ, by data type. ``model`` picks the energy formula."""

    model: Literal["traffic", "opal"] = "traffic"
    preset: Literal["horowitz45", "none"] = "horowitz45"
    mac_pj: dict[DType, float] = Field(default_factory=dict)
    op_pj: dict[DType, float] = Field(default_factory=dict)  # one non-MAC arithmetic op (add, compare)
    source: str = ""

    def mac(self, dtype: str) -> float:
        table = dict(HOROWITZ_45NM_MAC_PJ if self.preset == "horowitz45" else {})
        table.update(self.mac_pj)
        return _lookup(table, dtype, "energy.mac_pj")

    def op(self, dtype: str) -> float:
        table = dict(HOROWITZ_45NM_ADD_PJ if self.preset == "horowitz45" else {})
        table.update(self.op_pj)
        return _lookup(table, dtype, "energy.op_pj")

    def mac_as(self, arith: str, dtype: str) -> float:
        """One multiply-accumulate done as ``arith`` (see ``ARITH_KINDS``), from the MAC and add energies.

        ``shift`` (LogNet's power-of-two weights): the activation is shifted by the weight's exponent, a
        barrel shift priced as one add of the operand width, then accumulated (an add of the accumulator
        width). ``add`` (binary or ternary weights, BinaryConnect to TTQ): the weight's sign picks add or
        subtract, one accumulator add. ``xnor`` (BNN, XNOR-Net: both operands 1 bit): an XNOR-popcount step
        of operand width covers that many MACs and is priced as one add of that width, plus one accumulator add
        per step. These are assumptions built on Horowitz's adder figures, not measurements of a shift or
        XNOR datapath.
        """
        if arith == "mul":
            return self.mac(dtype)
        accumulate = self.op(_ACC.get(dtype, dtype))
        if arith == "shift":
            return self.op(dtype) + accumulate
        if arith == "add":
            return accumulate
        if arith == "xnor":
            lanes = 8 * _DTYPE_BYTES.get(dtype, 1)
            return (self.op(dtype) + accumulate) / lanes
        raise UserError(f"unknown arithmetic {arith!r}; valid: {', '.join(ARITH_KINDS)}")


# Dataflows (Chen, Emer, Sze, ISCA 2016, section IV; MAGNet, seed 001): which operand stays in the PE while the
# others stream. ws/os/is are also SCALE-Sim's three systolic mappings; ws_los and os_lws are MAGNet's hybrids.
DATAFLOWS = ("ws", "os", "is", "rs", "nlr", "ws_los", "os_lws")
Dataflow = Literal["ws", "os", "is", "rs", "nlr", "ws_los", "os_lws"]
SYSTOLIC_DATAFLOWS = ("ws", "os", "is")


class PEArray(_Strict):
    """The processing-element array of an accelerator: its shape, the register file in each PE, the widths.

    ``rows`` x ``cols`` PEs; for a systolic array, rows are SCALE-Sim's ``ArrayHeight`` and cols its ``ArrayWidth``.
    ``rf_bytes`` is each PE's register file (Eyeriss: 0.5 KB; a systolic PE holds one operand and one sum).
    """

    rows: PositiveInt
    cols: PositiveInt
    rf_bytes: int = Field(default=0, ge=0)
    word_bits: PositiveInt = 8  # operand width on the array (inputs and weights)
    psum_bits: PositiveInt = 32  # partial-sum width

    @property
    def pes(self) -> int:
        return self.rows * self.cols


class Area(_Strict):
    """Area constants in mm^2, so a search can trade silicon for speed (seed 001's co-design)."""

    pe_mm2: float = Field(default=0.0, ge=0)  # one PE: multiplier, adder, control
    rf_mm2_per_byte: float = Field(default=0.0, ge=0)
    sram_mm2_per_byte: float = Field(default=0.0, ge=0)  # on-chip buffers (global buffer, SCALE-Sim's SRAMs)
    source: str = ""


def _lookup(table: dict[str, float], dtype: str, where: str) -> float:
    if dtype in table:
        return table[dtype]
    raise UserError(f"the target's {where} has no entry for {dtype} (it has {', '.join(table) or 'none'})")


class Target(_Strict):
    """A chip. Load one with ``nntailor.targets.load(name_or_path)``."""

    name: str = Field(min_length=1)
    description: str = ""
    kind: Literal["mcu", "accelerator", "cpu"]
    clock_hz: PositiveFloat
    compute: Compute
    energy: Energy = Field(default_factory=Energy)
    memories: list[Memory] = Field(min_length=1)
    # SRAM the runtime needs outside TFLM's arena (stack, buffers of the application); the arena's persistent
    # tail (interpreter structs, op data) is estimated per model by ``cost.tflm_arena``
    runtime_sram_bytes: int = Field(default=0, ge=0)
    runtime_flash_bytes: int = Field(default=0, ge=0)  # inference code
    # an MCU's CPU, as gcc's -mcpu names it: ``nntailor deploy`` builds the generated C for it (deploy.cortexm)
    core: Literal["cortex-m0", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m55"] | None = None
    # accelerators with a PE array: its shape and the dataflow that maps layers onto it (cost.accel prices them)
    array: PEArray | None = None
    dataflow: Dataflow | None = None
    area: Area | None = None
    source: str = ""

    @model_validator(mode="after")
    def _homes(self) -> Target:
        names = [m.name for m in self.memories]
        if len(set(names)) != len(names):
            raise ValueError(f"memory names must be unique, got {names}")
        for role in ("weights", "activations"):
            if not any(role in m.holds for m in self.memories):
                raise ValueError(f"no memory holds {role}: set 'holds' on one of {names}")
        if (self.array is None) != (self.dataflow is None):
            raise ValueError("an accelerator's 'array' and 'dataflow' come together: set both or neither")
        if self.array is not None and self.dataflow in SYSTOLIC_DATAFLOWS:
            self._check_smallest_tile(self.array, self.dataflow)
        return self

    def _check_smallest_tile(self, array: PEArray, dataflow: str) -> None:
        # a systolic fold holds its stationary operand on all rows x cols PEs, filled from the on-chip buffer that
        # stores it (SCALE-Sim's ifmap/filter/ofmap SRAMs): that buffer must take at least one fold's tile
        role = {"ws": "weights", "is": "inputs", "os": "outputs"}[dataflow]
        bits = array.psum_bits if role == "outputs" else array.word_bits
        need = array.pes * bits // 8
        for mem in self.memories:
            if role in mem.stores and not mem.holds and mem.size_bytes < need:
                raise ValueError(f"memory {mem.name} ({mem.size_bytes} B) is smaller than the smallest {role} tile of "
                                 f"the {dataflow} dataflow: {array.rows}x{array.cols} x {bits} bits = {need} B")

    def home(self, role: Literal["weights", "activations"]) -> Memory:
        """The memory a tensor kind lives in between inferences (flash for weights on an MCU)."""
        return next(m for m in self.memories if role in m.holds)

    def cycles_per_mac(self, op_class: str, dtype: str) -> float:
        table = self.compute.cycles_per_mac.get(op_class) or self.compute.cycles_per_mac["default"]
        if dtype in table:
            return table[dtype]
        default = self.compute.cycles_per_mac["default"]
        if dtype in default:
            return default[dtype]
        # A chip without a float unit entry: int8 numbers are the best we have, scaled by width.
        some_dtype, cycles = next(iter(default.items()))
        return cycles * max(1.0, _BITS[dtype] / _BITS[some_dtype])

    def cycles_per_op(self, dtype: str) -> float:
        table = self.compute.cycles_per_op
        return table.get(dtype) or next(iter(table.values()))


_BITS = {"int8": 8, "int16": 16, "int32": 32, "fp16": 16, "fp32": 32}


def dtype_for_bits(bits: int) -> DType:
    """The arithmetic a chip uses for ``bits``-wide operands (sub-byte runs on int8 units)."""
    if bits <= 8:
        return "int8"
    if bits <= 16:
        return "int16"
    return "fp32"
