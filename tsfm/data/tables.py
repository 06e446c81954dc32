"""Reading tables: CSV (plain, compressed, ``;``/tab separated; ``;`` with decimal commas; UTF-8, or
UTF-16 with its byte-order mark) and Parquet files into DataFrames.

Every problem with the file itself (missing, a directory, empty, binary, truncated, badly
compressed, duplicate column names) becomes one :class:`~tsfm.errors.InputError` line.
"""

from __future__ import annotations

import importlib.util
import lzma
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from tsfm.errors import InputError

_PARQUET_SUFFIXES = (".parquet", ".pq")


def read_table(path: str | Path, *, dtype: dict | None = None) -> pd.DataFrame:
    """Read a CSV (``.csv``, ``.csv.gz``/``.zip``/``.bz2``/``.xz`` by suffix, also ``;``/tab
    separated) or a Parquet file (``.parquet``/``.pq``). Column names are stripped of spaces.

    Raises InputError for a missing path, a directory, an empty file, a header with no rows,
    and a file that cannot be parsed (binary garbage, truncated Parquet, bad compression).
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"input file not found: {p}")
    if p.is_dir():
        raise InputError(f"{p} is a directory; pass a CSV or Parquet file")
    if p.stat().st_size == 0:
        raise InputError(f"input file {p} is empty; it needs a header and at least one row")
    if p.suffix.lower() in _PARQUET_SUFFIXES:
        df = _read_parquet(p)
    else:
        df = _read_csv(p, dtype)
    if len(df.columns) == 0 or len(df) == 0:
        raise InputError(f"input file {p} has no data rows")
    return clean_columns(df)


def _read_parquet(p: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(p)
    except Exception as exc:  # pyarrow raises many types for a broken file
        raise InputError(f"cannot read {p} as Parquet ({_first_line(exc)}); is the file complete?") from None


def _read_csv(p: Path, dtype: dict | None) -> pd.DataFrame:
    compression = _compression(p)
    encoding = _encoding(p, compression)
    if compression is None and encoding != "utf-16":
        with p.open("rb") as fh:
            head = fh.read(8192)
        if b"\x00" in head:
            raise InputError(f"cannot read {p}: it looks binary, not CSV (a Parquet file must end in .parquet)")
    try:
        sep = _sniff_separator(p, compression, encoding)
        options = {**_text_column_options(p, sep, compression, dtype, encoding), "encoding": encoding}
        df = pd.read_csv(p, sep=sep, compression=compression or "infer", **options)
        return _decimal_commas_read(df) if sep == ";" else df  # Excel's CSV where the comma is the decimal mark
    except pd.errors.EmptyDataError:
        raise InputError(f"input file {p} is empty; it needs a header and at least one row") from None
    except (zlib.error, lzma.LZMAError, zipfile.BadZipFile) as exc:  # not OSError: a damaged compressed file
        raise InputError(f"cannot decompress {p} ({_first_line(exc)}); is the file complete?") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError, EOFError) as exc:
        raise InputError(f"cannot read {p} as CSV ({_first_line(exc)}); check the file is UTF-8 text") from None


# pandas' default missing-value spellings (pandas._libs.parsers.STR_NA_VALUES)
_NA_TEXT = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
            "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null")


def _text_column_options(p: Path, sep: str, compression: str | None, dtype: dict | None,
                         encoding: str = "utf-8") -> dict:
    """``read_csv`` options for ``dtype``: a column asked for as ``str`` (series ids) keeps ``NA``,
    ``None`` or ``nan`` as text (only an empty cell is missing); other columns keep pandas' defaults."""
    text = {str(c).strip() for c, kind in (dtype or {}).items() if kind is str}
    if not text:
        return {"dtype": dtype}
    raw = pd.read_csv(p, sep=sep, nrows=0, compression=compression or "infer", encoding=encoding).columns
    return {
        "dtype": {c: str for c in raw if str(c).strip() in text},
        "keep_default_na": False,
        "na_values": {c: ([""] if str(c).strip() in text else list(_NA_TEXT)) for c in raw},
    }


# 12,5 / 4 / -1.234,5: a number as Excel writes it where the comma is the decimal mark (points group thousands)
_EUROPEAN_NUMBER = r"^\s*[-+]?(?:\d{1,3}(?:\.\d{3})+|\d+)(?:,\d+)?\s*$"


def _decimal_commas_read(df: pd.DataFrame) -> pd.DataFrame:
    """Text columns whose every value is a number with a decimal comma or a whole number (at least one
    with a comma) read as numbers, unless some column holds numbers with a decimal point: then the
    file does not use decimal commas. Whole numbers are why a share of commas cannot decide: Excel
    writes 4, not 4,0."""
    if any(pd.api.types.is_float_dtype(df[c]) and (df[c].dropna() % 1 != 0).any() for c in df.columns):
        return df
    converted = {}
    for c in df.columns:
        text = df[c].dropna().astype(str) if df[c].dtype == object else None
        if text is None or text.empty or not text.str.contains(",", regex=False).any():
            continue
        if text.str.match(_EUROPEAN_NUMBER).all():
            values = np.full(len(df), np.nan)
            plain = text.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)  # 1.234,5 -> 1234.5
            values[df[c].notna().to_numpy()] = plain.astype(np.float64).to_numpy()
            converted[c] = values
    return df.assign(**converted) if converted else df


def _encoding(p: Path, compression: str | None) -> str:
    """"utf-16" for a file that starts with UTF-16's byte-order mark (Excel's "Unicode text"), else "utf-8"."""
    if compression is not None:
        return "utf-8"
    with p.open("rb") as fh:
        return "utf-16" if fh.read(2) in (b"\xff\xfe", b"\xfe\xff") else "utf-8"


def _compression(p: Path) -> str | None:
    suffix = p.suffix.lower()
    if suffix == ".zst" and importlib.util.find_spec("zstandard") is None:  # pandas reads zstd through it
        raise InputError(f"{p.name}: reading zstd-compressed files needs the zstandard package "
                         "(pip install zstandard), or decompress it first")
    return {".gz": "gzip", ".zip": "zip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}.get(suffix)


def _sniff_separator(p: Path, compression: str | None, encoding: str = "utf-8") -> str:
    """',' unless the header line clearly uses ';', tab or '|' instead."""
    if compression is None:
        with p.open("r", encoding=encoding, errors="replace") as fh:
            first = fh.readline()
    else:
        first = pd.read_csv(p, compression=compression, header=None, nrows=1, sep="\x01").iloc[0, 0]
        first = str(first)
    counts = {sep: first.count(sep) for sep in (",", ";", "\t", "|")}
    best = max(counts, key=counts.get)
    return best if counts[best] > 0 else ","


def read_header(p: Path) -> list[str]:
    """Column names of a file without reading its rows (errors surface in read_table)."""
    try:
        if p.suffix.lower() in _PARQUET_SUFFIXES:
            import pyarrow.parquet as pq

            return [str(c).strip() for c in pq.read_schema(p).names]
        compression = _compression(p)
        encoding = _encoding(p, compression)
        head = pd.read_csv(p, sep=_sniff_separator(p, compression, encoding), nrows=0,
                           compression=compression or "infer", encoding=encoding)
        return [str(c).strip() for c in head.columns]
    except Exception:
        return []


def clean_columns(df: pd.DataFrame) -> pd.DataFrame:
    names = [str(c).strip() for c in df.columns]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"duplicate column names: {', '.join(dupes)}; rename them")
    if names != list(df.columns):
        df = df.set_axis(names, axis=1)
    return df


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
