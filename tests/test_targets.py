"""The target catalog and user YAML files: datasheet values, field-level errors."""

import pytest

from nntailor import UserError
from nntailor.targets import HOROWITZ_45NM_MULT_PJ, catalog, from_yaml, load

REQUIRED = {"stm32l476", "stm32l4r5", "stm32f746", "stm32h743", "nrf52840", "mps3_an547", "eyeriss", "systolic32"}


def test_catalog_has_the_listed_chips():
    assert set(catalog()) >= REQUIRED
    for name in catalog():
        target = load(name)
        assert target.clock_hz > 0 and target.memories


@pytest.mark.parametrize(
    "name, clock_mhz, sram_kib, flash_kib",
    [
        ("stm32l476", 80, 128, 1024),  # seeds' STM32L4: 80 MHz, 128 KB SRAM
        ("stm32l4r5", 120, 640, 2048),
        ("stm32f746", 216, 320, 1024),
        ("stm32h743", 480, 512, 2048),
        ("nrf52840", 64, 256, 1024),
    ],
)
def test_mcu_datasheet_values(name, clock_mhz, sram_kib, flash_kib):
    t = load(name)
    assert t.clock_hz == clock_mhz * 1e6
    assert t.home("activations").size_bytes == sram_kib * 1024
    assert t.home("weights").size_bytes == flash_kib * 1024


def test_horowitz_defaults():
    assert HOROWITZ_45NM_MULT_PJ["int8"] == 0.2 and HOROWITZ_45NM_MULT_PJ["fp32"] == 3.7
    t = load("stm32l476")
    assert t.energy.mac("fp32") == pytest.approx(3.7 + 0.9)


def test_systolic_array_is_32x32():
    assert load("systolic32").compute.pes == 32 * 32


def test_name_is_case_and_dash_insensitive():
    assert load("STM32L476").name == "stm32l476"
    assert load("MPS3-AN547").name == "mps3_an547"


def test_unknown_target_lists_the_catalog():
    with pytest.raises(UserError, match="unknown target 'stm99'.*stm32l476"):
        load("stm99")


def _write(tmp_path, text):
    path = tmp_path / "chip.yaml"
    path.write_text(text)
    return path


GOOD = """
name: mychip
kind: mcu
clock_hz: 48.0e6
compute: {cycles_per_mac: {default: {int8: 5}}}
memories:
  - {name: sram, size_bytes: 65536, read_pj_per_byte: 5, holds: [activations], stores: [inputs, outputs]}
  - {name: flash, size_bytes: 262144, read_pj_per_byte: 20, holds: [weights], stores: [weights]}
"""


def test_user_yaml_loads(tmp_path):
    t = load(str(_write(tmp_path, GOOD)))
    assert t.name == "mychip" and t.home("weights").name == "flash"


@pytest.mark.parametrize(
    "change, field",
    [
        (("size_bytes: 65536", "size_bytes: 0"), "memories.0.size_bytes"),
        (("size_bytes: 65536", "size_bytes: -4"), "memories.0.size_bytes"),
        (("clock_hz: 48.0e6", "clock_hz: fast"), "clock_hz"),
        (("kind: mcu", "kind: toaster"), "kind"),
        (("kind: mcu", "kind: mcu\nsram_kb: 3"), "sram_kb"),
        (("{default: {int8: 5}}", "{dflt: {int8: 5}}"), "compute.cycles_per_mac"),
        (("holds: [weights], ", ""), "no memory holds weights"),
    ],
)
def test_bad_field_is_named(tmp_path, change, field):
    with pytest.raises(UserError, match=field.replace(".", r"\.")):
        from_yaml(_write(tmp_path, GOOD.replace(*change)))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load(str(tmp_path / "nope.yaml"))
    with pytest.raises(UserError, match="not valid YAML"):
        from_yaml(_write(tmp_path, "name: [unclosed"))
    with pytest.raises(UserError, match="expected a mapping"):
        from_yaml(_write(tmp_path, "- just\n- a list\n"))


def test_yaml_is_loaded_safely(tmp_path):
    # A python/object tag must not be constructed.
    with pytest.raises(UserError, match="not valid YAML"):
        from_yaml(_write(tmp_path, "!!python/object/apply:os.system ['true']"))


def test_loading_a_target_keeps_catalog_a_function():
    # the catalog folder used to be a subpackage whose import replaced nntailor.targets.catalog with a module
    import nntailor.targets as targets

    targets.load("stm32l476")
    from nntailor.targets import catalog

    assert callable(catalog) and "stm32l476" in catalog()
