"""The plot style of the analysis: labels, canonical orders, colours, titles and figure captions.

One place decides how a criterion, a mask-1 or mask-0 action, a base or a net is named, ordered and
coloured, so every figure and every table of the report says the same thing the same way.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

from ..nets.specs import NETS, net_title
from ..pruning.actions import mask1_action, mask1_names
from ..pruning.criteria import CRITERIA, complementary_pairs, criterion_colors

# The criteria, their order (legends list them as the paper does), their colours and
# their complementary pairs come from the criteria table; the mask-1 actions' order, labels and
# colours from the mask-1 table. Nothing here repeats them.

# The presets in the papers' order: the report's sections and figures follow it (others come after, by name).
PRESET_ORDER: tuple[str, ...] = (
    "criteria",
    "large-final-signs",
    "magnitude-increase-signs",
    "mask1-actions",
    "mask0-actions",
    "supermask-at-init",
    "masking-is-training",
    "supermask-vs-training",
    "late-rewinding",
    "global-vs-layer",
    "stability-dense",
    "stability-tickets",
)
# The column that names a preset's curves where it is not the criterion (the figure is about it even
# when a run holds a single action).
PRESET_CURVE_COLUMN: dict[str, str] = {"mask1-actions": "mask1", "mask0-actions": "mask0",
                                       "late-rewinding": "rewind_iteration", "global-vs-layer": "scope",
                                       "stability-dense": "mask", "stability-tickets": "mask"}
SIGN_CRITERIA: dict[str, tuple[str, ...]] = {
    "large-final-signs": ("large_final", "large_final_same_sign", "large_final_diff_sign"),
    "magnitude-increase-signs": ("magnitude_increase", "magnitude_increase_same_sign", "magnitude_increase_diff_sign"),
}

MASK0_ORDER: tuple[str, ...] = (
    "zero",
    "freeze_init",
    "freeze_init_zero_mask",
    "freeze_init_zero_all",
    "freeze_init_zero_random",
)
MASK0_LABELS: dict[str, str] = {
    "zero": "zero",
    "freeze_init": "freeze init",
    "freeze_init_zero_mask": "Variant 1 (freeze_init_zero_mask)",
    "freeze_init_zero_all": "Variant 2 (freeze_init_zero_all)",
    "freeze_init_zero_random": "random control (freeze_init_zero_random)",
}
MASK0_COLORS: dict[str, str] = {
    "zero": "#1f77b4",
    "freeze_init": "#ff7f0e",
    "freeze_init_zero_mask": "#2ca02c",
    "freeze_init_zero_all": "#d62728",
    "freeze_init_zero_random": "#7f7f7f",
}
START_DWR_ORDER: tuple[tuple[str, bool], ...] = (
    ("init", False),
    ("init", True),
    ("signed_constant", False),
    ("signed_constant", True),
)
CHANCE_PERCENT = 10.0
# How the report introduces each measure (a results column, drawn and tabled in %).
MEASURES: dict[str, str] = {
    "test_accuracy_at_early_stop": "Test accuracy at early stop",
    "test_accuracy_at_init": "Test accuracy at initialisation (no training) of the masked network",
    "instability": "Instability: the test-error barrier between two copies trained from one start with different "
    "data orders (the largest error on the straight line between them minus the mean of its two ends' errors)",
}
# How a measure is counted where it is not a % (default "in %").
MEASURE_UNITS: dict[str, str] = {"instability": "in percentage points of test error; the errors in %"}
# Measures whose round 0 is the trained dense network: its accuracy is the dense baseline.
TRAINED_MEASURES: frozenset[str] = frozenset({"test_accuracy_at_early_stop"})
BANDS = ("minmax", "std")

EXPERIMENT_TITLES: dict[str, str] = {
    "criteria": "Mask criteria (rewind, pruned weights zero)",
    "large-final-signs": "large_final and its sign variants",
    "magnitude-increase-signs": "magnitude_increase and its sign variants",
    "mask1-actions": "Mask-1 actions: start values of kept weights (large_final)",
    "mask0-actions": "Mask-0 actions: values of pruned weights (large_final)",
    "late-rewinding": "Late rewinding: kept weights rewound to the dense run at iteration k",
    "global-vs-layer": "Global ranking vs per-layer rates",
    "stability-dense": "Stability to SGD noise: the dense network from iteration k",
    "stability-tickets": "Stability to SGD noise: large_final tickets and random masks from iteration k",
}
# What a preset beyond the paper runs, said at the head of its report section.
EXPERIMENT_NOTES: dict[str, str] = {
    "late-rewinding": "Kept weights rewound to the dense run's weights and biases at iteration k (k = 0: the lottery "
    "ticket's rewind to init), each round training the rest of the schedule from k with a fresh optimiser state "
    "(Frankle et al., Stabilizing the Lottery Ticket Hypothesis; Linear Mode Connectivity and the LTH).",
    "global-vs-layer": "scope global: one ranking of every prunable weight of the net, 20% of the remaining weights "
    "pruned per round (OpenLTH's sparse_global); scope layer: the paper's per-layer rates. The per-layer density figure "
    "shows where the global ranking takes its weights from.",
    "stability-dense": "Linear mode connectivity (Frankle et al., ICML 2020; protocol §17): from the dense run's "
    "weights at iteration k two copies train the rest of the schedule with different data orders; the test error "
    "is measured at evenly spaced points of the straight line between their final weights. A network is stable to "
    "SGD noise when the barrier is about 0.",
    "stability-tickets": "Linear mode connectivity (Frankle et al., ICML 2020; protocol §17) of large_final tickets "
    "(the lottery ticket's masks) and of random masks with the same per-layer counts, kept weights at the dense "
    "run's weights at iteration k, pruned weights zero along the whole path; the dense network is the 100% "
    "reference.",
}
FIGURE_DESCRIPTIONS: dict[str, str] = {
    "criteria": "Test accuracy at early stop vs % of weights remaining, one curve per mask criterion "
    "(rewind, pruned weights zero). Line: mean over seeds; band: spread over seeds.",
    "criteria_pairs": "The criteria figure split into complementary pairs; grey: random.",
    "large-final-signs": "large_final and its sign variants: test accuracy at early stop vs % remaining.",
    "magnitude-increase-signs": "magnitude_increase and its sign variants: test accuracy at early stop vs % remaining.",
    "mask1-actions": "Start values of kept weights (mask-1 actions, protocol §6): test accuracy at early stop vs "
    "% remaining.",
    "mask0-actions": "Values of pruned weights (mask-0 actions, protocol §6): test accuracy at early stop vs % remaining.",
    "supermask-at-init": "Supermasks: test accuracy at init (no training) vs % remaining, per criterion; "
    "panels: start weights and dynamic weight rescaling (DWR).",
    "supermask-at-init_pairs": "Supermasks at init split into complementary pairs; grey: random.",
    "masking-is-training": "Masking is training: supermask accuracy at init vs % remaining, with masks from "
    "bases stopped at 25/50/75% validation accuracy or converged.",
    "supermask-vs-training": "Best supermask accuracy at init (over levels) vs the base's training iterations; "
    "black: the base's own test accuracy.",
    "late-rewinding": "Late rewinding: test accuracy at early stop vs % remaining, one curve per rewind iteration k, "
    "one panel per criterion; dashed: the dense net.",
    "global-vs-layer": "One global ranking (solid) against the paper's per-layer rates (dashed): test accuracy at early "
    "stop vs % remaining, one colour per criterion.",
    "stability-dense": "Instability (test-error barrier between two copies trained with different data orders, pp) "
    "vs the iteration k they start from. Line: mean over seeds; band: spread over seeds.",
    "stability-dense_path": "Test error along the straight line between the two copies (alpha = 0: copy a, 1: copy "
    "b), one curve per start iteration k. Line: mean over seeds; band: spread over seeds.",
    "stability-tickets": "Instability (test-error barrier between two copies, pp) vs the iteration k their kept "
    "weights start from, one panel per density: large_final tickets and random masks of the same per-layer counts; "
    "black dashed: the dense network.",
    "stability-tickets_path": "Test error along the straight line between the two copies, one row per start "
    "iteration k, one column per density: large_final tickets, random masks, and (black, dashed) the dense network.",
}
DENSITY_CAPTION = ("Per-layer density (% of each layer's weights kept) vs % of all weights remaining, one colour per "
                   "layer, one panel per criterion: global ranking solid, the paper's per-layer rates dashed.")
# How the report's tables head a curve's key columns, and the paper's names of some of their values.
KEY_HEADERS: dict[str, str] = {"criterion": "criterion", "mask1": "mask-1 action", "mask0": "mask-0 action",
                               "base": "base", "start": "start weights", "dwr": "DWR",
                               "rewind_iteration": "rewind iteration", "scope": "scope", "mask": "mask"}
SCOPE_LABELS: dict[str, str] = {"layer": "per-layer rates (paper)", "global": "global ranking"}
_PAPER_NAMES = {"rewind": "lottery ticket", "freeze_init_zero_mask": "Variant 1", "freeze_init_zero_all": "Variant 2",
                "freeze_init_zero_random": "random control"}


# ---------------------------------------------------------------------------------------------
# Labels, ordering, styles


def net_label(net: str) -> str:
    """How the registry's net titles it: 'fc' -> 'FC', 'conv2' -> 'Conv2', 'resnet20' -> 'ResNet-20'."""
    return net_title(str(net))


def dataset_label(dataset: str) -> str:
    """'mnist' -> 'MNIST', 'cifar10' -> 'CIFAR-10'."""
    return {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}.get(str(dataset), str(dataset))


def mask1_label(name: str) -> str:
    """Paper name of a mask-1 action (the table's label); the rescaled forms say so."""
    return mask1_action(name).label if name in mask1_names() else str(name)


def mask0_label(name: str) -> str:
    """Paper name of a mask-0 action."""
    return MASK0_LABELS.get(name, name)


def base_label(base: str) -> str:
    """'val_accuracy_0.25' -> 'stopped at 25% val acc', 'iterations_10' -> '10 iterations'."""
    m = re.fullmatch(r"val_accuracy_([0-9.]+)", str(base))
    if m:
        return f"stopped at {float(m.group(1)) * 100:g}% val acc"
    m = re.fullmatch(r"iterations_(\d+)", str(base))
    if m:
        return f"{int(m.group(1))} iterations"
    return str(base)


def start_dwr_label(start: str, dwr: bool) -> str:
    """'init' + DWR -> 'init + DWR'."""
    return f"{str(start).replace('_', ' ')}{' + DWR' if dwr else ''}"


def start_dwr_slug(start: str, dwr: bool) -> str:
    """A file-name form of a (start, dwr) combination: 'signed-constant-dwr'."""
    return f"{str(start).replace('_', '-')}{'-dwr' if dwr else ''}"


def rewind_label(k: Any) -> str:
    """'rewind to init (k = 0)', 'rewind to iteration 500'."""
    k = int(float(k))
    return "rewind to init (k = 0)" if k == 0 else f"rewind to iteration {k:,}"


def key_text(column: str, value: Any) -> str:
    """A key column's value as a table shows it: DWR as yes/no, actions with their paper names."""
    if column == "dwr":
        return "yes" if value else "no"
    if column == "rewind_iteration":
        return str(int(float(value)))
    paper = _PAPER_NAMES.get(str(value)) if column in ("mask1", "mask0") else None
    return f"{value} ({paper})" if paper else str(value)


def panel_label(values: dict[str, Any]) -> str:
    """A panel's title from its panel columns: 'base converged — signed constant + DWR'."""
    parts = []
    if "base" in values:
        parts.append(f"base {base_label(values['base'])}")
    if "start" in values or "dwr" in values:
        parts.append(start_dwr_label(values.get("start", "init"), bool(values.get("dwr", False))))
    parts += [f"{k} {v}" for k, v in values.items() if k not in ("base", "start", "dwr")]
    return " — ".join(parts)


def measure_text(value: str) -> str:
    """The sentence naming a measure: 'Test accuracy at early stop, in %.'"""
    return f"{MEASURES.get(value, value)}, {MEASURE_UNITS.get(value, 'in %')}."


def _order_index(order: Sequence[Any], value: Any) -> tuple[int, str]:
    # Unknown values sort after known ones, alphabetically, rather than failing.
    return (order.index(value), "") if value in order else (len(order), str(value))


def sort_key(column: str, value: Any) -> tuple:
    """Canonical order of a column's values (criteria as in protocol §5, bases by training, ...)."""
    if column == "criterion":
        return _order_index(CRITERIA, value)
    if column == "mask1":
        return _order_index(mask1_names(), value)
    if column == "mask0":
        return _order_index(MASK0_ORDER, value)
    if column == "net":  # the registry's order
        return _order_index(tuple(NETS), value)
    if column == "start":
        return _order_index(("init", "signed_constant"), value)
    if column == "dwr":
        return (int(bool(value)),)
    if column == "rewind_iteration":
        return (float(value),)
    if column == "scope":
        return _order_index(tuple(SCOPE_LABELS), value)
    if column == "mask":  # a stability start: the dense network, then the criteria in the paper's order
        return _order_index(("dense", *CRITERIA), value)
    if column == "base":
        s = str(value)
        m = re.fullmatch(r"val_accuracy_([0-9.]+)", s)
        if m:
            return (0, float(m.group(1)), s)
        m = re.fullmatch(r"iterations_(\d+)", s)
        if m:
            return (1, float(m.group(1)), s)
        return (2 if s == "converged" else 3, 0.0, s)
    return (str(value),)


def curve_style(column: str, name: str) -> dict[str, Any]:
    """Label, colour, marker and line style of one curve, the same in every figure."""
    if column == "criterion":
        # the second of a complementary pair (the table's complement) gets squares, random diamonds
        second = {b for _, b in complementary_pairs()}
        marker = "D" if name == "random" else ("s" if name in second else "o")
        return {"label": name, "color": criterion_colors().get(name, "#333333"), "marker": marker, "linestyle": "-"}
    if column == "mask1":
        entry = mask1_action(name) if name in mask1_names() else None
        rescaled = entry is not None and entry.rescaled
        return {
            "label": mask1_label(name),
            "color": entry.color if entry is not None else "#333333",
            "marker": "^" if rescaled else "o",
            "linestyle": "--" if rescaled else "-",
        }
    if column == "mask0":
        return {"label": mask0_label(name), "color": MASK0_COLORS.get(name, "#333333"), "marker": "o", "linestyle": "-"}
    if column == "rewind_iteration":
        return {"label": rewind_label(name), "color": UNSTYLED, "marker": "o", "linestyle": "-"}
    if column == "scope":
        return {"label": SCOPE_LABELS.get(str(name), str(name)), "color": UNSTYLED, "marker": "o",
                "linestyle": "--" if name == "layer" else "-"}
    if column == "mask":  # a stability start: dense, or a criterion's mask (random: a random mask of its counts)
        if name == "dense":
            return {"label": "dense", "color": "#000000", "marker": "o", "linestyle": "-"}
        return {**curve_style("criterion", name), "label": f"{name} ticket" if name != "random" else "random mask"}
    return {"label": str(name), "color": UNSTYLED, "marker": "o", "linestyle": "-"}


UNSTYLED = "#333333"  # a curve no table colours: the figure gives it the next colour of matplotlib's cycle


def legend_rank(label: str) -> tuple[int, int]:
    """Legend order: criteria, then mask-1 and mask-0 actions in their orders; reference lines last."""
    known = (
        [curve_style("criterion", c)["label"] for c in CRITERIA]
        + [mask1_label(m) for m in mask1_names()]
        + [mask0_label(m) for m in MASK0_ORDER]
    )
    name = label.split(" (")[0] if label not in known else label
    if label in known:
        return (0, known.index(label))
    if name in known:
        return (0, known.index(name))
    return (1, 0)  # reference lines last, in the order drawn (sort is stable)


def is_density_figure(stem: str) -> bool:
    """Whether a figure file's stem names a per-layer density figure (`<experiment>_densities[_net]`)."""
    return "densities" in stem.split("_")[1:]


def describe_figure(path: Path) -> str:
    """A one-sentence caption for a file written by `make_figures`, from its name."""
    stem = Path(path).stem
    if is_density_figure(stem):
        return DENSITY_CAPTION
    best = max((k for k in FIGURE_DESCRIPTIONS if stem == k or stem.startswith(k + "_")), key=len, default=None)
    return FIGURE_DESCRIPTIONS.get(best, stem) if best else stem


