"""Train / validation / test splits: actor-independent (default), clip-level random, actor K-fold,
or the one a corpus gives (its table's own ``split`` column, as FER2013's parts).

Every split is a Series aligned with the metadata table, holding 'train', 'val' or 'test' per clip,
and is reproducible from its seed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from avemotion.errors import AvemotionError

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.70, 0.15, 0.15)


class SplitError(AvemotionError, ValueError):
    """The data cannot be split as asked; the message says why and what to do instead."""


def actor_split(
    table: pd.DataFrame, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS, seed: int = 0
) -> pd.Series:
    """Assign whole actors to train/val/test in the given proportions, separately per gender (and
    per corpus, where the table holds several)."""
    actors = actor_strata(table)
    if len(actors) < 3:
        raise SplitError(
            f"an actor-independent split needs at least 3 actors, this table has {len(actors)}; "
            "use --split random for a clip-level split, or --split given for the table's own"
        )
    rng = np.random.default_rng(seed)
    assignment = {}
    for _, group in actors.groupby(actors):
        shuffled = rng.permutation(group.index.to_numpy())
        for actor, split in zip(shuffled, _allocate(len(shuffled), fractions)):
            assignment[actor] = split
    _ensure_every_split_has_an_actor(assignment, actors, rng)
    return table["actor_id"].map(assignment).rename("split")


def actor_strata(table: pd.DataFrame) -> pd.Series:
    """Each actor's stratum, which splits keep in proportion: the actor's gender, and corpus too
    where the table holds several (so that every corpus is trained, validated and tested on)."""
    strata = table["gender"].astype(str)
    if "dataset" in table and table["dataset"].nunique() > 1:
        strata = table["dataset"].astype(str) + "/" + strata
    return strata.groupby(table["actor_id"]).first()


def _allocate(count: int, fractions: tuple[float, float, float]) -> list[str]:
    """Split labels for `count` items: val and test rounded from their fractions, the rest train."""
    val = round(count * fractions[1])
    test = round(count * fractions[2])
    return ["val"] * val + ["test"] * test + ["train"] * (count - val - test)


def _ensure_every_split_has_an_actor(assignment: dict, actors: pd.Series, rng) -> None:
    """With very few actors per gender, rounding can leave a split empty: move one actor into it."""
    for split in SPLITS:
        if split in assignment.values():
            continue
        counts = pd.Series(assignment).value_counts()
        donor = counts.idxmax()
        candidates = [actor for actor, s in assignment.items() if s == donor]
        assignment[rng.choice(candidates)] = split


def random_split(
    table: pd.DataFrame, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS, seed: int = 0
) -> pd.Series:
    """Clip-level split, stratified by emotion where every emotion has enough clips."""
    if len(table) < 3:
        raise SplitError(f"a split needs at least 3 clips, this table has {len(table)}")
    index = table.index.to_numpy()
    labels = table["emotion"].to_numpy()
    held_out = max(2, round(len(table) * (fractions[1] + fractions[2])))
    _train, rest = train_test_split(index, test_size=held_out, random_state=seed,
                                    stratify=_stratify(labels, held_out))
    rest_labels = table.loc[rest, "emotion"].to_numpy()
    test_size = max(1, round(len(rest) * fractions[2] / (fractions[1] + fractions[2])))
    val, test = train_test_split(rest, test_size=test_size, random_state=seed,
                                 stratify=_stratify(rest_labels, test_size))
    split = pd.Series("train", index=table.index, name="split")
    split[val], split[test] = "val", "test"
    return split


def _stratify(labels: np.ndarray, held_out: int) -> np.ndarray | None:
    """The labels to stratify by, or None where some class is too small or the held-out part too
    small to hold every class (tiny tables such as the bundled samples)."""
    _, counts = np.unique(labels, return_counts=True)
    return labels if counts.min() >= 2 and held_out >= len(counts) else None


def actor_folds(table: pd.DataFrame, folds: int, seed: int = 0) -> list[pd.Series]:
    """Actor-grouped K-fold: each actor is in the test split of exactly one fold; the other actors
    are split into train and val (val about 15 % of all actors), gender-balanced throughout (and
    corpus-balanced, where the table holds several)."""
    actors = actor_strata(table)
    if len(actors) < folds + 1:
        raise SplitError(f"{folds}-fold cross-validation needs at least {folds + 1} actors, "
                         f"this table has {len(actors)}")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    actor_ids = actors.index.to_numpy()
    result = []
    for fold, (rest, test) in enumerate(splitter.split(actor_ids, actors.to_numpy(), groups=actor_ids)):
        rest_actors = actors.iloc[rest]
        val_count = max(1, round(len(actors) * DEFAULT_FRACTIONS[1]))
        val_actors = _gender_balanced_sample(rest_actors, val_count, seed + fold)
        assignment = {actor: "train" for actor in rest_actors.index}
        assignment.update({actor: "val" for actor in val_actors})
        assignment.update({actor: "test" for actor in actor_ids[test]})
        result.append(table["actor_id"].map(assignment).rename("split"))
    return result


def _gender_balanced_sample(actors: pd.Series, count: int, seed: int) -> list:
    """`count` actors drawn so that each gender keeps its share."""
    count = min(count, len(actors) - 1)
    rng = np.random.default_rng(seed)
    chosen = []
    for _, group in actors.groupby(actors):
        share = round(count * len(group) / len(actors))
        chosen += list(rng.choice(group.index.to_numpy(), size=min(share, len(group)), replace=False))
    return chosen[:count] if chosen else [rng.choice(actors.index.to_numpy())]


# A table's own split column may name its parts in any of these ways.
GIVEN_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val",
               "validation": "val", "dev": "val", "publictest": "val", "test": "test",
               "privatetest": "test"}


def given_split(table: pd.DataFrame) -> pd.Series:
    """The split a table carries in its `split` column (train / validation / test, or FER2013's
    Training / PublicTest / PrivateTest)."""
    if "split" not in table:
        raise SplitError("--split given reads the table's own split column, and this table has none; "
                         "use --split actor or --split random")
    named = table["split"].astype(str).str.strip().str.lower().map(GIVEN_NAMES)
    unknown = sorted(set(table.loc[named.isna(), "split"].astype(str)))
    if unknown:
        raise SplitError(f"the table's split column holds {unknown[:5]}, which are not train, "
                         "validation or test")
    absent = [part for part in SPLITS if part not in set(named)]
    if absent:
        raise SplitError(f"the table's split column has no {' or '.join(absent)} clips")
    return named.rename("split")


def make_split(table: pd.DataFrame, kind: str, seed: int = 0) -> pd.Series:
    """The split named by the CLI's --split: 'actor', 'random' or 'given'."""
    if kind == "actor":
        return actor_split(table, seed=seed)
    if kind == "random":
        return random_split(table, seed=seed)
    if kind == "given":
        return given_split(table)
    raise SplitError(f"unknown split {kind!r}; choose actor, random or given (or --folds K)")
