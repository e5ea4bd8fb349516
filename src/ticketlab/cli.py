"""The `ticketlab` command line. Every user error is one line on stderr and exit code 2.

The arguments are parsed and checked before torch, numba or pandas load (the modules imported here
are light, and each command imports what it runs only after its checks), so that `--help`,
`--version` and a bad flag answer at once.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
from pathlib import Path

from . import __version__
from .core.device import DEVICES
from .core.errors import TicketlabError
from .core.fields import add_dataclass_arguments, dataclass_from_namespace, field_problem
from .core.paths import STDOUT, file_argument, folder_argument
from .data import DATASETS
from .nets.specs import NETS
from .training.config import TrainConfig
from .training.recipes import OPTIMIZERS

# Far above any machine's cores (threads) or seeds (workers); a typo such as 4294967297 would
# otherwise overflow torch's C int, or start a pool sized for it.
MAX_THREADS = 4096
# A results table cut short by a closed pipe (`ticketlab results DIR | head`) exits as a C tool
# killed by SIGPIPE appears to the shell: 128 + 13, quietly.
BROKEN_PIPE_EXIT = 141


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse prints usage too; we want one line
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _runtime_arguments(p: argparse.ArgumentParser, out_help: str) -> None:
    default = "" if "(default:" in out_help else " (default: ./ticketlab-runs)"
    p.add_argument("--out", type=folder_argument, default=Path("ticketlab-runs"), help=out_help + default)
    p.add_argument("--device", default="auto", choices=DEVICES, help="where to train (default: auto = cuda if available)")
    p.add_argument("--data-dir", default=None, help="directory of a non-shipped dataset (fashion-mnist, cifar10)")
    p.add_argument("--download", action="store_true", help="download CIFAR-10 (checksum-verified) if it is missing")
    p.add_argument("--threads", type=int, default=None, help=f"torch threads, of each worker process in a sweep, 1 to {MAX_THREADS} (default: all cores, or cores // workers)")


def _executor_argument(p: argparse.ArgumentParser) -> None:
    from .execution.base import executor_names

    p.add_argument("--executor", default="auto", choices=("auto", *executor_names()),
                   help="how the jobs (one per seed) run: local = one after another in this process, processes = in "
                        "--workers worker processes, ray = as Ray tasks on a local Ray instance or the cluster of "
                        "--address (needs: pip install \"ticketlab[ray]\") (default: auto = local for one worker or one "
                        "job, else processes)")
    p.add_argument("--address", default=None,
                   help="with --executor ray: the Ray cluster to join, e.g. 10.0.0.1:6379 (default: $RAY_ADDRESS, else "
                        "a local Ray instance)")
    p.add_argument("--gpus-per-job", type=float, default=None,
                   help="with --executor ray on CUDA: GPUs each job (seed) reserves, a fraction to share one GPU, e.g. "
                        "0.25 (default: 1)")
    p.add_argument("--ship-runs", action="store_true",
                   help="with --executor ray: tasks send their finished runs back to this machine's --out instead of "
                        "writing it in place (automatic where a node does not see --out)")


def _ray_runtime(ns: argparse.Namespace) -> dict:
    """The Runtime fields of the Ray flags, refused unless --executor ray."""
    given = [flag for flag, value in (("--address", ns.address), ("--gpus-per-job", ns.gpus_per_job),
                                      ("--ship-runs", ns.ship_runs or None)) if value is not None]
    if given and ns.executor != "ray":
        raise TicketlabError(f"{given[0]} is for --executor ray; add --executor ray or drop {given[0]}")
    if ns.gpus_per_job is not None and not 0 < ns.gpus_per_job <= 1024:
        raise TicketlabError(f"--gpus-per-job must be above 0 and at most 1024, got {ns.gpus_per_job:g}")
    return {"address": ns.address, "gpus": ns.gpus_per_job, "ship_runs": ns.ship_runs}


def _repair_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repair", action="store_true",
                   help="retrain finished runs whose files no longer match the checksums recorded when they were written")


def _dry_run_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", action="store_true",
                   help="print what is to do (runs, cohorts, member steps) and the projected time on this machine, "
                        "then exit without training or writing anything")


def _check_count(flag: str, value: int | None, most: int) -> None:
    """Refuse a count flag outside 1..most (None = not given)."""
    if value is not None and not 1 <= value <= most:
        raise TicketlabError(f"{flag} must be between 1 and {most}, got {value}")


def _check_flags(ns: argparse.Namespace, fields: dict[str, type]) -> None:
    """Check flags that override a dataclass's fields against the ranges those fields declare, before
    anything heavy loads (the same check a sweep file's fields get)."""
    for name, cls in fields.items():
        field = next(f for f in dataclasses.fields(cls) if f.name == name)
        problem = field_problem(field, getattr(ns, name))
        if problem is not None:
            raise TicketlabError(f"--{name.replace('_', '-')} {problem}")


def _start_torch(threads: int | None) -> None:
    """Before a command's first torch work: denormals flushed to zero before torch starts its thread
    pool, so that every thread inherits the mode (`core.numerics`), and the thread count."""
    from .core.numerics import flush_denormals

    flush_denormals(check=False)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _cmd_train(ns: argparse.Namespace) -> int:
    config = dataclass_from_namespace(TrainConfig, ns)
    config.validate()
    _check_count("--threads", ns.threads, MAX_THREADS)
    from .core.device import resolve_device
    from .store.files import ensure_writable
    from .experiments.train import read_mask_file, run_train

    _start_torch(ns.threads)
    device = resolve_device(ns.device)
    if ns.mask is not None:
        read_mask_file(ns.mask, config.net_spec(), ns.allow_empty_layers)  # refused before --out is created
    ensure_writable(ns.out)
    run_dir = run_train(config, ns.out, device, ns.data_dir, ns.download, ns.mask, repair=ns.repair,
                        allow_empty_layers=ns.allow_empty_layers)
    print(run_dir)
    return 0


def _cmd_sweep(ns: argparse.Namespace) -> int:
    from .experiments.spec import SweepSpec, flag_name, load_sweep, preset_names, preset_text, scale_name

    if ns.list:
        import tomllib

        for name in preset_names():
            doc = tomllib.loads(preset_text(name))
            print(f"{name:26s} {doc.get('description', '')}")
        return 0
    if ns.preset is None:
        raise TicketlabError("name a preset or a .toml file (ticketlab sweep --list shows the presets)")
    _check_count("--workers", ns.workers, MAX_THREADS)
    _check_count("--threads", ns.threads, MAX_THREADS)
    _check_flags(ns, {"seeds": SweepSpec, "first_seed": SweepSpec, "iterations": TrainConfig,
                      "learning_rate": TrainConfig})
    ray = _ray_runtime(ns)
    overrides = {"seeds": ns.seeds, "first_seed": ns.first_seed, "net": ns.net, "dataset": ns.dataset,
                 "iterations": ns.iterations,
                 "learning_rate": ns.learning_rate, "optimizer": ns.optimizer, "rewind_iteration": ns.rewind_iteration,
                 "scope": ns.scope}
    spec = load_sweep(ns.preset, ns.scale, overrides, flag_name)
    from .core.device import resolve_device
    from .execution.sweep import dry_run, run_sweep
    from .experiments.jobs import Runtime
    from .store.files import ensure_writable

    _start_torch(ns.threads)
    runtime = Runtime(ns.device, ns.data_dir, ns.download, ns.threads, ns.repair, **ray)
    if ns.dry_run:
        print("\n".join(dry_run([spec], ns.out, runtime, ns.workers, ns.executor)))
        return 0

    resolve_device(ns.device)
    ensure_writable(ns.out)
    wall = run_sweep(spec, ns.out, runtime, ns.workers, executor=ns.executor)
    print(f"sweep {spec.name} ({scale_name(spec)}) complete in {wall:.0f} s; see: ticketlab results {ns.out}",
          file=sys.stderr)
    print(ns.out)
    return 0


def _cmd_results(ns: argparse.Namespace) -> int:
    if not ns.dir.is_dir():
        raise TicketlabError(f"{ns.dir} is not a directory: give the --out of a sweep")
    if ns.parquet == STDOUT:
        raise TicketlabError("--parquet writes a binary file, not standard output: give a file path")
    from .core.paths import check_output_file

    for flag, path in (("--csv", ns.csv), ("--parquet", ns.parquet)):
        if path is not None and path != STDOUT:
            check_output_file(path, f"the {flag} file")  # before the table is read: nothing is written on a refusal
    from .analysis.table import format_table, incomplete_sweeps, result_rows, to_csv
    from .store.files import write_output

    rows = result_rows(ns.dir)
    for note in incomplete_sweeps(ns.dir):
        print(f"ticketlab: note: {note}", file=sys.stderr)
    if ns.csv == STDOUT:
        sys.stdout.write(to_csv(rows))
    elif ns.csv is not None:
        data = to_csv(rows).encode("utf-8")
        if ns.csv.name.endswith(".gz"):  # what `report` and `--reference` read back as gzip; mtime 0: same bytes each time
            import gzip

            data = gzip.compress(data, mtime=0)
        write_output(ns.csv, lambda path: path.write_bytes(data))
        print(f"wrote {len(rows)} rows to {ns.csv}", file=sys.stderr)
    elif ns.parquet is not None:
        from .analysis.table import results_frame

        frame = results_frame(ns.dir)
        try:
            write_output(ns.parquet, frame.to_parquet)
        except ImportError:  # pandas' own message is several lines on each engine it tried
            raise TicketlabError('parquet export needs pyarrow: pip install "ticketlab[plot]"') from None
        print(f"wrote {len(rows)} rows to {ns.parquet}", file=sys.stderr)
    else:
        print(format_table(rows))
    return 0


def _results_source(path: Path) -> Path:
    """A sweep directory, or a results table (`ticketlab results --csv`, .csv or .csv.gz)."""
    if path.is_dir() or (path.is_file() and path.name.endswith((".csv", ".csv.gz"))):
        return path
    raise TicketlabError(f"{path} is neither a sweep directory nor a results table (.csv or .csv.gz): give the --out "
                         "of a sweep, or a file written by ticketlab results --csv")


def _cmd_plot(ns: argparse.Namespace) -> int:
    from .reproduce import plot

    files = plot(_results_source(ns.dir), ns.out, ns.band, tuple(ns.format))
    for f in files:
        print(f)
    return 0


def _cmd_report(ns: argparse.Namespace) -> int:
    from .reproduce import report

    html, md = report(_results_source(ns.dir), ns.out, ns.band, reference=ns.reference)
    print(md)
    print(html)
    return 0


def _cmd_reproduce(ns: argparse.Namespace) -> int:
    from .experiments.spec import SweepSpec

    _check_count("--workers", ns.workers, MAX_THREADS)
    _check_count("--threads", ns.threads, MAX_THREADS)
    _check_flags(ns, {"seeds": SweepSpec})
    ray = _ray_runtime(ns)
    from .core.device import resolve_device
    from .reproduce import reproduce, study_specs
    from .store.files import ensure_writable
    from .experiments.jobs import Runtime

    specs = study_specs(ns.scale, ns.seeds)
    _start_torch(ns.threads)
    resolve_device(ns.device)
    out = ns.out if ns.out != Path("ticketlab-runs") else Path(f"ticketlab-reproduce-{ns.scale}")
    if ns.dry_run:
        from .execution.sweep import dry_run

        runtime = Runtime(ns.device, ns.data_dir, ns.download, ns.threads, ns.repair, **ray)
        print("\n".join(dry_run(specs, out, runtime, ns.workers, ns.executor)))
        return 0
    ensure_writable(out)
    html, md = reproduce(specs, out, Runtime(ns.device, ns.data_dir, ns.download, ns.threads, ns.repair, **ray),
                         ns.workers,
                         ns.executor)
    print(f"report: {md}", file=sys.stderr)
    print(html)
    return 0


SUPERMASK_FLAGS = ("criterion", "level", "start", "dwr")


def _cmd_export(ns: argparse.Namespace) -> int:
    if ns.out == STDOUT:
        raise TicketlabError("--out writes a binary file, not standard output: give a .safetensors file path")
    from .core.paths import check_output_file

    check_output_file(ns.out, "ticket")
    from .store.tickets import export_ticket, run_kind, write_ticket

    kind = run_kind(ns.run)
    if kind == "supermask":
        if ns.weights is not None:
            raise TicketlabError(f"--weights is for train, dense and round runs; {ns.run} is a supermask run, whose "
                                 "networks start untrained: choose its start weights with --start, or drop --weights")
        from .experiments.supermask import supermask_ticket

        dwr = None if ns.dwr is None else ns.dwr == "true"
        path = write_ticket(*supermask_ticket(ns.run, ns.criterion, ns.level, ns.start, dwr), ns.out)
        what = f"{ns.criterion}, level {ns.level}, {ns.start} start, DWR {ns.dwr}"
    else:
        given = [f"--{name}" for name in SUPERMASK_FLAGS if getattr(ns, name) is not None]
        if given:
            raise TicketlabError(f"{given[0]} is for a supermask run; {ns.run} is a {kind} run, which holds one "
                                 f"network: drop {', '.join(given)}")
        weights = ns.weights or "final"
        path = export_ticket(ns.run, ns.out, weights)
        what = f"{weights} weights"
    print(f"wrote the ticket of {ns.run} ({what}) to {path}", file=sys.stderr)
    print(path)
    return 0


def _cmd_bench(ns: argparse.Namespace) -> int:
    _check_count("--threads", ns.threads, MAX_THREADS)
    from .bench import run_bench

    _start_torch(ns.threads)
    run_bench(as_json=ns.json, quick=ns.quick, device=ns.device)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ticketlab", description="Lottery-ticket experiments (Zhou et al. 2019), reproducible.")
    parser.add_argument("--version", action="version", version=f"ticketlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="train one dense or masked network", description="Train one network (protocol §3).")
    add_dataclass_arguments(p, TrainConfig)
    p.add_argument("--mask", type=Path, default=None, help=".npz with one array per prunable layer (fc1, ...), bool or all 0/1 (1 = keep): train that subnetwork from the seed's init")
    p.add_argument("--allow-empty-layers", action="store_true",
                   help="with --mask: train even if the mask keeps no weight of some layer (a warning instead of an error)")
    _runtime_arguments(p, "root of the run store; the run goes to OUT/train_<hash>")
    _repair_argument(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("sweep", help="run (or resume) an experiment preset or TOML sweep",
                       description="Run a sweep; rerunning the same command resumes it, skipping finished runs.")
    p.add_argument("preset", nargs="?", help="preset name (see --list) or path to a .toml sweep file")
    p.add_argument("--list", action="store_true", help="list the presets and exit")
    p.add_argument("--scale", default="full", choices=("quick", "full"), help="full = paper protocol; quick = CPU-sized (default: full)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds, 1 to 1000 (default: the preset's)")
    p.add_argument("--first-seed", type=int, default=None,
                   help="first seed (default: the preset's, 0); with --seeds, a slice of the seeds, e.g. one per machine")
    p.add_argument("--net", default=None, choices=NETS, help="network (default: the preset's)")
    p.add_argument("--dataset", default=None, choices=DATASETS,
                   help="dataset; every net builds for its images and classes (default: the preset's, else the net's)")
    p.add_argument("--iterations", type=int, default=None, help="training steps per run, 1 to 10^8; replaces the preset's iterations or epochs (default: the preset's)")
    p.add_argument("--learning-rate", type=float, default=None,
                   help="base learning rate of every run, > 0 (default: the preset's, else the paper's per net)")
    p.add_argument("--optimizer", default=None, choices=OPTIMIZERS,
                   help="optimiser of every run (default: the preset's, else tf1_adam, protocol §3's); its other fields "
                        "(momentum, weight_decay, ...) are sweep-file fields")
    p.add_argument("--rewind-iteration", type=int, nargs="+", default=None, metavar="K",
                   help="iterative sweeps: the dense run's steps that kept weights rewind to (late rewinding; 0 = the "
                        "init), each run as its own chain (default: the preset's, else 0)")
    p.add_argument("--scope", nargs="+", default=None, choices=("layer", "global"),
                   help="iterative sweeps: layer = the paper's per-layer rates, global = one ranking of every weight at "
                        "global_rate; both: each as its own chain (default: the preset's, else layer)")
    p.add_argument("--workers", type=int, default=None, help="parallel worker processes, 1 to 4096, each with cores // workers threads (default: one per seed while seeds fit the cores, else the count that leaves no core idle at the end, e.g. 1 for 5 seeds on 2 cores)")
    _executor_argument(p)
    _runtime_arguments(p, "sweep directory (run store, shared by sweeps)")
    _repair_argument(p)
    _dry_run_argument(p)
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("results", help="print or export the results table of a sweep directory",
                       description="Print or export the results table. Piped into a command that stops reading "
                       f"(e.g. head), it stops quietly with exit status {BROKEN_PIPE_EXIT}, as a C tool killed by SIGPIPE.")
    p.add_argument("dir", type=Path, help="a sweep directory (the --out of ticketlab sweep)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--csv", type=file_argument, default=None, help="write CSV to this file, gzipped if its name ends in .gz (its folder must exist; replaced whole, never half-written), or to stdout with -")
    group.add_argument("--parquet", type=file_argument, default=None, help="write Parquet to this file (needs pyarrow: pip install \"ticketlab[plot]\")")
    p.set_defaults(func=_cmd_results)

    for name, helptext, func in (("plot", "draw the figures of a sweep directory", _cmd_plot),
                                 ("report", "write figures and an HTML + Markdown reproduction report", _cmd_report)):
        p = sub.add_parser(name, help=helptext, description=helptext)
        p.add_argument("dir", type=Path, help="a sweep directory (the --out of ticketlab sweep or reproduce), or a results "
                                              "table written by ticketlab results --csv (.csv or .csv.gz)")
        p.add_argument("--out", type=folder_argument, default=None, help=f"folder to write into, created if needed (default: DIR/{'figures' if name == 'plot' else 'report'}, or beside a table)")
        if name == "report":
            p.add_argument("--reference", nargs="?", const="packaged", default=None, metavar="TABLE",
                           help="set the results beside a reference results table: the full-scale results that ship "
                                "with ticketlab (no value), or a table of your own (.csv or .csv.gz)")
        p.add_argument("--band", default="minmax", choices=("minmax", "std"), help="band over seeds: min-max range (default) or mean +- std")
        if name == "plot":
            p.add_argument("--format", nargs="+", default=["png", "svg"], choices=("png", "svg", "pdf"), help="file formats (default: png svg)")
        p.set_defaults(func=func)

    p = sub.add_parser("reproduce", help="run the study's experiments and write figures and the report (the main job)",
                       description="criteria, both sign figures, supermask at init and masking is training, then the report.")
    p.add_argument("--scale", default="quick", choices=("quick", "full"), help="quick = CPU-sized, about 2 minutes on 2 cores (default); full = paper protocol")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds, 1 to 1000 (default: 3 at quick, 5 at full)")
    p.add_argument("--workers", type=int, default=None, help="parallel worker processes, 1 to 4096, each with cores // workers threads (default: one per seed while seeds fit the cores, else the count that leaves no core idle at the end, e.g. 1 for 5 seeds on 2 cores)")
    _executor_argument(p)
    _runtime_arguments(p, "sweep directory (default: ./ticketlab-reproduce-SCALE)")
    _repair_argument(p)
    _dry_run_argument(p)
    p.set_defaults(func=_cmd_reproduce)

    p = sub.add_parser("export", help="write one run's ticket as a safetensors file for plain PyTorch",
                       description="Write one run's subnetwork (weight_orig, weight_mask and bias per layer, as "
                       "torch.nn.utils.prune holds them, and its metadata) as a safetensors file; "
                       "ticketlab.load_ticket(FILE) rebuilds it as an nn.Module.")
    p.add_argument("run", type=Path, help="a run directory: OUT/train_<hash>, or OUT/runs/round_<hash> / dense_<hash> of a sweep")
    p.add_argument("--out", type=file_argument, required=True, help="the .safetensors file to write (its folder must exist)")
    p.add_argument("--weights", default=None, choices=("init", "final"),
                   help="for a train, dense or round run: init, the ticket to retrain (the run's start weights, zero "
                        "biases), or final, as trained (default: final); runs keep no weights at the early-stopping "
                        "iteration")
    p.add_argument("--criterion", default=None, help="for a supermask run: which criterion's mask")
    p.add_argument("--level", type=int, default=None, help="for a supermask run: which one-shot level p")
    p.add_argument("--start", default=None, choices=("init", "signed_constant"), help="for a supermask run: the start weights")
    p.add_argument("--dwr", default=None, choices=("true", "false"), help="for a supermask run: with dynamic weight rescaling")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("bench", help="measure training and evaluation speed on this machine")
    p.add_argument("--json", action="store_true", help="end with one JSON line of the measurements")
    p.add_argument("--quick", action="store_true", help="a few seconds, rough numbers (for smoke tests)")
    p.add_argument("--threads", type=int, default=None, help=f"torch threads, 1 to {MAX_THREADS} (default: all cores)")
    p.add_argument("--device", default="auto", choices=DEVICES, help="what to measure (default: auto = cuda if available)")
    p.set_defaults(func=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminated)  # timeout, docker stop, a batch scheduler: stop as on Ctrl-C
    try:
        code = ns.func(ns)
        sys.stdout.flush()  # a closed pipe must show up here, not in the interpreter's exit
        return code
    except TicketlabError as e:
        print(f"ticketlab: error: {e}", file=sys.stderr)
        return 2
    except Terminated:
        print("ticketlab: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("ticketlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _discard_stdout()
        return BROKEN_PIPE_EXIT


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the main thread is, so that a sweep records itself as interrupted and its
    workers are stopped, as on Ctrl-C."""


def _terminated(signum, frame) -> None:
    raise Terminated


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush of what the closed pipe
    refused does not raise again (the recipe of Python's signal module docs)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout without a file descriptor (tests)
        pass


if __name__ == "__main__":
    sys.exit(main())
