"""Readers for RecBole atomic files, CSV/Parquet tables and pre-split directories."""

from __future__ import annotations

import io
import logging
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from kgrec.data.dataset import Dataset
from kgrec.data.split import Split
from kgrec.errors import DataError

__all__ = ["read_atomic_file", "read_atomic", "read_table", "read_presplit", "TAG_FIELDS"]

log = logging.getLogger("kgrec")

#: Item fields of atomic files that are read as tags rather than text.
TAG_FIELDS = frozenset({"class", "genre", "genres", "tag", "tags", "category", "categories"})
_ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")
_SUFFIXES = ("inter", "item", "user", "kg", "link")


def _decode(path: Path) -> str:
    """Read ``path`` as UTF-8; undecodable bytes become U+FFFD and are counted in a warning."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")
        log.warning("%s: %d undecodable byte sequence(s) replaced by U+FFFD.", path, text.count("\ufffd"))
        return text


def read_atomic_file(path: str | Path) -> pd.DataFrame:
    """Read one RecBole atomic file (tab-separated, typed header such as ``user_id:token``).

    ``token`` columns stay strings, ``token_seq`` become tuples of strings, ``float``
    columns become ``float64`` and ``float_seq`` tuples of floats. Column names lose
    their ``:type`` suffix.

    Raises:
        DataError: the file is missing, a header field has no or an unknown type, or a
            float cell does not parse (the message names file, line and value).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"File not found: {path}")
    text = _decode(path)
    lines = text.splitlines()
    if not lines:
        raise DataError(f"{path}: the file is empty; expected a typed header such as 'user_id:token'.")
    names, types = [], []
    for field in lines[0].split("\t"):
        name, _, typ = field.strip().partition(":")
        if typ not in _ATOMIC_TYPES:
            raise DataError(
                f"{path}: header field {field.strip()!r} must be 'name:type' with type in "
                f"{list(_ATOMIC_TYPES)}."
            )
        names.append(name)
        types.append(typ)
    frame = pd.read_csv(
        io.StringIO(text), sep="\t", header=None, skiprows=1, names=names, dtype=object,
        keep_default_na=False, quoting=3, engine="c",
    )
    for name, typ in zip(names, types):
        col = frame[name].astype(object).fillna("")
        if typ == "token":
            frame[name] = pd.Series([v.strip() for v in col], index=col.index, dtype=object)
        elif typ == "token_seq":
            frame[name] = col.map(lambda v: tuple(v.split()))
        elif typ == "float":
            values = pd.to_numeric(col.str.strip().replace("", np.nan), errors="coerce")
            bad = values.isna() & (col.str.strip() != "")
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise DataError(
                    f"{path}, line {row + 2}: column {name!r} (float) has unparsable value {col.iloc[row]!r}."
                )
            frame[name] = values.astype("float64")
        else:  # float_seq
            try:
                frame[name] = col.map(lambda v: tuple(float(x) for x in v.split()))
            except ValueError as err:
                raise DataError(f"{path}: column {name!r} (float_seq) has an unparsable value: {err}.") from None
    return frame


def _rename(frame: pd.DataFrame, mapping: dict[str, str], path: Path) -> pd.DataFrame:
    missing = [src for src in mapping if src not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; columns present: {list(frame.columns)}.")
    return frame.rename(columns=mapping)


def _find(directory: Path, name: str, suffix: str) -> Path | None:
    path = directory / f"{name}.{suffix}"
    return path if path.is_file() else None


def _read_inter(path: Path, user_field: str, item_field: str) -> pd.DataFrame:
    frame = read_atomic_file(path)
    mapping = {user_field: "user", item_field: "item"}
    for col in ("rating", "timestamp"):
        if col in frame.columns:
            mapping[col] = col
    return _rename(frame, mapping, path).loc[:, list(mapping.values())]


def _read_side_files(directory: Path, name: str, user_field: str, item_field: str,
                     item_tag_columns, user_attribute_columns):
    items = users = kg = links = None
    text_cols: tuple[str, ...] | None = None
    tag_cols: tuple[str, ...] = ()
    if (p := _find(directory, name, "item")) is not None:
        items = _rename(read_atomic_file(p), {item_field: "item"}, p)
        others = [c for c in items.columns if c != "item"]
        if item_tag_columns is None:
            tag_cols = tuple(c for c in others if c.lower() in TAG_FIELDS)
        else:
            tag_cols = tuple(item_tag_columns)
        text_cols = tuple(c for c in others if c not in tag_cols)
        for col in text_cols:  # token_seq text (titles) is joined back into a string
            items[col] = items[col].map(lambda v: " ".join(v) if isinstance(v, tuple) else v)
    if (p := _find(directory, name, "user")) is not None:
        users = _rename(read_atomic_file(p), {user_field: "user"}, p)
    if (p := _find(directory, name, "kg")) is not None:
        kg = _rename(read_atomic_file(p), {"head_id": "head", "relation_id": "relation", "tail_id": "tail"}, p)
    if (p := _find(directory, name, "link")) is not None:
        links = _rename(read_atomic_file(p), {item_field: "item", "entity_id": "entity"}, p)
    return items, users, kg, links, text_cols, tag_cols, user_attribute_columns


def read_atomic(
    directory: str | Path,
    name: str | None = None,
    *,
    user_field: str = "user_id",
    item_field: str = "item_id",
    item_tag_columns: Sequence[str] | None = None,
    user_attribute_columns: Sequence[str] | None = None,
) -> Dataset:
    """Read ``NAME.inter`` and the optional ``NAME.item/.user/.kg/.link`` from ``directory``.

    When the directory holds ``NAME.train.inter``, ``NAME.valid.inter`` and
    ``NAME.test.inter`` instead, the dataset is read as pre-split (see
    :func:`read_presplit`).

    Args:
        directory: Folder holding the atomic files.
        name: File stem; default: the folder's name.
        user_field: User id field of ``.inter`` / ``.user`` files.
        item_field: Item id field of ``.inter`` / ``.item`` / ``.link`` files.
        item_tag_columns: Item fields read as tags; default: those named like
            :data:`TAG_FIELDS` (``class``, ``genre``, ...). The rest are text.
        user_attribute_columns: User fields that become attribute tags; default: all.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"Dataset directory not found: {directory}")
    name = name or directory.name
    if _find(directory, name, "train.inter") is not None:
        return read_presplit(directory, name, user_field=user_field, item_field=item_field,
                             item_tag_columns=item_tag_columns,
                             user_attribute_columns=user_attribute_columns)
    inter_path = directory / f"{name}.inter"
    if not inter_path.is_file():
        present = sorted(p.name for p in directory.iterdir())
        raise DataError(
            f"File not found: {inter_path} (need NAME.inter, or NAME.train.inter + NAME.valid.inter + "
            f"NAME.test.inter); files present: {present[:20]}."
        )
    inter = _read_inter(inter_path, user_field, item_field)
    items, users, kg, links, text_cols, tag_cols, attrs = _read_side_files(
        directory, name, user_field, item_field, item_tag_columns, user_attribute_columns
    )
    return Dataset.from_frames(
        inter, items, users, kg, links, name=name, item_text_columns=text_cols,
        item_tag_columns=tag_cols, user_attribute_columns=attrs, source=str(inter_path),
    )


def read_presplit(
    directory: str | Path,
    name: str | None = None,
    *,
    user_field: str = "user_id",
    item_field: str = "item_id",
    item_tag_columns: Sequence[str] | None = None,
    user_attribute_columns: Sequence[str] | None = None,
) -> Dataset:
    """Read an already-split directory; its train/valid/test edges are used exactly as given.

    Duplicates are dropped within each file only; a pair that appears in two files is kept
    in both and counted in ``dataset.report["pairs_in_two_parts"]``. Test items that appear
    in no other file are catalogue items with no training signal, counted in
    ``report["test_only_items"]``.
    """
    directory = Path(directory)
    name = name or directory.name
    parts = {}
    for part in ("train", "valid", "test"):
        path = directory / f"{name}.{part}.inter"
        if not path.is_file():
            raise DataError(f"File not found: {path} (a pre-split directory needs train, valid and test files).")
        frame = _read_inter(path, user_field, item_field)
        parts[part] = Dataset.from_frames(frame, name=name, source=str(path), keep_unused_items=True).interactions
    columns = [c for c in parts["train"].columns if all(c in f.columns for f in parts.values())]
    parts = {k: v.loc[:, columns] for k, v in parts.items()}
    everything = pd.concat(parts.values(), ignore_index=True)
    items, users, kg, links, text_cols, tag_cols, attrs = _read_side_files(
        directory, name, user_field, item_field, item_tag_columns, user_attribute_columns
    )
    base = Dataset.from_frames(
        everything, items, users, kg, links, name=name, item_text_columns=text_cols,
        item_tag_columns=tag_cols, user_attribute_columns=attrs, source=str(directory),
    )
    # from_frames dropped cross-file duplicates from `everything`; keep the files' own edges.
    report = dict(base.report)
    report["pairs_in_two_parts"] = report.pop("duplicate_interactions_dropped", 0)
    seen = set(pd.concat([parts["train"]["item"], parts["valid"]["item"]]))
    if items is not None:
        seen |= set(items["item"].astype(str))
    if links is not None:
        seen |= set(links["item"].astype(str))
    report["test_only_items"] = int(len(set(parts["test"]["item"]) - seen))
    if report["test_only_items"]:
        log.warning("%s: %d test item(s) appear in no other file; they stay in the catalogue "
                    "with no training signal.", directory, report["test_only_items"])
    split = Split(parts["train"], parts["valid"], parts["test"], strategy="presplit", seed=None)
    return replace(base, presplit=split, report=report)


def read_table(
    interactions: str | Path,
    *,
    user_col: str = "user",
    item_col: str = "item",
    rating_col: str | None = None,
    timestamp_col: str | None = None,
    items: str | Path | None = None,
    item_id_col: str = "item",
    item_text_columns: Sequence[str] | None = None,
    item_tag_columns: Sequence[str] = (),
    users: str | Path | None = None,
    user_id_col: str = "user",
    user_attribute_columns: Sequence[str] | None = None,
    name: str | None = None,
    sep: str = ",",
) -> Dataset:
    """Read interactions (and optional item/user tables) from CSV or Parquet with named columns.

    Files ending in ``.parquet`` / ``.pq`` are read with :func:`pandas.read_parquet`, others
    with :func:`pandas.read_csv` (``sep``). Tag cells are split on ``|`` (or whitespace).
    """

    def load(path: str | Path) -> pd.DataFrame:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"File not found: {path}")
        if path.suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding_errors="replace")

    inter_path = Path(interactions)
    frame = load(inter_path)
    mapping = {user_col: "user", item_col: "item"}
    if rating_col:
        mapping[rating_col] = "rating"
    if timestamp_col:
        mapping[timestamp_col] = "timestamp"
    frame = _rename(frame, mapping, inter_path).loc[:, list(mapping.values())]
    if "timestamp" in frame.columns and not pd.api.types.is_numeric_dtype(frame["timestamp"]):
        parsed = pd.to_numeric(frame["timestamp"], errors="coerce")
        if parsed.isna().any():  # ISO dates are accepted too
            dates = pd.to_datetime(frame["timestamp"], errors="coerce", utc=True)
            bad = dates.isna() & parsed.isna()
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise DataError(
                    f"{inter_path}, line {row + 2}: column {timestamp_col!r} has unparsable timestamp "
                    f"{frame['timestamp'].iloc[row]!r} (expected a number or an ISO date)."
                )
            parsed = parsed.fillna(dates.astype("int64") / 1e9)
        frame["timestamp"] = parsed
    if "rating" in frame.columns:
        values = pd.to_numeric(frame["rating"], errors="coerce")
        bad = values.isna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"{inter_path}, line {row + 2}: column {rating_col!r} has unparsable rating "
                f"{frame['rating'].iloc[row]!r}."
            )
        frame["rating"] = values
    item_frame = None
    if items is not None:
        item_frame = _rename(load(items), {item_id_col: "item"}, Path(items))
    user_frame = None
    if users is not None:
        user_frame = _rename(load(users), {user_id_col: "user"}, Path(users))
    return Dataset.from_frames(
        frame, item_frame, user_frame, name=name or inter_path.stem,
        item_text_columns=item_text_columns, item_tag_columns=item_tag_columns,
        user_attribute_columns=user_attribute_columns, source=str(inter_path),
    )
