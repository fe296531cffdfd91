"""Command line of the training package: train, list, rollback, generate, report, export-triton.

Exit codes: 0 done; 1 a run finished but was not promoted, or failed unexpectedly;
2 bad input (unknown task, bad spec, bad CSV, bad arguments), nothing written to the registry.

Messages quote user text (spec rules, CSV headers, file names), so rich never parses markup or
emoji codes here: the consoles have both off and our own styling is given as `Text` styles.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from service.manifest import NETWORK, Manifest, ManifestError, task_dirs
from training import registry
from training.data import DataError
from training.export import ParityError
from training.gate import DEFAULT_TOLERANCE
from training.generators import UnknownSource, generate
from training.model_card import best_baseline, comparison_sentence, imputed_text
from training.quality import DataQuality
from training.report import write_model_card
from training.spec import SpecError, TaskSpec, builtin_tasks, load_spec, load_task
from training.train import (
    DEFAULT_SEED,
    NoDataError,
    StepFactory,
    TrainOptions,
    TrainResult,
    train,
)
from training.triton import export_triton

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
DEFAULT_CV_FOLDS = TrainOptions.cv_folds  # the run's own default, so the two cannot drift
BAD_INPUT = (
    SpecError,
    DataError,
    NoDataError,
    UnknownSource,
    registry.RegistryError,
    ManifestError,
)

# Wide enough for the summary table when output is piped (rich assumes 80 columns then).
WIDTH = shutil.get_terminal_size((160, 24)).columns
out = Console(highlight=False, markup=False, emoji=False, width=WIDTH)
err = Console(stderr=True, highlight=False, markup=False, emoji=False, width=WIDTH)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run one command; expected errors are one line, no traceback."""
    args = _parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except BAD_INPUT as exc:
        _say(err, ("error:", "red"), f" {exc}")
        return EXIT_BAD_INPUT
    except ParityError as exc:
        _say(err, ("error:", "red"), f" {exc}")
        return EXIT_FAILED
    except OSError as exc:
        cause = f" cannot write {exc.filename or 'a file'}: {exc.strerror or exc}"
        _say(err, ("error:", "red"), cause)
        return EXIT_FAILED
    return code


def _say(console: Console, *parts: str | tuple[str, str]) -> None:
    """Print one line: strings are literal text, (text, style) pairs are styled; long lines are
    left to the terminal rather than wrapped by rich, so a message stays one line when piped."""
    console.print(Text.assemble(*parts), soft_wrap=True)


def cmd_train(args: argparse.Namespace) -> int:
    specs = _specs(args)
    options = TrainOptions(
        out=args.out,
        seed=args.seed,
        rows=args.rows,
        data=args.data,
        force=args.force,
        search=args.search,
        tolerance=args.tolerance,
        cv_folds=args.cv_folds,
        keep=args.keep,
    )
    results = []
    for spec in specs:
        results.append(train(spec, options, step=_stepper(spec.name, args.quiet)))
        if not args.quiet:
            _say(err, f"{spec.name}: {results[-1].message}")
    out.print(_summary(results))
    for result in results:
        sentence = comparison_sentence(result.manifest)
        if sentence is not None:
            _say(out, f"{result.manifest.name}: {sentence}")
    for result in results:
        _print_missing(result.manifest)
        _print_quality(result.manifest.name, result.quality)
    return EXIT_OK if all(r.promoted for r in results) else EXIT_FAILED


def cmd_list(args: argparse.Namespace) -> int:
    table = Table("task", "version", "current", "created", "ROC AUC", "accuracy", "sample")
    for task_dir in task_dirs(args.out):
        current = registry.current_version(task_dir)
        for version in registry.versions(task_dir):
            try:
                manifest = Manifest.load(task_dir / version)
            except ManifestError as exc:
                table.add_row(task_dir.name, version, "", "", "", "", Text(f"unreadable: {exc}"))
                continue
            m = manifest.metrics
            table.add_row(
                task_dir.name,
                version,
                "*" if version == current else "",
                manifest.created_at.isoformat(),
                f"{m.roc_auc:.4f}",
                f"{m.accuracy:.4f}",
                m.sample,
            )
    out.print(table)
    return EXIT_OK


def cmd_rollback(args: argparse.Namespace) -> int:
    task_dir = _task_dir(args.out, args.task)
    version = registry.rollback(task_dir, args.to)
    _say(out, f"{args.task}: current is now {version}")
    return EXIT_OK


def cmd_generate(args: argparse.Namespace) -> int:
    spec = load_task(args.task)
    sample = generate(spec.source or args.task, args.rows, args.seed)
    sample.frame.to_csv(args.out, index=False)
    _say(out, f"wrote {len(sample.frame)} rows to {args.out}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    folder = _version_dir(args.out, args.task, args.version)
    _say(out, str(write_model_card(folder / "report", Manifest.load(folder)).resolve()))
    return EXIT_OK


def cmd_export_triton(args: argparse.Namespace) -> int:
    folder = _version_dir(args.models, args.task, args.version)
    model_dir = export_triton(folder, args.out)
    _say(out, f"{args.task} {folder.name}: wrote {model_dir / 'config.pbtxt'}")
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    tasks = [*builtin_tasks(), "all"]

    p = commands.add_parser("train", help="train, evaluate, export and promote a task")
    p.add_argument("task", nargs="?", choices=tasks, help="built-in task (or use --spec)")
    p.add_argument("--spec", type=Path, help="a task spec file (TOML) instead of a built-in task")
    p.add_argument("--data", type=Path, help="train on this CSV instead of the built-in data")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--rows", type=_positive, help="rows to generate (or to sample from --data)")
    p.add_argument("--out", type=Path, default=Path("models"), help="registry folder")
    p.add_argument("--force", action="store_true", help="promote even if the quality gate fails")
    p.add_argument("--search", action="store_true", help="time-bounded hyperparameter search")
    p.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="smallest ROC AUC loss against the current version that blocks promotion; a loss "
        "blocks only if its paired bootstrap 95%% interval also excludes zero",
    )
    p.add_argument(
        "--cv-folds",
        type=_cv_folds,
        default=DEFAULT_CV_FOLDS,
        metavar="N",
        help="N-fold cross-validation of the network and the baselines (0 = off)",
    )
    p.add_argument(
        "--keep", type=_positive, default=registry.DEFAULT_KEEP, help="versions to keep per task"
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(run=cmd_train)

    p = commands.add_parser("list", help="tasks, versions, the current one, key metrics")
    p.add_argument("--out", type=Path, default=Path("models"))
    p.set_defaults(run=cmd_list)

    p = commands.add_parser("rollback", help="point current at the previous (or a given) version")
    p.add_argument("task")
    p.add_argument("--to", help="version to make current")
    p.add_argument("--out", type=Path, default=Path("models"))
    p.set_defaults(run=cmd_rollback)

    p = commands.add_parser("generate", help="write a built-in data set as CSV")
    p.add_argument("task", choices=builtin_tasks())
    p.add_argument("--out", type=Path, required=True, help="CSV file to write")
    p.add_argument("--rows", type=_positive)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.set_defaults(run=cmd_generate)

    p = commands.add_parser("report", help="regenerate a version's model card; prints its path")
    p.add_argument("task")
    p.add_argument("--version", help="default: the current version")
    p.add_argument("--out", type=Path, default=Path("models"))
    p.set_defaults(run=cmd_report)

    p = commands.add_parser("export-triton", help="write a Triton / KServe model repository")
    p.add_argument("task")
    p.add_argument("--out", type=Path, required=True, help="model repository folder to write")
    p.add_argument("--version", help="default: the current version")
    p.add_argument("--models", type=Path, default=Path("models"), help="registry folder")
    p.set_defaults(run=cmd_export_triton)
    return parser


def _specs(args: argparse.Namespace) -> list[TaskSpec]:
    if args.spec is not None:
        if args.task is not None:
            raise SpecError("give either a task name or --spec, not both")
        return [load_spec(args.spec)]
    if args.task is None:
        raise SpecError("name a task (" + ", ".join(builtin_tasks()) + ", all) or pass --spec")
    if args.task == "all":
        if args.data is not None:
            raise SpecError("--data trains one task; name it instead of 'all'")
        return [load_task(name) for name in builtin_tasks()]
    return [load_task(args.task)]


def _task_dir(models: Path, task: str) -> Path:
    for task_dir in task_dirs(models):
        if task_dir.name == task:
            return task_dir
    raise registry.RegistryError(f"no task {task!r} in {models}")


def _version_dir(models: Path, task: str, version: str | None) -> Path:
    """A published version's folder: the one named, or the current one."""
    task_dir = _task_dir(models, task)
    version = version or registry.current_version(task_dir)
    if version is None or version not in registry.versions(task_dir):
        raise registry.RegistryError(f"{task}: no such version {version!r}")
    return task_dir / version


def _stepper(task: str, quiet: bool) -> StepFactory:
    @contextlib.contextmanager
    def step(name: str) -> Iterator[None]:
        if quiet:
            yield
            return
        with err.status(Text(f"{task}: {name}...")):  # a str status would be parsed as markup
            yield
        _say(err, f"{task}: {name} ", ("done", "green"))

    return step


def _summary(results: list[TrainResult]) -> Table:
    table = Table(
        "task",
        "version",
        "promoted",
        "ROC AUC",
        "Bayes\nAUC",
        "accuracy",
        "Bayes\nacc.",
        "best baseline",
        "CV ROC AUC\n(mean ± std)",
        "parity\ndiff",
        "seconds",
        title="training summary",
    )
    for r in results:
        m = r.manifest.metrics
        best = best_baseline(r.manifest)
        table.add_row(
            r.manifest.name,
            r.version,
            Text("yes") if r.promoted else Text("no", style="red"),
            f"{m.roc_auc:.4f}",
            _fmt(m.bayes_roc_auc),
            f"{m.accuracy:.4f}",
            _fmt(m.bayes_accuracy),
            "-" if best is None else f"{best.title} {best.metrics.roc_auc:.4f}",
            _cv(r.manifest),
            f"{r.manifest.parity_max_abs_diff:.1e}",
            f"{r.seconds:.1f}",
        )
    return table


def _print_missing(manifest: Manifest) -> None:
    """The features a record may leave out: rule, value used, share missing in training."""
    nullable = [f for f in manifest.features if f.nullable]
    if not nullable:
        return
    _say(out, f"{manifest.name}: may be missing ({len(nullable)} of {len(manifest.features)}):")
    for f in nullable:
        indicator = ", with an indicator input" if f.missing_indicator else ""
        _say(
            out,
            f"  {f.name}: {f.impute} -> {imputed_text(f)}{indicator} "
            f"({f.train_missing_rate:.1%} missing in training)",
        )


def _print_quality(task: str, quality: DataQuality) -> None:
    """The data-quality warnings of a run (warnings only: the run went ahead)."""
    if not quality.warnings:
        _say(out, f"{task}: data quality: no warnings ({quality.rows:,} rows)")
        return
    count = len(quality.warnings)
    _say(
        out,
        f"{task}: data quality: {count} warning{'s' if count > 1 else ''} "
        f"({quality.rows:,} rows; details in the model card)",
    )
    for warning in quality.warnings:
        _say(out, "  ", ("warning:", "yellow"), f" {warning}")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _cv(manifest: Manifest) -> str:
    """The network's cross-validated AUC as mean ± std, or "-" when CV was off."""
    cv = manifest.cross_validation
    if cv is None or NETWORK not in cv.roc_auc:
        return "-"
    return f"{cv.mean(NETWORK):.3f} ± {cv.std(NETWORK):.3f}"


def _cv_folds(text: str) -> int:
    value = int(text)
    if value != 0 and value < 2:
        raise argparse.ArgumentTypeError(
            f"{text} is not a number of folds: give 0 (no cross-validation) or 2 or more"
        )
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


if __name__ == "__main__":
    sys.exit(main())
