"""The compress table: each label names the unit its values are printed in (issue 10, item 10), each row its
widths and the header what ``--bits`` assumed (issue 9, item 5)."""

from rich.console import Console

from nntailor.report.terminal import render_compression

MACS = 2_293_000  # Caffe LeNet-5


def result(bits: int | None) -> dict:
    row = {"accuracy": 0.9812, "params": 431_080, "nz_params": 431_080, "macs": MACS, "nz_macs": MACS,
           "bops": MACS * 1024, "energy_pj": 2.5e6, "peak_sram_bytes": 57_600, "flash_bytes": 1_724_320,
           "compressed_bytes": 1_724_320, "w_bits": [32], "a_bits": [32]}
    after = {**row, "accuracy": 0.9790, "bops": MACS * 64, "energy_pj": 0.8e6, "peak_sram_bytes": 14_400,
             "flash_bytes": 435_140, "compressed_bytes": 435_140, "w_bits": [2, 4, 8], "a_bits": [8]}
    return {"model": "LeNet5", "data": "mnist", "target": "stm32l476", "bits": bits, "before": row, "after": after,
            "storage": None}


def rendered(bits: int | None) -> list[str]:
    console = Console(record=True, width=200)
    render_compression(result(bits), console)
    return console.export_text().splitlines()


def test_table_labels_name_the_units_printed():
    lines = rendered(None)

    def cells(label: str) -> list[str]:
        row = next(ln for ln in lines if ln.strip("│ ").startswith(label))
        return [c.strip() for c in row.strip("│").split("│")]

    assert cells("energy (uJ)") == ["energy (uJ)", "2.50", "0.80", "0.320"]
    assert cells("peak SRAM (KiB)") == ["peak SRAM (KiB)", "56.25", "14.06", "0.250"]
    assert cells("flash (MiB)") == ["flash (MiB)", "1.64", "0.41", "0.252"]
    assert cells("accuracy (%)")[1:3] == ["98.12", "97.90"]
    assert cells("w/a bits") == ["w/a bits", "32/32", "mixed 2–8/8", "-"]
    assert not any("pj" in ln.lower() or "_bytes" in ln for ln in lines)  # no JSON key names as labels
    assert "unquantized layers as 32-bit float" in lines[0]
    assert "unquantized layers priced at 8 bits (--bits)" in rendered(8)[0]
