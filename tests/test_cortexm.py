"""Cortex-M under QEMU: bytes out equal numpy's, exit codes, instruction counts, sizes.

Expected values come from numpy (the arithmetic), from the disassembly and symbol table of the ELF
(arm-none-eabi-objdump / -nm, independent of QEMU), and from QEMU's own single-step execution log.
A missing tool fails the test with the Debian package's name: no skips.
"""

import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest

from nntailor.deploy import cortexm
from nntailor.errors import UserError

ALL_CORES = ["cortex-m0", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m55"]


def _need(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} missing: install the Debian package {cortexm.PACKAGES[name]}"
    return path


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _c_array(values: np.ndarray) -> str:
    return ", ".join(str(int(v)) for v in values.ravel())


def test_tools_and_newlib_installed():
    for name in cortexm.PACKAGES:
        _need(name)
    lib = subprocess.run([_need("arm-none-eabi-gcc"), "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard",
                          "-mfpu=fpv4-sp-d16", "-print-file-name=librdimon.a"], capture_output=True, text=True)
    assert Path(lib.stdout.strip()).is_absolute(), f"install the Debian package {cortexm.NEWLIB_PACKAGE}"


ROWS, COLS, SHIFT = 8, 64, 7
RNG = np.random.default_rng(11)
WEIGHTS = RNG.integers(-127, 128, size=(ROWS, COLS), dtype=np.int64)
BIAS = RNG.integers(-5000, 5000, size=ROWS, dtype=np.int64)
X = RNG.integers(-128, 128, size=COLS, dtype=np.int64)

# int8 matrix-vector product: int32 accumulator, bias, rounding right shift (round half up), int8 clamp.
# The input comes on stdin; the output is the int8 results then the int32 accumulators, little-endian.
DOT_C = f"""
    #include <stdint.h>
    #include <stdio.h>
    static const int8_t weights[{ROWS} * {COLS}] = {{{_c_array(WEIGHTS)}}};
    static const int32_t bias[{ROWS}] = {{{_c_array(BIAS)}}};
    int main(void) {{
        int8_t x[{COLS}];
        if (fread(x, 1, sizeof x, stdin) != sizeof x) return 99;
        int8_t y[{ROWS}];
        int32_t acc[{ROWS}];
        int clipped = 0;
        for (int r = 0; r < {ROWS}; r++) {{
            int32_t a = bias[r];
            for (int c = 0; c < {COLS}; c++) a += (int32_t)weights[r * {COLS} + c] * x[c];
            acc[r] = a;
            int32_t v = (a + (1 << ({SHIFT} - 1))) >> {SHIFT};
            if (v > 127) {{ v = 127; clipped++; }}
            if (v < -128) {{ v = -128; clipped++; }}
            y[r] = (int8_t)v;
        }}
        fwrite(y, 1, sizeof y, stdout);
        fwrite(acc, 1, sizeof acc, stdout);
        return 40 + clipped;
    }}
"""


@pytest.mark.parametrize("core", ALL_CORES)
def test_int8_dot_product_bytes_equal_numpy(core, tmp_path):
    elf = cortexm.build([_write(tmp_path, "dot.c", DOT_C)], core, tmp_path)
    result = cortexm.run(elf, core, X.astype(np.int8).tobytes())
    acc = WEIGHTS @ X + BIAS
    shifted = (acc + (1 << (SHIFT - 1))) >> SHIFT
    y = np.clip(shifted, -128, 127)
    assert result.stdout_bytes == y.astype(np.int8).tobytes() + acc.astype("<i4").tobytes()
    assert result.exit_code == 40 + int(np.sum(y != shifted))
    assert result.instructions is None


ECHO_C = """
    #include <stdio.h>
    static unsigned char buf[1024];
    int main(void) {
        size_t n = fread(buf, 1, sizeof buf, stdin);
        fwrite(buf, 1, n, stdout);
        return (int)(n & 0x7f);
    }
"""


def test_stdin_stdout_carry_every_byte_value(tmp_path):
    # b"\x01x" is QEMU's -nographic "quit" key: the runner must not put a multiplexer on stdio.
    data = bytes(range(256)) * 3 + b"\x01x\x01c\r\n\x00"
    elf = cortexm.build([_write(tmp_path, "echo.c", ECHO_C)], "cortex-m3", tmp_path)
    result = cortexm.run(elf, "cortex-m3", data)
    assert result.stdout_bytes == data
    assert result.exit_code == len(data) & 0x7F


# One ELF, the trip count on stdin: two runs differ only in the iterations of spin's loop.
LOOP_C = """
    #include <stdint.h>
    #include <stdio.h>
    volatile uint32_t sink;
    __attribute__((noinline)) void spin(uint32_t n) {
        for (uint32_t i = 0; i < n; i++) sink = sink + i;
    }
    int main(void) {
        uint32_t n = 0;
        if (fread(&n, sizeof n, 1, stdin) != 1) return 99;
        spin(n);
        return 0;
    }
"""


def _loop_body_length(elf: Path) -> int:
    """Instructions from the target of spin's backward branch to that branch, read from objdump.

    The branch is a conditional B, or on ARMv8.1-M the low-overhead loop end `le lr, target`.
    """
    dis = subprocess.run([_need("arm-none-eabi-objdump"), "-d", "--no-show-raw-insn", str(elf)],
                         capture_output=True, text=True, check=True).stdout
    body = dis.split("<spin>:\n", 1)[1].split("\n\n", 1)[0]
    insns = [(int(m.group(1), 16), m.group(2)) for m in re.finditer(r"^\s*([0-9a-f]+):\s+(.*)$", body, re.M)]
    branch = re.compile(r"(?:b(?:ne|cc|lo|cs|hs|hi|ls|gt|lt|ge|le|eq)(?:\.n|\.w)?|le\s+lr,)\s+([0-9a-f]+)")
    branches = [(addr, int(t.group(1), 16)) for addr, text in insns if (t := branch.match(text))]
    back = [(addr, target) for addr, target in branches if target < addr]
    assert len(back) == 1, body
    addr, target = back[0]
    return sum(1 for a, _ in insns if target <= a <= addr)


@pytest.mark.parametrize("core", ["cortex-m0", "cortex-m4", "cortex-m55"])
def test_instruction_count_grows_by_loop_body(core, tmp_path):
    elf = cortexm.build([_write(tmp_path, "loop.c", LOOP_C)], core, tmp_path)
    n = 1000
    once = cortexm.insn_count(elf, core, np.uint32(n).tobytes())
    twice = cortexm.insn_count(elf, core, np.uint32(2 * n).tobytes())
    body = _loop_body_length(elf)
    assert body >= 3
    assert twice - once == n * body


@pytest.mark.parametrize("core", ["cortex-m3", "cortex-m55"])
def test_instruction_count_equals_qemu_single_step_log(core, tmp_path):
    # QEMU's own count: with -singlestep every translation block is one instruction and, with chaining
    # off, -d exec logs each execution of a block as one "Trace" line.
    elf = cortexm.build([_write(tmp_path, "loop.c", LOOP_C)], core, tmp_path)
    stdin = np.uint32(50).tobytes()
    log = tmp_path / "exec.log"
    subprocess.run([_need("qemu-system-arm"), "-M", cortexm.CORES[core].machine, *cortexm.QEMU_FLAGS,
                    "-singlestep", "-d", "exec,nochain", "-D", str(log), "-kernel", str(elf)],
                   input=stdin, capture_output=True, check=True, timeout=60)
    traced = sum(1 for line in log.read_text().splitlines() if line.startswith("Trace "))
    assert traced > 1000
    assert cortexm.insn_count(elf, core, stdin) == traced


SIZE_C = """
    #include <stdint.h>
    const int8_t table[TABLE] = {1, 2, 3};
    static int32_t scratch[SCRATCH];
    int32_t initialised[4] = {5, 6, 7, 8};
    int main(void) {
        volatile uint32_t i = 2;
        scratch[i] = table[i] + initialised[i];
        return scratch[i];
    }
"""


def _nm_sizes(elf: Path) -> dict[str, int]:
    out = subprocess.run([_need("arm-none-eabi-nm"), "-S", str(elf)], capture_output=True, text=True,
                         check=True).stdout
    sizes = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4:
            sizes[parts[3]] = int(parts[1], 16)
    return sizes


def test_size_matches_symbol_sizes(tmp_path):
    src = _write(tmp_path, "size.c", SIZE_C)
    small = cortexm.build([src], "cortex-m4", tmp_path / "a", ["-DTABLE=1000", "-DSCRATCH=100"])
    big = cortexm.build([src], "cortex-m4", tmp_path / "b", ["-DTABLE=3000", "-DSCRATCH=600"],
                        stack_size=4096, heap_size=2048)
    nm_small, nm_big = _nm_sizes(small), _nm_sizes(big)
    assert (nm_small["table"], nm_big["table"]) == (1000, 3000)
    assert (nm_small["scratch"], nm_big["scratch"]) == (400, 2400)
    assert nm_small["initialised"] == 16
    s_small, s_big = cortexm.size(small), cortexm.size(big)
    assert s_big["flash"] - s_small["flash"] == 2000
    assert s_big["bss"] - s_small["bss"] == 2000
    assert s_big["data"] == s_small["data"] >= 16
    for s in (s_small, s_big):
        assert s["flash"] == s["text"] + s["data"]
        assert s["static_ram"] == s["data"] + s["bss"]
        assert s["ram_reserved"] == s["heap"] + s["stack"]
    assert (s_small["stack"], s_small["heap"]) == (cortexm.STACK_SIZE, cortexm.HEAP_SIZE)
    assert (s_big["stack"], s_big["heap"]) == (4096, 2048)
    # The reservation is where the linker script put the initial stack pointer.
    addresses = subprocess.run([_need("arm-none-eabi-nm"), str(big)], capture_output=True, text=True).stdout
    symbols = {line.split()[2]: int(line.split()[0], 16) for line in addresses.splitlines() if len(line.split()) == 3}
    assert symbols["__stack_top"] - symbols["__stack_bottom"] == 4096
    assert cortexm.run(big, "cortex-m4").exit_code == 3 + 7


PAIRS = [(0x7FFF8000, 0x00027FFF), (0xFFFF0001, 0x8000FFFF), (0x12345678, 0x9ABCDEF0)]

SIMD_C = f"""
    #include <stdint.h>
    #include <stdio.h>
    #if defined(__ARM_FEATURE_SIMD32)
    #include <arm_acle.h>
    static int32_t dual_mac(uint32_t x, uint32_t y, int32_t acc) {{ return __smlad(x, y, acc); }}
    static const uint8_t path = 1;
    #else
    static int32_t dual_mac(uint32_t x, uint32_t y, int32_t acc) {{
        return acc + (int16_t)(x & 0xffff) * (int16_t)(y & 0xffff) + (int16_t)(x >> 16) * (int16_t)(y >> 16);
    }}
    static const uint8_t path = 0;
    #endif
    static const uint32_t xs[] = {{{", ".join(hex(x) for x, _ in PAIRS)}}};
    static const uint32_t ys[] = {{{", ".join(hex(y) for _, y in PAIRS)}}};
    int main(void) {{
        volatile int32_t acc = 1000;
        int32_t out[{len(PAIRS)}];
        for (int i = 0; i < {len(PAIRS)}; i++) out[i] = dual_mac(xs[i], ys[i], acc);
        fwrite(&path, 1, 1, stdout);
        fwrite(out, 1, sizeof out, stdout);
        return 0;
    }}
"""


def _halves(v: int) -> np.ndarray:
    return np.array([v & 0xFFFF, v >> 16], dtype=np.uint16).view(np.int16).astype(np.int64)


@pytest.mark.parametrize("core", ALL_CORES)
def test_smlad_on_dsp_cores_portable_path_elsewhere(core, tmp_path):
    elf = cortexm.build([_write(tmp_path, "simd.c", SIMD_C)], core, tmp_path)
    result = cortexm.run(elf, core)
    # SMLAD (Arm ARM): acc + x.lo*y.lo + x.hi*y.hi, the 32-bit sum wrapping; none of these pairs overflow.
    expected = np.array([1000 + int(_halves(x) @ _halves(y)) for x, y in PAIRS], dtype="<i4")
    assert result.stdout_bytes == bytes([int(cortexm.CORES[core].simd32)]) + expected.tobytes()
    assert result.stdout_bytes[0] == (core in ("cortex-m4", "cortex-m7", "cortex-m55"))
    dis = subprocess.run([_need("arm-none-eabi-objdump"), "-d", str(elf)], capture_output=True, text=True).stdout
    assert bool(re.search(r"\ssmlad\s", dis)) == cortexm.CORES[core].simd32


def test_missing_tools_name_the_debian_package(tmp_path, monkeypatch):
    src = _write(tmp_path, "echo.c", ECHO_C)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(UserError, match="gcc-arm-none-eabi"):
        cortexm.build([src], "cortex-m3", tmp_path)
    with pytest.raises(UserError, match="qemu-system-arm"):
        cortexm.run(tmp_path / "x.elf", "cortex-m3")
    with pytest.raises(UserError, match="binutils-arm-none-eabi"):
        cortexm.size(tmp_path / "x.elf")
    # A cross gcc without newlib prints the bare library name back for -print-file-name.
    fake = tmp_path / "bin"
    fake.mkdir()
    gcc = fake / "arm-none-eabi-gcc"
    gcc.write_text("#!/bin/sh\necho librdimon.a\n")
    gcc.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake))
    with pytest.raises(UserError, match=cortexm.NEWLIB_PACKAGE):
        cortexm.build([src], "cortex-m3", tmp_path)


def test_unknown_core_and_missing_elf_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="cortex-m99"):
        cortexm.build([], "cortex-m99", tmp_path)
    with pytest.raises(UserError, match="nothere.elf"):
        cortexm.run(tmp_path / "nothere.elf", "cortex-m4")


def test_cortex_m0_build_is_armv6m(tmp_path):
    # The M0 runs on the M3 board (no M0 board in QEMU's MPS2 family), so its ISA is checked from the
    # ELF's build attributes (the whole link, newlib included): ARMv6S-M, Thumb-1 only.
    elf = cortexm.build([_write(tmp_path, "echo.c", ECHO_C)], "cortex-m0", tmp_path)
    attributes = subprocess.run([_need("arm-none-eabi-readelf"), "-A", str(elf)], capture_output=True, text=True,
                                check=True).stdout
    assert re.search(r"Tag_CPU_arch: v6S-M", attributes), attributes
    assert re.search(r"Tag_THUMB_ISA_use: Thumb-1", attributes), attributes


FAULT_C = """
    typedef void (*handler)(void);
    int main(void) {
        volatile unsigned long address = 0x20000000u;  /* RAM, and bit 0 clear: not Thumb state */
        ((handler)address)();
        return 0;
    }
"""


def test_fault_exits_instead_of_hanging(tmp_path):
    # A branch without the Thumb bit is an INVSTATE UsageFault, escalated to HardFault (ARMv7-M ARM B1.5.8);
    # the startup's handler exits with 134, so a crashed program never runs into the timeout.
    elf = cortexm.build([_write(tmp_path, "fault.c", FAULT_C)], "cortex-m4", tmp_path)
    assert cortexm.run(elf, "cortex-m4", timeout=20).exit_code == 134


FLOATS_A = np.random.default_rng(3).standard_normal(16).astype(np.float32)
FLOATS_B = np.random.default_rng(4).standard_normal(16).astype(np.float32)

FLOAT_C = f"""
    #include <stdio.h>
    static const float a[16] = {{{", ".join(f"{v!r}f" for v in FLOATS_A.tolist())}}};
    static const float b[16] = {{{", ".join(f"{v!r}f" for v in FLOATS_B.tolist())}}};
    int main(void) {{
        volatile float acc = 0.0f;  /* volatile: one rounded product and sum per step, in this order */
        for (int i = 0; i < 16; i++) acc = acc + a[i] * b[i];
        float out = acc;
        fwrite(&out, sizeof out, 1, stdout);
        return 0;
    }}
"""


@pytest.mark.parametrize("core", ["cortex-m4", "cortex-m7", "cortex-m55"])
def test_fpu_enabled_and_ieee_single(core, tmp_path):
    # Without the startup's CPACR write the first VMUL is a NOCP UsageFault: exit 134, not the bytes.
    elf = cortexm.build([_write(tmp_path, "float.c", FLOAT_C)], core, tmp_path)
    dis = subprocess.run([_need("arm-none-eabi-objdump"), "-d", str(elf)], capture_output=True, text=True).stdout
    assert re.search(r"\svmul\.f32\s", dis)
    acc = np.float32(0)
    for x, y in zip(FLOATS_A, FLOATS_B, strict=True):
        acc = np.float32(acc + np.float32(x * y))
    result = cortexm.run(elf, core)
    assert (result.exit_code, result.stdout_bytes) == (0, acc.astype("<f4").tobytes())
