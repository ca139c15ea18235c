"""Rich tables for a deploy result dictionary (``run_deploy.deploy_model``): checks per layer and the costs."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from nntailor.report.format import format_time


def _b(n: int) -> str:
    return f"{n:,} B"  # exact: these are set beside each other


def _yes(flag: bool | None) -> str:
    return "-" if flag is None else "yes" if flag else "[red]NO[/red]"


def render_deploy(result: dict[str, Any], console: Console) -> None:
    checks = result["checks"]
    tflite, onnx = checks.get("tflite"), checks.get("onnx")
    table = Table(title=f"{result['model']} deployed for {result['target']} (bit-exact against our reference)")
    table.add_column("layer")
    table.add_column("TFLM", justify="right")
    if onnx:
        table.add_column("onnxruntime (differ / max LSB)", justify="right")
    names = list((tflite or onnx or {"layers": {}})["layers"])
    for name in names:
        row = [name, _yes(tflite["layers"].get(name) if tflite else None)]
        if onnx:
            layer = onnx["layers"][name]
            row.append(f"{layer['kind']}: {layer['differ']}/{layer['values']}, max {layer['max_lsb']}")
        table.add_row(*row)
    console.print(table)
    if tflite:
        console.print(f"TFLM output bit-exact over {tflite['samples']} inputs (every layer over "
                      f"{tflite['layer_samples']}): {_yes(tflite['bit_exact'])}")
    c = checks.get("c")
    if c:
        console.print(f"generated C (model_host) output bit-exact over {c['samples']} inputs: {_yes(c['bit_exact'])};"
                      f" its static arena {_b(c['arena_bytes'])}")
    if onnx:
        for name, out in onnx["outputs"].items():
            console.print(f"onnxruntime output {name}: {out['differ']} of {out['values']} values differ, max "
                          f"{out['max_lsb']} LSB")
    a = result["analyze"]
    if tflite:
        arena = tflite["arena"]
        console.print(f"arena: TFLM {_b(arena['head'] + arena['tail'])} (head {_b(arena['head'])}"
                      f" + tail {_b(arena['tail'])}); ours {_b(a['arena_bytes'])} (planned "
                      f"{_b(a['peak_sram_bytes'])} + tail {_b(a['arena_tail_bytes'])})")
    if c and "cortexm" in c:
        _render_cortexm(c["cortexm"], a, console)
    flash = f"flash: analyze {_b(a['flash_bytes'])}"
    if tflite:
        flash += f"; model.tflite {_b(tflite['bytes'])}"
    console.print(flash)
    verdict = "fits" if a["fits"] else "does NOT fit" + (" (written anyway: --force)" if a["forced"] else "")
    console.print(f"latency on {result['target']} (analyze): {format_time(a['latency_s'])}; {verdict}")
    for violation in a["violations"]:
        console.print(f"  {violation}")


def _render_cortexm(m: dict[str, Any], a: dict[str, Any], console: Console) -> None:
    """The build for the target's core under QEMU: bit-exactness, arm-none-eabi-size, instructions, analyze."""
    if not m["built"]:
        console.print(f"{m['core']}: not built: {m['missing']}")
        return
    size = m["size"]
    console.print(f"{m['core']} ({m['machine']} under QEMU) output bit-exact over {m['samples']} inputs: "
                  f"{_yes(m['bit_exact'])}; {m['instructions_per_inference']:,} instructions per inference "
                  "(executed instructions, not cycles)")
    console.print(f"  arm-none-eabi-size: flash {_b(size['flash'])} (text {_b(size['text'])} + data "
                  f"{_b(size['data'])}), static RAM {_b(size['static_ram'])} (data + bss {_b(size['bss'])}, the "
                  f"arena {_b(m['arena_bytes'])} inside bss) + stack {_b(size['stack'])} + heap {_b(size['heap'])}")
    console.print(f"  beside analyze: model constants {_b(m['const_bytes'])} of flash, analyze's flash_bytes "
                  f"{_b(a['flash_bytes'])} (the rest of flash is kernels, harness and newlib); arena "
                  f"{_b(m['arena_bytes'])}, analyze's peak_sram_bytes {_b(a['peak_sram_bytes'])}")
