"""The one check of an output path, used by every writer of a file or folder the user names.

A path is refused, in one line naming it and what to give instead, before anything is written: an
empty path (which would mean "here"), a folder where a file is meant (an existing folder, `/`, or a
name ending in a separator), a file whose folder does not exist, a write-protected file (an atomic
rename would replace it although the user protected it), and a folder path that is an existing file.
The command line applies the syntactic part while parsing (`file_argument`, `folder_argument`), so
these errors come before anything heavy is imported; writers apply the whole check just before
writing (`check_output_file`, `check_output_folder`).
"""
from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path

from .errors import TicketlabError

STDOUT = "-"  # where a writer that can stream takes "write to standard output"


def _syntax_problem(text: str, file: bool) -> str | None:
    if text == "":
        return "is empty: give a file path" if file else "is empty: give a folder path (. for this folder)"
    if "\0" in text:
        return "contains a NUL character"
    if file and text.endswith((os.sep, "/")):
        return f"ends with '/', which names a folder: give a file path inside it, e.g. {text}results.csv"
    return None


def file_argument(text: str) -> Path | str:
    """argparse `type` of a flag naming an output file ("-" for standard output stays "-")."""
    if text == STDOUT:
        return STDOUT
    problem = _syntax_problem(text, file=True)
    if problem:
        raise argparse.ArgumentTypeError(f"the path {text!r} {problem}")
    return Path(text)


def folder_argument(text: str) -> Path:
    """argparse `type` of a flag naming an output folder."""
    problem = _syntax_problem(text, file=False)
    if problem:
        raise argparse.ArgumentTypeError(f"the path {text!r} {problem}")
    return Path(text)


def _protected(path: Path) -> bool:
    """A file the user may not, or chose not to, overwrite: no write permission for us, or no write
    bit at all (which root's access check would otherwise ignore)."""
    st = path.stat()
    return not os.access(path, os.W_OK) or not st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def _syntax_checked(path: Path | str, what: str, file: bool) -> Path:
    problem = _syntax_problem(str(path), file)
    if problem:
        raise TicketlabError(f"cannot write {what} {str(path)!r}: the path {problem}")
    return Path(path)


def check_output_file(path: Path | str, what: str = "output file") -> Path:
    """`path` as a file to write, or a one-line `TicketlabError` saying why not (see the module)."""
    path = _syntax_checked(path, what, file=True)
    if path.is_dir():
        raise TicketlabError(f"cannot write {what} {path}: it is a folder; give a file path inside it")
    parent = path.parent
    if not parent.is_dir():
        why = "is a file, not a folder" if parent.exists() else "does not exist"
        raise TicketlabError(f"cannot write {what} {path}: folder {parent} {why}; create it first or give another path")
    if path.is_file() and _protected(path):
        raise TicketlabError(f"cannot write {what} {path}: the file is write-protected; make it writable or give "
                             "another path")
    return path


def check_output_folder(path: Path | str, what: str = "output folder") -> Path:
    """`path` as a folder to write into (made if missing), or a one-line `TicketlabError`."""
    path = _syntax_checked(path, what, file=False)
    if path.exists() and not path.is_dir():
        raise TicketlabError(f"cannot write {what} {path}: it is a file, not a folder; give a folder path")
    return path
