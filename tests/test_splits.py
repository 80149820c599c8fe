from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from avemotion.datasets.cremad import EMOTIONS
from avemotion.datasets.splits import SplitError, actor_folds, actor_split, random_split


@pytest.fixture(scope="module")
def table():
    """A CREMA-D-shaped table: 91 actors (48 male, 43 female), 82 clips each, six emotions."""
    rng = np.random.default_rng(7)
    rows = []
    for actor in range(1001, 1092):
        gender = "male" if actor - 1001 < 48 else "female"
        for i in range(82):
            rows.append({"clip": f"{actor}_{i}", "actor_id": actor, "gender": gender,
                         "emotion": EMOTIONS[rng.integers(6)]})
    return pd.DataFrame(rows).sample(frac=1, random_state=0).reset_index(drop=True)


def actors_of(table, split, name):
    return set(table.loc[split == name, "actor_id"])


def test_actor_split_keeps_every_actor_in_one_split(table):
    split = actor_split(table, seed=3)
    train, val, test = (actors_of(table, split, n) for n in ("train", "val", "test"))
    assert not (train & val) and not (train & test) and not (val & test)
    assert len(train | val | test) == 91
    assert (len(train), len(val), len(test)) == (65, 13, 13)  # per gender: 34/7/7 and 31/6/6


def test_actor_split_is_gender_balanced(table):
    split = actor_split(table, seed=3)
    actors = table.groupby("actor_id")["gender"].first()
    overall = (actors == "male").mean()
    for name in ("train", "val", "test"):
        share = (actors[sorted(actors_of(table, split, name))] == "male").mean()
        assert abs(share - overall) < 0.06, name


def test_splits_are_reproducible_from_their_seed(table):
    assert actor_split(table, seed=1).equals(actor_split(table, seed=1))
    assert not actor_split(table, seed=1).equals(actor_split(table, seed=2))
    assert random_split(table, seed=1).equals(random_split(table, seed=1))


def test_random_split_is_stratified_by_emotion(table):
    split = random_split(table, seed=0)
    assert abs((split == "test").mean() - 0.15) < 0.01
    assert abs((split == "val").mean() - 0.15) < 0.01
    overall = table["emotion"].value_counts(normalize=True)
    for name in ("train", "val", "test"):
        shares = table.loc[split == name, "emotion"].value_counts(normalize=True)
        assert (shares - overall).abs().max() < 0.01


def test_kfold_puts_every_actor_in_test_exactly_once(table):
    folds = actor_folds(table, 5, seed=0)
    assert len(folds) == 5
    tested = []
    for split in folds:
        train, val, test = (actors_of(table, split, n) for n in ("train", "val", "test"))
        assert not (train & val) and not (train & test) and not (val & test)
        assert len(val) >= 10 and len(test) >= 17
        tested += sorted(test)
    assert sorted(tested) == list(range(1001, 1092))


def test_too_few_actors_is_a_clear_error(table):
    one_actor = table[table["actor_id"] == 1001]
    with pytest.raises(SplitError, match="at least 3 actors.*--split random"):
        actor_split(one_actor)
    tiny = random_split(one_actor.head(6), seed=0)
    assert sorted(tiny.value_counts().to_dict().items()) == [("test", 1), ("train", 4), ("val", 1)]
