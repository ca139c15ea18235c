"""`nntailor --help` and the listing commands start without torch (issue 10, item 9), print unwrapped when piped,
and an unknown flag is one plain line (item 10)."""

import subprocess
import sys

from nntailor.cli import main
from nntailor.targets import load
from nntailor.targets.loader import catalog

HELP_WITHOUT_TORCH = """
import sys, time
start = time.perf_counter()
import nntailor, nntailor.cli
code = nntailor.cli.main(["--help"])
seconds = time.perf_counter() - start
print("torch" in sys.modules, code, f"{seconds:.3f}", file=sys.stderr)
"""


def test_help_does_not_import_torch():
    proc = subprocess.run([sys.executable, "-c", HELP_WITHOUT_TORCH], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    torch_loaded, code, seconds = proc.stderr.split()
    print(f"import nntailor + nntailor --help: {seconds} s")
    assert (torch_loaded, code) == ("False", "0")
    assert "compress" in proc.stdout and "analyze" in proc.stdout


LISTING_WITHOUT_TORCH = """
import sys
import nntailor.cli
codes = [nntailor.cli.main(["zoo"]), nntailor.cli.main(["targets"])]
print("torch" in sys.modules, *codes, file=sys.stderr)
"""


def test_zoo_and_targets_do_not_import_torch():
    # listing needs names and default shapes only; a model module (and torch) loads when a model is built
    proc = subprocess.run([sys.executable, "-c", LISTING_WITHOUT_TORCH], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.split() == ["False", "0", "0"]
    assert "zoo:ds_cnn" in proc.stdout and "stm32l476" in proc.stdout


def test_public_names_resolve_lazily():
    import nntailor

    assert nntailor.load_target("stm32l476").name == "stm32l476"
    assert nntailor.UserError.__module__ == "nntailor.errors"
    assert set(nntailor.__all__) <= set(dir(nntailor))


def test_targets_piped_is_one_line_per_target(capsys):
    assert main(["targets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(catalog())  # not wrapped at 80 columns (eyeriss' line is 90 characters)
    for name, line in zip(catalog(), lines, strict=True):
        assert line.split() == [name, *load(name).description.split()]


def test_zoo_piped_is_one_line_per_model(capsys):
    from nntailor import zoo

    assert main(["zoo"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [f"zoo:{n}" for n in zoo.names()]


def test_unknown_flag_is_one_plain_line(capsys):
    assert main(["analyze", "zoo:lenet5", "--stric"]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", "error: No such option: --stric\n")  # no "(Possible options: --strict)"
    assert main(["analyze", "zoo:lenet5", "--bogus"]) == 2
    assert capsys.readouterr().err == "error: No such option: --bogus\n"  # no "(Possible options: --bits)"
