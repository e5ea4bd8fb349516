"""Nothing on disk is trusted twice: damaged or swapped runs are refused wherever they are read, sweep
records add slices instead of replacing them, every field and output path is checked, and the
command line answers before anything heavy loads. Each refusal is one line on stderr, exit 2, no
traceback, and leaves nothing that looks finished; where numbers are shown, they are the right ones."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from test_bad_data import refused
from ticketlab.cli import main

pytest.importorskip("pandas")

TINY = """\
name = "tiny"
kind = "iterative"
criteria = ["large_final", "random"]
seeds = 2
iterations = 4
eval_every = 2
rounds = 1
"""


def _sweep(root: Path, text: str = TINY, *flags: str) -> None:
    spec = root.parent / f"{root.name}.toml"
    spec.write_text(text)
    assert main(["sweep", str(spec), "--out", str(root), "--device", "cpu", "--threads", "1", *flags]) == 0


def _rows(root: Path, capsys) -> list[dict]:
    capsys.readouterr()
    assert main(["results", str(root), "--csv", "-"]) == 0
    return list(csv.DictReader(io.StringIO(capsys.readouterr().out)))


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("trust") / "store"
    _sweep(root)
    return root


@pytest.fixture
def store(finished, tmp_path) -> Path:
    return Path(shutil.copytree(finished, tmp_path / "store"))


def _round_runs(root: Path) -> dict[tuple[int, str], Path]:
    """(seed, criterion) -> the round-1 run directory."""
    out = {}
    for run in (root / "runs").glob("round_*"):
        ident = json.loads((run / "config.json").read_text())["identity"]
        out[(ident.get("seed", 0), ident["criterion"])] = run
    return out


def _nothing_new(root: Path, before: set[str]) -> None:
    assert {p.name for p in (root / "runs").iterdir()} == before


# --- 1. wrong results, silently -----------------------------------------------------------------


def test_two_runs_swapped_by_name_are_refused_where_they_are_read(store, capsys):
    runs = _round_runs(store)
    a, b = runs[(0, "large_final")], runs[(0, "random")]
    a.rename(a.with_name("x"))
    b.rename(a)
    a.with_name("x").rename(b)
    before = {p.name for p in (store / "runs").iterdir()}
    refused(["results", str(store)], capsys, str(a), "swapped", "--repair")
    refused(["export", str(a), "--out", str(store / "t.safetensors")], capsys, "swapped")
    # the sweep that would reuse it refuses too, and --repair retrains both under their own names
    spec = store.parent / "tiny.toml"
    spec.write_text(TINY)
    refused(["sweep", str(spec), "--out", str(store), "--threads", "1"], capsys, "swapped")
    _nothing_new(store, before)
    assert main(["sweep", str(spec), "--out", str(store), "--threads", "1", "--repair"]) == 0
    assert _rows(store, capsys) == _rows_of_fresh(store, capsys)


def _rows_of_fresh(store: Path, capsys) -> list[dict]:
    fresh = store.parent / "fresh"
    _sweep(fresh)
    return _rows(fresh, capsys)


def test_a_config_edited_under_its_checksums_is_refused(store, capsys):
    run = _round_runs(store)[(1, "random")]
    record = json.loads((run / "config.json").read_text())
    record["identity"]["criterion"] = "large_final"  # what a hand edit or a bad copy tool might leave
    (run / "config.json").write_text(json.dumps(record))
    checksums = json.loads((run / "checksums.json").read_text())
    import hashlib

    checksums["sha256"]["config.json"] = hashlib.sha256((run / "config.json").read_bytes()).hexdigest()
    (run / "checksums.json").write_text(json.dumps(checksums))
    refused(["results", str(store)], capsys, str(run), "does not hash to its name")


def test_export_checks_every_file_of_the_run(store, tmp_path, capsys):
    runs = _round_runs(store)
    victim, other = runs[(0, "large_final")], runs[(1, "large_final")]
    shutil.copy(other / "final.npz", victim / "final.npz")  # another run's weights under this run's name
    out = tmp_path / "t.safetensors"
    refused(["export", str(victim), "--out", str(out)], capsys, str(victim), "final.npz", "checksums")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_damaged_ticket_is_refused_by_load_ticket(store, tmp_path, capsys):
    pytest.importorskip("safetensors")
    from ticketlab import load_ticket
    from ticketlab.core.errors import TicketlabError

    run = _round_runs(store)[(0, "large_final")]
    ticket = tmp_path / "t.safetensors"
    assert main(["export", str(run), "--out", str(ticket)]) == 0
    load_ticket(ticket)
    raw = bytearray(ticket.read_bytes())
    raw[-3] ^= 0x40  # one bit of the last tensor's data
    ticket.write_bytes(bytes(raw))
    with pytest.raises(TicketlabError, match="do not match the checksum recorded at export"):
        load_ticket(ticket)


def test_slices_of_seeds_add_to_the_sweep_record(store, capsys):
    """The README's recipe for several machines: slices run after (and beside) the whole sweep."""
    before = _rows(store, capsys)
    assert sorted({r["seed"] for r in before}) == ["0", "1"]
    _sweep(store, TINY, "--first-seed", "2", "--seeds", "1")
    _sweep(store, TINY, "--first-seed", "4", "--seeds", "1")  # a gap: seed 3 ran nowhere
    rows = _rows(store, capsys)
    assert sorted({r["seed"] for r in rows}) == ["0", "1", "2", "4"]
    assert [r for r in rows if r["seed"] in ("0", "1")] == before  # seeds 0-1 unchanged, in their place
    (manifest,) = (store / "sweeps").glob("tiny_*.json")
    record = json.loads(manifest.read_text())
    assert record["status"] == "complete" and sorted(record["by_seed"]) == ["0", "1", "2", "4"]
    assert main(["results", str(store)]) == 0
    assert "note" not in capsys.readouterr().err  # complete, nothing missing
    # a slice rerun over finished seeds keeps them complete, and the seconds they took
    walls = {k: v["wall_seconds"] for k, v in record["by_seed"].items()}
    _sweep(store, TINY, "--first-seed", "0", "--seeds", "1")
    again = json.loads(manifest.read_text())["by_seed"]
    assert again["0"]["status"] == "complete" and again["4"]["wall_seconds"] == walls["4"]


def test_an_unfinished_seed_is_named_in_the_note(store, capsys):
    from ticketlab.experiments.manifests import manifest_specs, read_manifests, record_seeds

    (record,) = read_manifests(store)
    (spec,) = manifest_specs(record)
    record_seeds(store, spec, {1: "interrupted"}, record["environment"])
    assert main(["results", str(store)]) == 0
    err = capsys.readouterr().err
    assert "is interrupted, not complete (seed 1)" in err


def test_a_base_the_dense_run_never_keeps_is_refused_before_training(tmp_path, capsys):
    spec = tmp_path / "sm.toml"
    spec.write_text('name = "sm"\nkind = "supermask"\nbases = ["iterations_50", "converged"]\nseeds = 1\n'
                    "iterations = 4\nlevels = 2\n")
    refused(["sweep", str(spec), "--out", str(tmp_path / "out")], capsys,
            "sm.toml:3", "base 'iterations_50' is not one a dense run keeps", "iterations_30, iterations_100",
            "val_accuracy_0.25", "converged")
    assert not (tmp_path / "out").exists()


# --- 2. crashes ------------------------------------------------------------------------------------


def test_plot_and_report_of_a_learned_supermask_sweep(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    text = ('name = "ls"\nkind = "learned_supermask"\nseeds = 1\niterations = 8\nmask_iterations = 4\n'
            'mask_eval_every = 2\neval_samples = 2\nkept_fractions = [0.5]\nstarts = ["init"]\ndwr = [false]\n'
            'level_step = 12\nheuristic_criteria = ["large_final"]\n')
    _sweep(tmp_path / "ls", text)
    assert main(["plot", str(tmp_path / "ls"), "--format", "png"]) == 0
    assert main(["report", str(tmp_path / "ls")]) == 0
    assert (tmp_path / "ls" / "report" / "report.md").is_file()
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("args", [
    ["results", "STORE", "--csv", ""],
    ["results", "STORE", "--csv", "/"],
    ["results", "STORE", "--csv", "newdir/"],
    ["results", "STORE", "--parquet", ""],
    ["results", "STORE", "--parquet", "-"],
    ["results", "STORE", "--csv", "TMP"],
    ["export", "RUN", "--out", ""],
    ["export", "RUN", "--out", "TMP"],
    ["export", "RUN", "--out", "-"],
    ["train", "--iterations", "1", "--out", ""],
    ["sweep", "criteria", "--out", ""],
    ["plot", "STORE", "--out", ""],
])
def test_empty_and_folder_like_output_paths(finished, tmp_path, monkeypatch, capsys, args):
    monkeypatch.chdir(tmp_path)
    run = sorted((finished / "runs").glob("round_*"))[0]
    args = [{"STORE": str(finished), "RUN": str(run), "TMP": str(tmp_path)}.get(a, a) for a in args]
    try:
        code = main(args)
    except SystemExit as e:  # argparse's own refusals exit from the parser
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error" in err[0] and "Traceback" not in err[0], err
    assert list(tmp_path.iterdir()) == []  # nothing written here (the current folder) or beside it


def test_a_write_protected_results_file_is_not_replaced(finished, tmp_path, capsys):
    target = tmp_path / "r.csv"
    target.write_text("mine\n")
    target.chmod(0o444)
    refused(["results", str(finished), "--csv", str(target)], capsys, str(target), "write-protected")
    assert target.read_text() == "mine\n" and [p.name for p in tmp_path.iterdir()] == ["r.csv"]


def _unprivileged() -> list[str] | None:
    """A command prefix under which permission bits bind: nothing for a user, and for root a process
    without the capabilities that override them (util-linux's setpriv), or None if there is none."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    caps = "-dac_override,-dac_read_search"
    return [setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}"]


def test_a_read_only_install_runs(tmp_path):
    """A shared install no user can write, and a home that cannot be written either: numba's cache
    goes elsewhere instead of failing every command."""
    prefix = _unprivileged()
    if prefix is None:
        pytest.skip("root without setpriv: permission bits cannot be made to bind")
    import ticketlab

    install = tmp_path / "site"
    shutil.copytree(Path(ticketlab.__file__).parent, install / "ticketlab",
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    home = tmp_path / "home"
    home.mkdir()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    for path in [install, home, *install.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    env = {**os.environ, "PYTHONPATH": str(install), "HOME": str(home), "TMPDIR": str(scratch)}
    env.pop("XDG_CACHE_HOME", None)
    env.pop("NUMBA_CACHE_DIR", None)
    out = scratch / "runs"
    try:
        for args in (["--version"], ["train", "--iterations", "2", "--eval-every", "1", "--threads", "1",
                                     "--out", str(out)]):
            done = subprocess.run([*prefix, sys.executable, "-m", "ticketlab", *args], env=env, cwd=scratch,
                                  capture_output=True, text=True, timeout=300)
            assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        assert len(list(out.glob("train_*/summary.json"))) == 1
        assert list(scratch.glob("ticketlab-numba-*"))  # where the kernels were cached instead
    finally:
        for path in [install, *install.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


# --- 3. nonsense accepted ----------------------------------------------------------------------------

LEARNED = 'name = "ls"\nkind = "learned_supermask"\nseeds = 1\niterations = 8\n'


@pytest.mark.parametrize("field,message", [
    ("mask_epochs = -3", "field 'mask_epochs' must be >= 1, got -3"),
    ("mask_epochs = 0", "field 'mask_epochs' must be >= 1, got 0"),
    ("mask_epochs = 100000000", "field 'mask_epochs' 100000000 means 22,000,000,000 steps"),
    ("bernoulli_lr = nan", "field 'bernoulli_lr' must be a finite number, got nan"),
    ("edge_popup_lr = -0.1", "field 'edge_popup_lr' must be > 0"),
    ("momentum = -5.0", "field 'momentum' must be >= 0, got -5.0"),
    ("momentum = 1.0", "field 'momentum' must be < 1, got 1.0"),
    ("kept_fractions = [0.5, 0.0]", "field 'kept_fractions' must be > 0, got 0.0"),
    ("kept_fractions = [1.5]", "field 'kept_fractions' must be <= 1, got 1.5"),
    ("logit_init = inf", "field 'logit_init' must be a finite number, got inf"),
    ("mask_batch = 60000", "field 'mask_batch' must be at most the 55,000 training images of mnist"),
    ("eval_samples = 0", "field 'eval_samples' must be >= 1"),
])
def test_learned_supermask_fields_are_range_checked(tmp_path, capsys, field, message):
    path = tmp_path / "ls.toml"
    path.write_text(LEARNED + field + "\n")
    refused(["sweep", str(path), "--out", str(tmp_path / "out")], capsys, f"ls.toml:5: {message}")
    assert not (tmp_path / "out").exists()


def test_python_overrides_are_checked_like_file_fields():
    from ticketlab.core.errors import TicketlabError
    from ticketlab.experiments.spec import load_sweep

    with pytest.raises(TicketlabError, match=r"^override 'seedz': unknown field 'seedz'; valid fields: "):
        load_sweep("criteria", "quick", {"seedz": 2})
    with pytest.raises(TicketlabError, match=r"^override 'seeds': field 'seeds' must be int, got '2'"):
        load_sweep("criteria", "quick", {"seeds": "2"})
    with pytest.raises(TicketlabError, match=r"^override 'seeds' must be >= 1, got 0"):
        load_sweep("criteria", "quick", {"seeds": 0})
    with pytest.raises(TicketlabError, match=r"^override 'rounds' must be <= 24"):
        load_sweep("criteria", "quick", {"rounds": 30})
    assert load_sweep("criteria", "quick", {"criteria": ["random"]}).params.criteria == ("random",)


def test_a_mask_that_empties_a_layer_is_refused_unless_allowed(tmp_path, capsys):
    from ticketlab.nets.specs import get_net

    masks = {layer.name: np.ones(layer.weight_shape, bool) for layer in get_net("fc").layers}
    masks["fc2"][:] = False
    np.savez(tmp_path / "m.npz", **masks)
    out = tmp_path / "out"
    args = ["train", "--iterations", "2", "--eval-every", "1", "--mask", str(tmp_path / "m.npz"), "--out", str(out)]
    refused(args, capsys, "keeps no weight of layer fc2", "--allow-empty-layers")
    assert not out.exists()
    assert main([*args, "--allow-empty-layers", "--threads", "1"]) == 0
    err = capsys.readouterr().err
    assert "warning: mask file" in err and "fc2" in err
    assert len(list(out.glob("train_*/summary.json"))) == 1


def test_options_that_do_not_apply_are_refused(finished, tmp_path, capsys):
    dense = next((finished / "runs").glob("dense_*"))
    out = tmp_path / "t.safetensors"
    refused(["export", str(dense), "--out", str(out), "--criterion", "large_final"], capsys,
            "--criterion is for a supermask run", "dense run")
    refused(["export", str(dense), "--out", str(out), "--level", "2", "--dwr", "true"], capsys,
            "drop --level, --dwr")
    with pytest.raises(SystemExit):
        main(["export", str(dense), "--out", str(out), "--weights", "early_stop"])
    assert "invalid choice: 'early_stop'" in capsys.readouterr().err
    assert not out.exists()


def test_weights_on_a_supermask_run_is_refused(tmp_path, capsys):
    _sweep(tmp_path / "sm", 'name = "sm"\nkind = "supermask"\nseeds = 1\niterations = 4\nlevels = 2\n')
    capsys.readouterr()
    run = next((tmp_path / "sm" / "runs").glob("supermask_*"))
    refused(["export", str(run), "--out", str(tmp_path / "t.safetensors"), "--weights", "final"], capsys,
            "--weights is for train, dense and round runs", "--start")


# --- 4. messages, hangs, slowness ------------------------------------------------------------------


def test_a_failed_download_is_one_line(tmp_path, monkeypatch, capsys):
    import urllib.error
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    refused(["train", "--net", "conv2", "--data-dir", str(tmp_path / "cifar"), "--download", "--iterations", "1",
             "--out", str(tmp_path / "out")], capsys, "cannot download", "no route to host")


def test_a_dead_ray_address_fails_fast_and_is_recorded(tmp_path, capsys):
    pytest.importorskip("ray")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = tmp_path / "t.toml"
    spec.write_text(TINY.replace("seeds = 2", "seeds = 1"))
    out = tmp_path / "out"
    refused(["sweep", str(spec), "--out", str(out), "--executor", "ray", "--address", f"127.0.0.1:{port}"], capsys,
            f"cannot connect to the Ray cluster at 127.0.0.1:{port}", "--address")
    (manifest,) = (out / "sweeps").glob("*.json")
    assert json.loads(manifest.read_text())["status"] == "failed"
    assert not list((out / "runs").glob("*_*"))


HEAVY = ("torch", "numba", "pandas")


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["sweep", "--help"], ["train", "--seed", "-1"],
                                  ["sweep", "criteria", "--seeds", "0"], ["reproduce", "--seeds", "2000"],
                                  ["results", "x", "--csv", ""], ["train", "--threads", "0"]])
def test_arguments_are_checked_before_anything_heavy_loads(args):
    code = ("import sys\nfrom ticketlab.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in %r if m in sys.modules))" % (args, HEAVY))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr


def test_exported_tickets_get_the_permissions_of_other_outputs(finished, tmp_path):
    pytest.importorskip("safetensors")
    run = sorted((finished / "runs").glob("round_*"))[0]
    old = os.umask(0o022)
    try:
        assert main(["export", str(run), "--out", str(tmp_path / "t.safetensors")]) == 0
        assert main(["results", str(finished), "--csv", str(tmp_path / "r.csv")]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "t.safetensors").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "r.csv").stat().st_mode) == 0o644
