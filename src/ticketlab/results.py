"""The results table (public API, kept where it has always been): `results_frame(DIR)` is the table
of `ticketlab results DIR` as a pandas DataFrame. The code lives in `ticketlab.analysis.table`."""
from .analysis.table import format_table, incomplete_sweeps, result_rows, results_frame, rows_frame, table_columns, to_csv

# The columns of the built-in kinds (as before kinds could add their own: `table_columns()` has those too).
COLUMNS: tuple[str, ...] = table_columns()

__all__ = ["COLUMNS", "format_table", "incomplete_sweeps", "result_rows", "results_frame", "rows_frame", "table_columns",
           "to_csv"]
