"""The results table's DataFrame: typed columns for users, plain columns for the figures."""
from __future__ import annotations

import pandas as pd

from ticketlab.analysis import table


def _rows():
    columns = table.table_columns()
    iterative = dict.fromkeys(columns) | {"experiment": "criteria", "net": "fc", "dataset": "mnist", "seed": 0,
                                          "criterion": "random", "mask1": "rewind", "mask0": "zero", "round": 3,
                                          "remaining_weights": 136000, "remaining_percent": 51.2,
                                          "early_stop_iteration": 900, "test_accuracy_at_early_stop": 0.97,
                                          "val_loss_at_early_stop": 0.1, "final_test_accuracy": 0.96}
    supermask = dict.fromkeys(columns) | {"experiment": "supermask-at-init", "net": "fc", "dataset": "mnist",
                                          "seed": 1, "criterion": "large_final", "round": 2, "remaining_weights": 1000,
                                          "remaining_percent": 0.4, "test_accuracy_at_init": 0.5, "base": "converged",
                                          "base_iterations": 1000, "base_test_accuracy": 0.98, "start": "init",
                                          "dwr": True}
    return [iterative, supermask]


def test_results_frame_has_types_not_strings(monkeypatch, tmp_path):
    monkeypatch.setattr(table, "result_rows", lambda root: _rows())
    frame = table.results_frame(tmp_path)
    assert isinstance(frame["criterion"].dtype, pd.CategoricalDtype)
    assert str(frame["seed"].dtype) == "Int64" and str(frame["early_stop_iteration"].dtype) == "Int64"
    assert str(frame["dwr"].dtype) == "boolean" and frame["dwr"].isna().tolist() == [True, False]
    assert frame["test_accuracy_at_init"].dtype == "float64" and pd.isna(frame["test_accuracy_at_init"][0])
    assert frame["early_stop_iteration"].isna().tolist() == [False, True]
    assert frame["remaining_weights"].sum() == 137000
    # the figures' frame keeps plain columns, as the figures were drawn from
    plain = table.rows_frame(tmp_path)
    assert not isinstance(plain["criterion"].dtype, pd.CategoricalDtype) and list(plain.columns) == list(frame.columns)
