"""Build C for Cortex-M cores and run it under QEMU: output bytes, exit code, instruction count, sizes.

Toolchain glue only (no torch): Debian's ``gcc-arm-none-eabi`` with newlib's semihosting library
(``librdimon``, from ``libnewlib-arm-none-eabi``) builds a bare-metal ELF from the startup file and the
linker script template in ``deploy/cortexm/``; ``qemu-system-arm`` runs it on an Arm MPS2/MPS3 board
with semihosting. The program reads stdin and writes stdout through semihosting (``SYS_READ`` and
``SYS_WRITE`` on ``:tt``), which QEMU maps to its own stdin and stdout, so raw bytes come back exactly;
main's return value becomes QEMU's exit code (``SYS_EXIT_EXTENDED``, so only its low 8 bits survive).

Instructions per inference come from a small TCG plugin (``deploy/cortexm/insn_count.c``, built with the
host gcc into a cache folder): executed guest instructions, not cycles. QEMU models no pipeline, caches
or wait states, so the count is an ISA-level figure, the same on every board that runs the same code. On
ARMv8.1-M (M55) gcc ends counted loops with the low-overhead `LE`; QEMU executes it every iteration, where the
architecture lets silicon with a loop cache skip it, so the M55 figure can exceed the core's by one per trip.

Cortex-M0 has no board of its own in QEMU 7.2's MPS2 family, and those boards accept only their own
CPU. The M0 build uses ``-mcpu=cortex-m0`` (ARMv6-M, a subset of the ARMv7-M Thumb ISA) and runs on
mps2-an385, the Cortex-M3 board: the code and its instruction count are the M0's, but the emulated CPU
would also accept ARMv7-M instructions that a real M0 faults on. QEMU's ``microbit`` machine has a real
Cortex-M0 model, with 16 KiB of RAM: too small for most models, so it is not the default.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from nntailor.errors import UserError

KiB = 1024
MiB = 1024 * KiB

# The program's stack and newlib's heap (stdio allocates its 1 KiB buffers there), reserved by the linker
# script so that they count in static RAM; generated code that needs more passes its own sizes to build().
STACK_SIZE = 16 * KiB
HEAP_SIZE = 8 * KiB

CFLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-mthumb", "-ffunction-sections", "-fdata-sections")


@dataclass(frozen=True)
class Core:
    """A Cortex-M core as gcc targets it and the QEMU board that runs it (memories from QEMU's board code)."""

    name: str
    cflags: tuple[str, ...]
    machine: str
    flash_origin: int
    flash_size: int
    ram_origin: int
    ram_size: int
    fpu: bool
    simd32: bool  # ACLE __ARM_FEATURE_SIMD32: the DSP extension's packed 16-bit MACs (SMLAD)


# MPS2 AN385/AN386/AN500: 4 MiB SSRAM1 at 0x0 (code) and 4 MiB SSRAM2/3 at 0x20000000 (data).
# MPS3 AN547: 512 KiB ITCM at 0x0 and 512 KiB DTCM at 0x20000000 (REFERENCES, toolchains).
CORES: dict[str, Core] = {
    core.name: core
    for core in (
        Core("cortex-m0", ("-mcpu=cortex-m0", "-mfloat-abi=soft"), "mps2-an385",
             0x0, 4 * MiB, 0x20000000, 4 * MiB, fpu=False, simd32=False),
        Core("cortex-m3", ("-mcpu=cortex-m3", "-mfloat-abi=soft"), "mps2-an385",
             0x0, 4 * MiB, 0x20000000, 4 * MiB, fpu=False, simd32=False),
        Core("cortex-m4", ("-mcpu=cortex-m4", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"), "mps2-an386",
             0x0, 4 * MiB, 0x20000000, 4 * MiB, fpu=True, simd32=True),
        Core("cortex-m7", ("-mcpu=cortex-m7", "-mfloat-abi=hard", "-mfpu=fpv5-d16"), "mps2-an500",
             0x0, 4 * MiB, 0x20000000, 4 * MiB, fpu=True, simd32=True),
        Core("cortex-m55", ("-mcpu=cortex-m55", "-mfloat-abi=hard"), "mps3-an547",
             0x0, 512 * KiB, 0x20000000, 512 * KiB, fpu=True, simd32=True),
    )
}

# Tool → the Debian package that ships it; a missing tool is the user's machine to fix, in one line.
PACKAGES = {
    "arm-none-eabi-gcc": "gcc-arm-none-eabi",
    "arm-none-eabi-size": "binutils-arm-none-eabi",
    "arm-none-eabi-objdump": "binutils-arm-none-eabi",
    "arm-none-eabi-nm": "binutils-arm-none-eabi",
    "arm-none-eabi-readelf": "binutils-arm-none-eabi",
    "qemu-system-arm": "qemu-system-arm",
    "gcc": "gcc",
}
NEWLIB_PACKAGE = "libnewlib-arm-none-eabi"

# QEMU without -nographic: its stdio multiplexer would read fd 0 too (racing semihosting for input) and
# treat Ctrl-A x in the input as "quit". No display, monitor or serial port; semihosting alone does I/O.
QEMU_FLAGS = ("-display", "none", "-monitor", "none", "-serial", "none", "-semihosting")


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    stdout_bytes: bytes
    instructions: int | None  # executed instructions (not cycles); None when not counted
    stderr: bytes = b""  # QEMU's own messages (a kernel it could not load, a bad option)


def core_spec(core: str) -> Core:
    if core not in CORES:
        raise UserError(f"unknown Cortex-M core {core!r}; known: {', '.join(CORES)}")
    return CORES[core]


def tool(name: str) -> str:
    """Absolute path of a toolchain program, or a UserError naming the Debian package to install."""
    path = shutil.which(name)
    if path is None:
        raise UserError(f"{name} not found: install the Debian package {PACKAGES[name]}")
    return path


def _check_newlib(gcc: str, cflags: Sequence[str]) -> None:
    # gcc prints the bare name back when the library is in none of its multilib folders.
    found = subprocess.run([gcc, *cflags, "-print-file-name=librdimon.a"], capture_output=True, text=True, check=True)
    if not os.path.isabs(found.stdout.strip()):
        raise UserError(f"newlib's librdimon.a not found for arm-none-eabi-gcc: install the Debian package "
                        f"{NEWLIB_PACKAGE}")


def _data(name: str) -> Path:
    return Path(str(resources.files("nntailor.deploy").joinpath("cortexm", name)))


def linker_script(core: Core, stack_size: int = STACK_SIZE, heap_size: int = HEAP_SIZE) -> str:
    text = _data("cortexm.ld.in").read_text()
    fields = {"FLASH_ORIGIN": core.flash_origin, "FLASH_SIZE": core.flash_size, "RAM_ORIGIN": core.ram_origin,
              "RAM_SIZE": core.ram_size, "STACK_SIZE": stack_size, "HEAP_SIZE": heap_size}
    for key, value in fields.items():
        text = text.replace(f"@{key}@", f"0x{value:x}")
    return text


def _call(cmd: Sequence[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(list(cmd), capture_output=True, **kwargs)
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace") if isinstance(done.stderr, bytes) else done.stderr
        raise RuntimeError(f"{what} failed (exit {done.returncode}): {' '.join(map(str, cmd))}\n{err}")
    return done


def build(sources: Sequence[str | Path], core: str, out_dir: str | Path, extra_cflags: Sequence[str] = (), *,
          name: str = "prog", stack_size: int = STACK_SIZE, heap_size: int = HEAP_SIZE) -> Path:
    """Compile and link C99 sources with the startup file for one core; returns the ELF's path.

    ``-O2 -Wall -Wextra -Werror``; unused sections are dropped (``--gc-sections``) so flash counts only
    what the program reaches. A compile error raises RuntimeError with gcc's messages: the sources are
    ours (generated), so it is a bug, not a user error.
    """
    spec = core_spec(core)
    if stack_size <= 0 or heap_size < 0 or stack_size % 8 or heap_size % 8:
        raise UserError(f"stack_size {stack_size} and heap_size {heap_size} must be multiples of 8 (AAPCS), "
                        "stack > 0")
    gcc = tool("arm-none-eabi-gcc")
    _check_newlib(gcc, spec.cflags)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    script = out / f"{spec.name}.ld"
    script.write_text(linker_script(spec, stack_size, heap_size))
    elf = out / f"{name}.elf"
    cmd = [gcc, *CFLAGS, *spec.cflags, *extra_cflags, "--specs=rdimon.specs", "-nostartfiles",
           "-Wl,--gc-sections", "-T", str(script), str(_data("startup.c")), *map(str, sources), "-o", str(elf)]
    _call(cmd, f"arm-none-eabi-gcc for {spec.name}", text=True)
    return elf


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nntailor"


def plugin_path() -> Path:
    """The instruction-counting TCG plugin, built with the host gcc on first use and whenever its source changes.

    The file name carries a hash of the source, so an edited plugin is never confused with an old build.
    """
    source = _data("insn_count.c")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    so = cache_dir() / f"insn_count-{digest}.so"
    if so.exists():
        return so
    gcc = tool("gcc")
    so.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=so.parent)
    os.close(fd)
    try:
        _call([gcc, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden",
               str(source), "-o", tmp], "building the QEMU plugin", text=True)
        os.replace(tmp, so)  # atomic: parallel test workers never load a half-written library
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return so


def run(elf: str | Path, core: str, stdin_bytes: bytes | None = None, timeout: float = 60.0, *,
        count: bool = False) -> RunResult:
    """Run an ELF on the core's QEMU board; ``count`` adds the instruction-counting plugin."""
    spec = core_spec(core)
    qemu = tool("qemu-system-arm")
    if not Path(elf).is_file():
        raise UserError(f"ELF file {str(elf)!r} not found")
    cmd = [qemu, "-M", spec.machine, *QEMU_FLAGS]
    with tempfile.TemporaryDirectory(prefix="nntailor-qemu-") as tmp:
        log = Path(tmp) / "plugin.log"
        if count:
            cmd += ["-plugin", str(plugin_path()), "-d", "plugin", "-D", str(log)]
        cmd += ["-kernel", str(elf)]
        stdin = {"input": stdin_bytes} if stdin_bytes is not None else {"stdin": subprocess.DEVNULL}
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=timeout, **stdin)
        except subprocess.TimeoutExpired as exc:
            raise TimeoutError(f"{Path(elf).name} on {spec.machine} ran past {timeout} s") from exc
        instructions = None
        if count:
            found = re.search(r"^insns: (\d+)$", log.read_text() if log.exists() else "", re.MULTILINE)
            if found is None:
                raise RuntimeError(f"the QEMU plugin wrote no count (exit {done.returncode}): "
                                   f"{done.stderr.decode(errors='replace')}")
            instructions = int(found.group(1))
    return RunResult(done.returncode, done.stdout, instructions, done.stderr)


def insn_count(elf: str | Path, core: str, stdin_bytes: bytes | None = None, timeout: float = 60.0) -> int:
    """Executed instructions of one run, reset to exit (labelled instructions, not cycles).

    The count includes startup, stdio and exit. For instructions per inference run the same ELF twice,
    with one and with two inferences (the count on stdin, say), and subtract: everything else cancels.
    """
    instructions = run(elf, core, stdin_bytes, timeout, count=True).instructions
    assert instructions is not None
    return instructions


def _sections(elf: str | Path) -> dict[str, int]:
    out = _call([tool("arm-none-eabi-size"), "-A", str(elf)], "arm-none-eabi-size -A", text=True).stdout
    sections = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit():
            sections[parts[0]] = int(parts[1])
    return sections


def size(elf: str | Path) -> dict[str, int]:
    """Flash and static RAM in bytes, from ``arm-none-eabi-size``.

    Berkeley format gives text (code and constants), data (initialised RAM, whose load image also sits in
    flash) and bss (zeroed RAM, including the NOLOAD .heap and .stack reservations); ``-A`` gives those two
    reservations, which are reported apart: flash = text + data, static_ram = data + bss (without them),
    ram_reserved = heap + stack.
    """
    out = _call([tool("arm-none-eabi-size"), "-B", str(elf)], "arm-none-eabi-size -B", text=True).stdout
    text, data, bss = (int(v) for v in out.splitlines()[1].split()[:3])
    sections = _sections(elf)
    heap, stack = sections.get(".heap", 0), sections.get(".stack", 0)
    bss -= heap + stack
    return {"text": text, "data": data, "bss": bss, "heap": heap, "stack": stack,
            "flash": text + data, "static_ram": data + bss, "ram_reserved": heap + stack}


def missing_toolchain(core: str) -> str | None:
    """None when this machine can build for ``core``, run it under QEMU and count its instructions; otherwise
    the one line naming the Debian package to install (what ``tool`` and the newlib check would raise)."""
    spec = core_spec(core)
    try:
        for name in ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm", "gcc"):
            tool(name)
        _check_newlib(tool("arm-none-eabi-gcc"), spec.cflags)
    except UserError as exc:
        return str(exc)
    return None
