"""The results table (public API, kept where it has always been): `results_frame(DIR)` is the table
of `ticketlab results DIR` as a pandas DataFrame. The code lives in `ticketlab.analysis.table`."""
from .analysis.table import format_table, incomplete_sweeps, result_rows, results_frame, table_columns, to_csv

__all__ = ["format_table", "incomplete_sweeps", "result_rows", "results_frame", "table_columns", "to_csv"]
