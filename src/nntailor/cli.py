"""Command line: parse, call the Python API, print. No logic the API lacks.

User errors print one line ``error: ...`` on stderr and exit 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from typer.exceptions import TyperException

from nntailor.atomic import write_json_atomic
from nntailor.errors import UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Tailor neural networks to the hardware that runs them.",
)


def _seed_option(value: int) -> int:
    """Every --seed goes through the one check (nntailor.seeding) before any work starts."""
    from nntailor.seeding import check_seed

    return check_seed(value, "--seed")


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors.")) -> None:
    """--debug is read by main() wherever it stands on the line; declared here for --help."""


@app.command()
def analyze(
    model: str = typer.Argument(..., help="zoo:NAME[?key=value&...] or path/to/file.py:factory_or_class"),
    target: str = typer.Option("stm32l476", "--target", "-t", help="Catalog name or path to a target YAML."),
    input_shape: str | None = typer.Option(None, "--input-shape", help="e.g. 1,3,32,32 (batch included)."),
    bits: int = typer.Option(8, "--bits", help="Weight bit width (activations too unless --act-bits)."),
    act_bits: int | None = typer.Option(None, "--act-bits", help="Activation bit width."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the full report as JSON here."),
    strict: bool = typer.Option(False, "--strict", help="An op without a pricing rule is an error."),
    count_like: list[str] = typer.Option(
        [], "--count-like", help="Also count as fvcore|thop|ptflops|ptflops_aten|torchinfo|flopcounter."
    ),
    energy_model: str | None = typer.Option(None, "--energy-model", help="traffic (default) or opal."),
    layers: bool = typer.Option(True, "--layers/--no-layers", help="Print the per-layer table."),
    plan: bool = typer.Option(False, "--plan", help="Print the arena plan."),
    io: str = typer.Option("int8", "--io", help="The model's input/output type: int8, or float (QUANTIZE first, "
                           "DEQUANTIZE last)."),
    overrides: list[str] = typer.Option(
        [], "--set", help="Override a target field, e.g. --set array.rows=16 --set dataflow=os (repeatable)."
    ),
) -> None:
    """What MODEL costs on a chip: MACs, bytes, energy, latency, peak SRAM, flash; fits or not."""
    from nntailor.cost import analyze as run_analyze
    from nntailor.cost.count_like import TOOLS
    from nntailor.models import load_model, parse_shape
    from nntailor.report.terminal import render_analysis
    from nntailor.targets import load as load_target

    for tool in count_like:
        if tool not in TOOLS:
            raise UserError(f"--count-like {tool!r}: valid tools are {', '.join(TOOLS)}")
    if io not in ("int8", "float"):
        raise UserError(f"--io {io!r}: valid types are int8, float")
    tgt = load_target(target)  # a bad target fails before the model is built
    if overrides:  # so does a bad --set
        from nntailor.targets.override import override

        tgt = override(tgt, overrides)
    shape = parse_shape(input_shape) if input_shape is not None else None  # '' is an error, not the default
    loaded = load_model(model)
    shape = shape or loaded.input_shape
    if shape is None:
        raise UserError(f"{model}: give --input-shape (e.g. 1,3,32,32); the model has no default")
    report = run_analyze(
        loaded.model, shape, tgt, bits=bits, act_bits=act_bits, strict=strict, name=loaded.name,
        energy_model=energy_model, count_like=count_like, io=io,
    )
    result = report.to_dict()
    console = _console()
    render_analysis(result, console, layers=layers)
    if plan:
        report.arena.print_plan()
    if json_out:
        write_json_atomic(json_out, result)
        console.print(f"wrote {json_out}")


@app.command()
def compress(
    model: str = typer.Argument(..., help="zoo:NAME[?key=value&...] or path/to/file.py:factory_or_class"),
    recipe: Path = typer.Option(..., "--recipe", "-r", help="YAML list of steps."),
    data: str = typer.Option(..., "--data", "-d", help="digits, mnist, mnist:DIR, cifar10:DIR or a DIR."),
    target: str = typer.Option("stm32l476", "--target", "-t", help="Catalog name or path to a target YAML."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (resumes if it holds a run)."),
    bits: int | None = typer.Option(
        None, "--bits", help="Width to price layers nothing quantized at (default: as the model has them, float 32)."
    ),
    seed: int = typer.Option(0, "--seed", callback=_seed_option),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Compress MODEL by a recipe; write the model (safetensors), a JSON and a before/after table."""
    from nntailor.compress.recipe import load_recipe
    from nntailor.cost.report import check_bits
    from nntailor.data import load_dataset
    from nntailor.models import load_model
    from nntailor.report.terminal import render_compression
    from nntailor.run_compress import compress_model
    from nntailor.targets import load as load_target

    # everything a user can get wrong is checked before any training starts
    if bits is not None:
        check_bits(bits, "--bits")
    tgt = load_target(target)
    steps = load_recipe(recipe)
    datasets = load_dataset(data, seed=seed)
    loaded = load_model(model, seed=seed)  # initial weights from --seed too, not from whatever ran before
    result = compress_model(loaded.model, steps, datasets, tgt, out, bits=bits, seed=seed, progress=progress,
                            name=loaded.name)
    render_compression(result, _console())
    _console().print(f"wrote {out / 'model.safetensors'} and {out / 'compress.json'}")


@app.command()
def deploy(
    model: str = typer.Argument(..., help="What analyze takes, or a nntailor compress --out folder."),
    target: str = typer.Option(..., "--target", "-t", help="Catalog name or path to a target YAML."),
    calib: str = typer.Option(..., "--calib", help="Dataset name (digits, mnist, ...) or a .npy of float32 inputs."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Output folder: model.tflite, model.onnx, c/ (C99, make host), report.json."
    ),
    input_shape: str | None = typer.Option(None, "--input-shape", help="e.g. 1,1,20,16 (batch included)."),
    formats: list[str] = typer.Option([], "--format", help="c, tflite or onnx; repeatable (default: all)."),
    force: bool = typer.Option(False, "--force", help="Write even if the model does not fit the target."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an --out folder that is not ours."),
) -> None:
    """Integer-only int8 MODEL for a chip: C99, .tflite and QDQ .onnx, each checked against our reference."""
    from nntailor.models import parse_shape
    from nntailor.report.deploy import render_deploy
    from nntailor.run_deploy import deploy_model

    shape = parse_shape(input_shape) if input_shape is not None else None
    result = deploy_model(model, target, calib, out, input_shape=shape, formats=formats, force=force,
                          overwrite=overwrite)
    render_deploy(result, _console())
    _console().print(f"wrote {', '.join(str(out / f) for f in result['files'])}")


@app.command()
def search(
    space: Path = typer.Argument(..., help="Search space YAML (the study is named after the file)."),
    data: str = typer.Option(..., "--data", "-d", help="digits, mnist, mnist:DIR, cifar10:DIR or a DIR."),
    target: str = typer.Option("stm32l476", "--target", "-t", help="Catalog name or path to a target YAML."),
    trials: int = typer.Option(..., "--trials", "-n", help="Complete trials the study should hold."),
    sampler: str = typer.Option("opal", "--sampler", help="opal, tpe, nsga2, gp or random."),
    storage: str | None = typer.Option(None, "--storage", help="Optuna RDB URL (default sqlite:///OUT/study.db)."),
    workers: int = typer.Option(1, "--workers", help="Local processes sharing the storage."),
    dask: str | None = typer.Option(
        None, "--dask",
        help="Run trials on a Dask scheduler at ADDRESS; alone or 'local': a LocalCluster of --workers processes."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder (default: SPACE's name + .search)."),
    objective: str = typer.Option(
        "energy_pj", "--objective", help="Cost beside the error: energy_pj, latency_s, flash_bytes, peak_sram_bytes."
    ),
    pick: str = typer.Option("error", "--pick", help="Design exported to OUT/best: lowest error, or lowest cost."),
    epochs: int = typer.Option(1, "--epochs", help="Training epochs per trial."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="At most this many optimizer steps per trial."),
    seed: int = typer.Option(0, "--seed", callback=_seed_option),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Search SPACE for designs of low error and low cost on the target; resumes from its storage."""
    from nntailor.run_search import prepare_search, run_search

    job = prepare_search(space, data, target, trials, sampler=sampler, storage=storage, workers=workers,
                         out=out or space.with_suffix(".search"), objective=objective, pick=pick, seed=seed,
                         epochs=epochs, max_steps=max_steps, dask=dask)
    result = run_search(job, progress=progress)
    console = _console()
    console.print(f"{result['complete_trials']} complete trials, {len(result['pareto'])} on the front, "
                  f"hypervolume {result['hypervolume']:.4f}; wrote {Path(job.out) / 'pareto.json'}")
    if "best" in result:
        console.print(f"best: trial {result['best']['number']} -> {result['best']['model']} "
                      f"(recipe {result['best']['recipe']})")


@app.command()
def targets() -> None:
    """List the shipped hardware targets."""
    # from the loader: once any load() has imported the catalog/ data subpackage, it shadows the package's catalog()
    from nntailor.targets.loader import catalog, load

    console = _console()
    for name in catalog():
        console.print(f"{name:<14} {load(name).description}")


@app.command()
def zoo() -> None:
    """List the zoo models (use as zoo:NAME)."""
    from nntailor import zoo as zoo_module

    console = _console()
    for name in zoo_module.names():
        shape = "x".join(map(str, zoo_module.input_shape(name)))
        console.print(f"zoo:{name:<16} input {shape}")


def _console() -> Console:
    # Piped output would otherwise be cut to 80 columns and the per-layer table wrapped to pieces.
    return Console(width=None if sys.stdout.isatty() else 160)


INTERRUPTED = 130  # 128 + SIGINT, what shells report for a Ctrl-C


def _usage_message(exc: TyperException) -> str:
    """Click's first line of a usage error, without its "(Possible options: --bits)" guess for an unknown flag:
    difflib's closest name is mostly noise (``--bogus`` -> ``--bits``); ``--help`` lists the real ones."""
    if getattr(exc, "option_name", None) is not None and getattr(exc, "possibilities", None):
        return exc.message  # NoSuchOption (vendored by typer as a private class): the message alone
    return exc.format_message()


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _bare_dask(args: list[str]) -> list[str]:
    """``search --dask`` without an address means ``--dask local`` (typer has no option with an optional value)."""
    if not args or args[0] != "search":
        return args
    return [x for i, a in enumerate(args) for x in
            ([a, "local"] if a == "--dask" and (i + 1 == len(args) or args[i + 1].startswith("-")) else [a])]


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]  # accepted before or after the command
    args = _bare_dask(args)
    try:
        code = app(args=args or ["--help"], standalone_mode=False)
    except UserError as exc:
        if debug:
            raise
        return _fail(str(exc).splitlines()[0] if str(exc) else "invalid input")
    except TyperException as exc:  # usage errors: unknown option, missing argument, bad value
        if debug:
            raise
        return _fail(_usage_message(exc).splitlines()[0])
    except typer.Abort as exc:
        # click turns an EOFError into Abort too (meant for a prompt at end of input): anything but Ctrl-C is
        # a failure of its own, reported as itself, never as "interrupted"
        if exc.__cause__ is not None and not isinstance(exc.__cause__, KeyboardInterrupt):
            raise exc.__cause__ from None
        return _interrupted()
    except KeyboardInterrupt:
        return _interrupted()
    if code == INTERRUPTED:  # typer turns Ctrl-C into Exit(130) itself (typer.core._main), silently
        return _interrupted()
    return code if isinstance(code, int) else 0


def _interrupted() -> int:
    # every long job checkpoints atomically (train.py, run_manifest.py): a rerun picks up where this one stopped
    print("interrupted; run the same command again to resume", file=sys.stderr)
    return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
