"""The `ticketlab` command line. Every user error is one line on stderr and exit code 2."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import __version__
from .config import TrainConfig, add_dataclass_arguments, dataclass_from_namespace
from .device import DEVICES
from .errors import TicketlabError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse prints usage too; we want one line
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _runtime_arguments(p: argparse.ArgumentParser, out_help: str) -> None:
    p.add_argument("--out", type=Path, default=Path("ticketlab-runs"), help=out_help + " (default: ./ticketlab-runs)")
    p.add_argument("--device", default="auto", choices=DEVICES, help="where to train (default: auto = cuda if available)")
    p.add_argument("--data-dir", default=None, help="directory of a non-shipped dataset (fashion-mnist, cifar10)")
    p.add_argument("--download", action="store_true", help="download CIFAR-10 (checksum-verified) if it is missing")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")


def _set_threads(threads: int | None) -> None:
    import torch

    if threads is not None:
        if threads < 1:
            raise TicketlabError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)


def _cmd_train(ns: argparse.Namespace) -> int:
    from .device import resolve_device
    from .store import ensure_writable
    from .train_run import run_train

    config = dataclass_from_namespace(TrainConfig, ns)
    config.validate()
    _set_threads(ns.threads)
    device = resolve_device(ns.device)
    if ns.mask is not None and not ns.mask.is_file():
        raise TicketlabError(f"mask file {ns.mask} does not exist")
    ensure_writable(ns.out)
    run_dir = run_train(config, ns.out, device, ns.data_dir, ns.download, ns.mask)
    print(run_dir)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ticketlab", description="Lottery-ticket experiments (Zhou et al. 2019), reproducible.")
    parser.add_argument("--version", action="version", version=f"ticketlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="train one dense or masked network", description="Train one network (SPEC §3).")
    add_dataclass_arguments(p, TrainConfig)
    p.add_argument("--mask", type=Path, default=None, help=".npz with one bool array per layer (fc1, ...): train that subnetwork from the seed's init")
    _runtime_arguments(p, "root of the run store; the run goes to OUT/train_<hash>")
    p.set_defaults(func=_cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    try:
        return ns.func(ns)
    except TicketlabError as e:
        print(f"ticketlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ticketlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
