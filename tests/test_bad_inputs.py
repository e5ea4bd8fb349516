"""Bad numbers, sweep files, sweep names and masks through the command line: one line on stderr,
exit 2, and nothing written (no output directory, no manifest, no file outside --out)."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from test_bad_data import refused
from ticketlab.nets.specs import get_net
from ticketlab.experiments.train import read_mask_file

TINY = """\
name = "tiny"
kind = "iterative"
criteria = ["large_final"]
seeds = 1
iterations = 5
rounds = 1
"""


def _spec(tmp_path: Path, text: str, name: str = "s.toml") -> str:
    path = tmp_path / name
    path.write_text(text) if isinstance(text, str) else path.write_bytes(text)
    return str(path)


# --- numbers ----------------------------------------------------------------------------------

NUMBERS = [
    (["train", "--threads", "4294967297"], "--threads must be between 1 and 4096, got 4294967297"),
    (["train", "--threads", "0"], "--threads must be between 1 and 4096, got 0"),
    (["bench", "--quick", "--threads", "4294967297"], "--threads must be between 1 and 4096"),
    (["train", "--iterations", str(10**9)], "--iterations must be <= 100,000,000"),
    (["train", "--iterations", "-5"], "--iterations must be >= 1, got -5"),
    (["train", "--epochs", str(10**12)], "--epochs 1000000000000 means 916,000,000,000,000 training steps"),
    (["train", "--eval-every", str(10**20)], "--eval-every must be <= 100,000,000"),
    (["train", "--seed", str(2**63)], "--seed must be <= 2^63-1"),
    (["sweep", "TINY", "--seeds", str(10**12)], "--seeds must be <= 1000, got 1000000000000"),
    (["sweep", "TINY", "--seeds", "0"], "--seeds must be >= 1, got 0"),
    (["sweep", "TINY", "--first-seed", str(2**63 - 1), "--seeds", "2"], "--first-seed + seeds - 1 must be at most 2^63-1"),
    (["sweep", "TINY", "--workers", "0"], "--workers must be between 1 and 4096"),
    (["sweep", "TINY", "--iterations", str(10**12)], "--iterations must be <= 100,000,000"),
    (["reproduce", "--seeds", str(10**12)], "--seeds must be <= 1000"),
    (["reproduce", "--seeds", "0"], "--seeds must be >= 1, got 0"),
]


@pytest.mark.parametrize("args,message", NUMBERS, ids=[" ".join(a[:1] + a[2:] if a[1] == "TINY" else a)[:40] for a, _ in NUMBERS])
def test_out_of_range_numbers(tmp_path, capsys, args, message):
    args = [_spec(tmp_path, TINY) if a == "TINY" else a for a in args]
    out = ["--out", str(tmp_path / "out")] if args[0] != "bench" else []
    line = refused([*args, *out], capsys, message)
    assert "s.toml" not in line  # a flag's value is blamed on the flag, not on the file's line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "field,message",
    [
        (f"rounds = {10**12}", "field 'rounds' must be <= 24 (protocol §4 prunes 24 rounds"),
        ("rounds = 30", "field 'rounds' must be <= 24 (protocol §4"),
        ("levels = 99", "field 'levels' must be <= 24"),
        ("round_step = 0", "field 'round_step' must be >= 1"),
        (f"seeds = {10**12}", "field 'seeds' must be <= 1000"),
        ("eval_every = 0", "field 'eval_every' must be >= 1"),
        ("learning_rate = -1.0", "field 'learning_rate' must be > 0, got -1.0"),
        ("learning_rate = nan", "field 'learning_rate' must be a finite number, got nan"),
        ("learning_rate = inf", "field 'learning_rate' must be a finite number, got inf"),
        ("first_seed = -1", "field 'first_seed' must be >= 0"),
    ],
)
def test_out_of_range_numbers_in_a_sweep_file(tmp_path, capsys, field, message):
    key = field.split()[0]
    base = TINY.replace('kind = "iterative"', 'kind = "supermask"').replace("rounds = 1\n", "") if key == "levels" else TINY
    lines = [line for line in base.splitlines() if not line.startswith(key + " ")] + [field]
    path = _spec(tmp_path, "\n".join(lines) + "\n")
    refused(["sweep", path, "--out", str(tmp_path / "out")], capsys, f"s.toml:{len(lines)}: {message}")
    assert not (tmp_path / "out").exists()


def test_flag_override_is_blamed_on_the_flag_and_iterations_replace_epochs(tmp_path, capsys):
    from ticketlab.experiments.spec import load_sweep

    path = _spec(tmp_path, TINY.replace("iterations = 5", "epochs = 2"))
    assert load_sweep(path, "full", {"iterations": 7}).train_config(0).resolved().iterations == 7
    refused(["sweep", path, "--seeds", "0", "--out", str(tmp_path / "out")], capsys, "--seeds must be >= 1, got 0")


# --- sweep files --------------------------------------------------------------------------------


def test_sweep_file_that_is_not_utf8(tmp_path, capsys):
    path = _spec(tmp_path, TINY.encode() + b'description = "caf\xe9"\n')
    refused(["sweep", path, "--out", str(tmp_path / "out")], capsys, "s.toml:7: not UTF-8 text (byte 0xe9)")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("scale", ["quick", "full"])
def test_scale_that_is_not_a_table(tmp_path, capsys, scale):
    path = _spec(tmp_path, TINY + "quick = 3\n")
    refused(["sweep", path, "--scale", scale, "--out", str(tmp_path / "out")], capsys,
            "s.toml:7: field 'quick' must be a table of overrides ([quick] on its own line), got 3")
    assert not (tmp_path / "out").exists()


# --- sweep names are file names ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["/{tmp}/elsewhere/ESCAPED", "../x", "a\\u0000b", ".hidden", "x" * 65, "a b", ""])
def test_sweep_name_cannot_leave_out_or_break_the_path(tmp_path, capsys, name):
    name = name.replace("/{tmp}", str(tmp_path))
    path = _spec(tmp_path, TINY.replace('name = "tiny"', f'name = "{name}"'))
    out = tmp_path / "out"
    refused(["sweep", path, "--out", str(out)], capsys, "s.toml:1: field 'name' is ", "a sweep name is 1 to 64 letters")
    assert not out.exists() and not (tmp_path / "elsewhere").exists() and not (tmp_path / "x.json").exists()


def test_dotted_and_dashed_names_are_fine():
    from ticketlab.experiments.spec import parse_spec

    assert parse_spec(TINY.replace('"tiny"', '"my-sweep_v1.2"'), "s.toml", "full").name == "my-sweep_v1.2"


# --- masks ----------------------------------------------------------------------------------------

FC_SHAPES = {layer.name: layer.weight_shape for layer in get_net("fc").layers}


def _masks(**override) -> dict[str, np.ndarray]:
    return {**{k: np.ones(s, bool) for k, s in FC_SHAPES.items()}, **override}


def _write_masks(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    np.savez(path, **arrays)
    return path


def _damaged(tmp_path: Path, how: str) -> Path:
    good = _write_masks(tmp_path / "good.npz", _masks())
    raw = good.read_bytes()
    path = tmp_path / "mask.npz"
    if how == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif how == "bit-flipped":
        data = bytearray(raw)
        data[len(data) // 3] ^= 0xFF
        path.write_bytes(bytes(data))
    elif how == "npy-named-npz":
        np.save(tmp_path / "m.npy", np.ones(FC_SHAPES["fc1"], bool))
        (tmp_path / "m.npy").rename(path)
    elif how == "huge-header":
        with zipfile.ZipFile(path, "w") as zf:
            for name in FC_SHAPES:
                buf = io.BytesIO()
                np.lib.format.write_array_header_1_0(buf, {"descr": "|b1", "fortran_order": False, "shape": (10**6, 10**6)})
                zf.writestr(name + ".npy", buf.getvalue() + b"\x01" * 64)
    elif how == "directory":
        path.mkdir()
    return path


@pytest.mark.parametrize(
    "how,message",
    [
        ("truncated", "truncated or damaged .npz archive"),
        ("bit-flipped", "Bad CRC-32"),
        ("npy-named-npz", "not an .npz archive"),
        ("huge-header", "declares shape (1000000, 1000000), more than the file holds"),
        ("directory", "is a directory"),
    ],
)
def test_damaged_mask_file(tmp_path, capsys, how, message):
    path = _damaged(tmp_path, how)
    line = refused(["train", "--mask", str(path), "--out", str(tmp_path / "out")], capsys, message, str(path),
                   "one bool or 0/1 array per prunable layer: fc1, fc2, fc3")
    assert "allow_pickle" not in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "value,message",
    [
        (np.full(FC_SHAPES["fc1"], "no"), "has dtype <U2"),
        (np.full(FC_SHAPES["fc1"], 0.3), "values other than 0 and 1 (e.g. 0.3)"),
        (np.full(FC_SHAPES["fc1"], np.nan), "values other than 0 and 1 (e.g. nan)"),
        (np.full(FC_SHAPES["fc1"], 2, np.int8), "values other than 0 and 1 (e.g. 2)"),
        (np.zeros(FC_SHAPES["fc1"], complex), "has dtype complex128"),
    ],
    ids=["strings", "floats-0.3", "nan", "int-2", "complex"],
)
def test_mask_values_that_are_not_a_mask_are_refused_not_cast(tmp_path, capsys, value, message):
    path = _write_masks(tmp_path / "mask.npz", _masks(fc1=value))
    refused(["train", "--mask", str(path), "--out", str(tmp_path / "out")], capsys, f"mask fc1 in {path}", message,
            "a mask must be bool, or integers or floats that are all 0 or 1")
    assert not (tmp_path / "out").exists()


def test_mask_with_an_array_the_net_lacks(tmp_path, capsys):
    path = _write_masks(tmp_path / "mask.npz", _masks(fc4=np.ones(3, bool)))
    refused(["train", "--mask", str(path), "--out", str(tmp_path / "out")], capsys, "arrays that net fc lacks (fc4)")


@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.float32, np.float64])
def test_zero_one_integer_and_float_masks_mean_the_same_as_bool(tmp_path, dtype):
    rng = np.random.RandomState(0)
    bools = {k: rng.rand(*s) < 0.5 for k, s in FC_SHAPES.items()}
    expect, _ = read_mask_file(_write_masks(tmp_path / "b.npz", bools), get_net("fc"))
    got, _ = read_mask_file(_write_masks(tmp_path / "n.npz", {k: v.astype(dtype) for k, v in bools.items()}), get_net("fc"))
    for e, g in zip(expect, got):
        assert g.dtype == e.dtype and bool((g == e).all())


def test_a_field_of_another_kind_is_refused(tmp_path, capsys):
    # `levels` belongs to supermask sweeps: in an iterative sweep it would be silently ignored
    path = _spec(tmp_path, TINY + "levels = 3\n")
    refused(["sweep", path, "--out", str(tmp_path / "out")], capsys, "s.toml:7: unknown field 'levels'; valid fields:",
            "round_step, rounds")
    assert not (tmp_path / "out").exists()
