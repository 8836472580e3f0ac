"""A small deterministic dataset with text, tags, user attributes and a KG, for tests and demos."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kgrec.data.dataset import Dataset
from kgrec.errors import ConfigError

__all__ = ["make_synthetic"]

_THEMES = {
    "space": (["Star", "Orbit", "Nebula", "Galaxy", "Comet"], ["Voyage", "Frontier", "Odyssey", "Station"], "Sci-Fi"),
    "romance": (["Summer", "Paris", "Moonlit", "Tender", "Secret"], ["Love", "Kiss", "Wedding", "Heart"], "Romance"),
    "crime": (["Dark", "Silent", "Broken", "Cold", "Shadow"], ["Heist", "Alibi", "Verdict", "Witness"], "Crime"),
    "cartoon": (["Happy", "Tiny", "Magic", "Silly", "Bouncy"], ["Puppy", "Dragon", "Bunny", "Robot"], "Animation"),
}
_OCCUPATIONS = {"space": "engineer", "romance": "writer", "crime": "lawyer", "cartoon": "student"}


def make_synthetic(num_users: int = 60, num_items: int = 40, seed: int = 0,
                   interactions_per_user: int = 10) -> Dataset:
    """A clustered toy world: four themes, users who mostly like one theme.

    Items carry a title and year (text), one or two genres (tags) and most are linked to
    a KG entity with ``directed_by``, ``starring`` and ``sequel_of`` edges (directors and
    actors are per-theme, so the KG carries the taste signal too; some directors have a
    ``born_in`` edge to a country entity). Users carry age, gender and an occupation
    correlated with their theme. The result depends only on the arguments.

    Args:
        num_users: Number of users (≥ 4).
        num_items: Number of items (≥ 8).
        seed: Random seed.
        interactions_per_user: Interactions per user (≥ 3, < num_items).
    """
    if num_users < 4 or num_items < 8:
        raise ConfigError(f"make_synthetic needs num_users >= 4 and num_items >= 8; got {num_users}, {num_items}.")
    if not 3 <= interactions_per_user < num_items:
        raise ConfigError(
            f"interactions_per_user must be in [3, num_items); got {interactions_per_user} with num_items={num_items}."
        )
    rng = np.random.default_rng(seed)
    themes = list(_THEMES)
    item_theme = [themes[i % len(themes)] for i in range(num_items)]
    items = []
    for i, theme in enumerate(item_theme):
        adjectives, nouns, genre = _THEMES[theme]
        title = f"{adjectives[rng.integers(len(adjectives))]} {nouns[rng.integers(len(nouns))]} {i}"
        genres = [genre]
        if rng.random() < 0.3:
            genres.append(_THEMES[themes[rng.integers(len(themes))]][2])
        items.append({"item": f"i{i}", "title": title, "year": str(1980 + int(rng.integers(40))),
                      "genre": tuple(dict.fromkeys(genres))})
    items = pd.DataFrame(items)

    users = []
    user_theme = [themes[u % len(themes)] for u in range(num_users)]
    for u, theme in enumerate(user_theme):
        occupation = _OCCUPATIONS[theme] if rng.random() < 0.8 else "other"
        users.append({"user": f"u{u}", "age": ["18-24", "25-34", "35-44"][int(rng.integers(3))],
                      "gender": "FM"[int(rng.integers(2))], "occupation": occupation})
    users = pd.DataFrame(users)

    rows, t = [], 0
    by_theme = {th: [i for i, x in enumerate(item_theme) if x == th] for th in themes}
    for u, theme in enumerate(user_theme):
        liked = set()
        while len(liked) < interactions_per_user:
            pool = by_theme[theme] if rng.random() < 0.8 else range(num_items)
            liked.add(int(rng.choice(list(pool))))
        for i in sorted(liked, key=lambda _: rng.random()):
            t += 1
            rows.append({"user": f"u{u}", "item": f"i{i}", "rating": float(rng.integers(3, 6)),
                         "timestamp": float(1_000_000 + t * 60)})
    inter = pd.DataFrame(rows)

    links, triples = [], []
    for i, theme in enumerate(item_theme):
        if i % 10 == 9:  # a few items stay without a KG entity
            continue
        entity = f"m.{i:03d}"
        links.append({"item": f"i{i}", "entity": entity})
        k = themes.index(theme)
        triples.append({"head": entity, "relation": "directed_by", "tail": f"d.{k}{int(rng.integers(2))}"})
        for a in rng.choice(3, size=2, replace=False):
            triples.append({"head": entity, "relation": "starring", "tail": f"a.{k}{int(a)}"})
        if i >= len(themes) and (i - len(themes)) % 10 != 9:
            triples.append({"head": entity, "relation": "sequel_of", "tail": f"m.{i - len(themes):03d}"})
    for k in range(len(themes)):
        triples.append({"head": f"d.{k}0", "relation": "born_in", "tail": f"c.{k % 2}"})
    return Dataset.from_frames(
        inter, items, users, pd.DataFrame(triples), pd.DataFrame(links), name="synthetic",
        item_text_columns=("title", "year"), item_tag_columns=("genre",),
        user_attribute_columns=("age", "gender", "occupation"), item_name_column="title",
    )
