"""Rich tables for an analysis dictionary (``Report.to_dict()``)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from nntailor.report.format import (
    BYTE_UNITS,
    ENERGY_UNITS,
    format_bytes,
    format_count,
    format_energy,
    format_time,
    unit_for,
)

# What each counting tool adds to the published MAC count, so the disagreement is explained.
COUNT_LIKE_NOTES = {
    "fvcore": "MACs (called flops), no bias; adds BN, LayerNorm, adaptive avg pooling, upsampling",
    "thop": "MACs of the module classes it knows, no bias; adds BN 2-4 x numel, avg pooling, softmax",
    "ptflops": "pytorch backend: MACs + bias, BN, activations, pooling (some activations twice)",
    "ptflops_aten": "aten backend: MACs + one add per output of a biased layer",
    "torchinfo": "mult-adds: MACs + bias and BN parameter counts",
    "flopcounter": "torch.utils.flop_counter: 2 x MACs, no bias or BN",
}


def render_analysis(result: dict[str, Any], console: Console, *, layers: bool = True) -> None:
    totals = result["totals"]
    if layers:
        table = Table(title=f"{result['model']} on {result['target']}", show_lines=False)
        for col, justify in (
            ("layer", "left"), ("op", "left"), ("output", "right"), ("MACs", "right"), ("params", "right"),
            ("act", "right"), ("energy", "right"), ("latency", "right"), ("AI (norm.)", "right"), ("bound", "left"),
        ):
            table.add_column(col, justify=justify)  # type: ignore[arg-type]
        for layer in result["layers"]:
            if layer["bound"] == "view" or layer.get("fused_into"):
                continue  # views and folded/fused/constant layers: no work, no buffer of their own
            table.add_row(
                layer["name"], layer["op"], "x".join(map(str, layer["output_shape"])),
                format_count(layer["macs"]), format_count(layer["params"]), format_bytes(layer["act_bytes"]),
                format_energy(layer["energy_pj"]), format_time(layer["latency_s"]),
                f"{layer['arith_intensity']:.1f} ({layer['normalized_arith_intensity']:.2f})", layer["bound"],
            )
        console.print(table)

    summary = Table(show_header=False, title="totals", title_justify="left")
    summary.add_column("what")
    summary.add_column("value", justify="right")
    bits = result["bits"]
    rows = [
        ("MACs", f"{totals['macs']:,}"),
        ("non-zero MACs", f"{totals['nz_macs']:,}"),
        ("params", f"{totals['params']:,}"),
        ("non-zero params", f"{totals['nz_params']:,}"),
        (f"BOPs (w{bits['weights']} a{bits['activations']})", f"{totals['bops']:,}"),
        ("weights", format_bytes(totals["weight_bytes"])),
        ("flash", format_bytes(totals["flash_bytes"])),
        ("I/O", {"float": "float32 (QUANTIZE in, DEQUANTIZE out)"}.get(result.get("io", "int8"), "int8")),
        ("peak SRAM (TFLM arena head, greedy plan)", format_bytes(totals["peak_sram_bytes"])),
        ("  live-set lower bound", format_bytes(totals["act_lower_bound_bytes"])),
        (f"energy ({result['energy_model']})", format_energy(totals["energy_pj"])),
        ("latency", format_time(totals["latency_s"])),
    ]
    if result.get("arena_tail_in_verdict", True):  # an accelerator runs no TFLM: its tail is not shown
        at = next(i for i, (what, _) in enumerate(rows) if what == "  live-set lower bound") + 1
        rows[at:at] = [
            ("TFLM persistent tail", format_bytes(totals.get("arena_tail_bytes", 0))),
            ("  arena (head + tail)", format_bytes(totals["peak_sram_bytes"] + totals.get("arena_tail_bytes", 0))),
        ]
    for tool, count in result.get("count_like", {}).items():
        rows.append((f"as {tool} counts", f"{count:,}  ({COUNT_LIKE_NOTES.get(tool, '')})"))
    for what, value in rows:
        summary.add_row(what, value)
    console.print(summary)
    if result["unpriced"]:
        console.print(f"[yellow]unpriced ops (counted as other): {'; '.join(result['unpriced'])}[/yellow]")
    if result["fits"]:
        console.print(f"[bold green]FITS[/bold green] {result['target']}")
    else:
        verdict = f"[bold red]DOES NOT FIT[/bold red] {result['target']}: " + "; ".join(result["violations"])
        console.print(verdict, soft_wrap=True)
    if result.get("verdict_note"):
        console.print(f"[yellow]{result['verdict_note']}[/yellow]", soft_wrap=True)


def _widths(row: dict[str, Any]) -> str:
    """'32/32', '8/8', 'mixed 2–8/8': weight / activation widths of the row's MAC layers."""
    parts = []
    for key in ("w_bits", "a_bits"):
        widths = row.get(key) or []
        parts.append("-" if not widths else str(widths[0]) if len(widths) == 1 else f"{widths[0]}–{widths[-1]}")
    mixed = any(len(row.get(key) or []) > 1 for key in ("w_bits", "a_bits"))
    return ("mixed " if mixed else "") + "/".join(parts)


def render_compression(result: dict[str, Any], console: Console) -> None:
    """Before/after table of a compress run (``compress.json``); each label names the unit its values are in."""
    before, after = result["before"], result["after"]
    bits = result.get("bits")
    assumed = (f"unquantized layers priced at {bits} bits (--bits)" if bits is not None
               else "each row at the widths its model has; unquantized layers as 32-bit float")
    console.print(f"{result['model']} on {result['data']}, priced on {result['target']}: {assumed}")
    table = Table()
    for col in ("", "before", "after", "after / before"):
        table.add_column(col, justify="right" if col else "left")
    table.add_row("w/a bits", _widths(before), _widths(after), "-")
    percent = (("%", 0.01),)
    rows = [("accuracy", "accuracy", percent), ("params", "params", None), ("non-zero params", "nz_params", None),
            ("MACs", "macs", None), ("non-zero MACs", "nz_macs", None), ("BOPs", "bops", None),
            ("energy", "energy_pj", ENERGY_UNITS), ("peak SRAM", "peak_sram_bytes", BYTE_UNITS),
            ("flash", "flash_bytes", BYTE_UNITS), ("compressed", "compressed_bytes", BYTE_UNITS)]
    for label, key, units in rows:
        b, a = before[key], after[key]
        ratio = f"{a / b:.3f}" if b else "-"
        if units is None:
            table.add_row(label, f"{b:,}", f"{a:,}", ratio)
            continue
        # one unit per row, the larger value's, so the label names the unit both values are printed in
        unit, scale = unit_for(max(abs(b), abs(a)), units)
        digits = 0 if scale == 1 else 2
        table.add_row(f"{label} ({unit})", f"{b / scale:,.{digits}f}", f"{a / scale:,.{digits}f}", ratio)
    console.print(table)
    if result.get("storage"):
        s = result["storage"]
        console.print(f"Deep Compression storage: {format_bytes(s['original_bytes'])} -> "
                      f"{format_bytes(s['compressed_bytes_huffman'])} ({s['compression_rate_huffman']:.1f}x)")
