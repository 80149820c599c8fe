"""Voices across corpora: leave one corpus out over six corpora in five languages, beside training on
one corpus alone, for every layer of Whisper base and the eGeMAPS baseline, under several heads and
label-free normalisations, and the in-corpus CREMA-D figure of the same recipes.

    pip install -e '.[train,speech,bench]'
    python benchmarks/cross_corpus.py --corpus crema-d=CREMAD_WAVS ravdess=RAVDESS_DIR tess=TESS_DIR \\
        urdu=URDU_DIR ased=ASED_DIR turevdb=TUREV_SOUND_SOURCE --documents CREMAD_METADATA_DIR \\
        --weights WHISPER_BASE_DIR [--work DIR] [--features whisper egemaps] [--heads logistic svm mlp]
        [--norms none corpus speaker] [--limit N]

Each corpus is indexed by its own module (CREMA-D's and RAVDESS's voices, RAVDESS's speech alone;
TESS, URDU, ASED and TurEV-DB: avemotion.datasets), and the six are read as one table as `train
--metadata A.csv B.csv …` reads them (each clip keeping its corpus, each speaker distinct). Every
clip is encoded once: Whisper base's seven hidden states, mean- and std-pooled, side by side (7,168
numbers, `whisper_base_layers_audio_only`'s features, cached in WORK/cache as `train` caches them;
WHISPER_BASE_DIR as `train --weights` takes it), and openSMILE's eGeMAPS functionals (88).

A recipe is the features, the head fitted on them as `train --linear-probe` fits it (in closed form
`logistic`, the product's linear probe, and `svm`, its RBF SVM probe; `mlp`, its hidden-layer probe,
by that probe's fixed recipe) and a normalisation that
needs no labels: `none` (the head's own standardisation over its training clips), `corpus` (each
corpus standardised with its own clips' statistics, the held-out one with its own) or `speaker`
(each speaker with its own, as `--speaker-norm` does). Each recipe is scored

- leaving one corpus out: trained on the other five, judged on every clip of the held-out one whose
  label the training had, the choice restricted to the labels the held-out corpus has (as `evaluate
  --metadata` scores another corpus); and judged again on the clips CREMA-D alone is judged on
  (those of CREMA-D's six labels), choosing among those labels as CREMA-D alone does: the same
  clips and the same choice, where the two are compared;
- the shareable corpora (CREMA-D and RAVDESS, whose terms let a model trained on them be shared:
  the ready model's voice) together, judged on each of the four others;
- trained on one corpus alone, judged on each other one the same way (the train x test matrix,
  and WORK/heatmap-*.png);
- in-corpus on CREMA-D, its five actor-independent folds of `train --folds 5`: trained on the
  fold's training and validation actors alone, and with the five other corpora beside them.

Accuracy and unweighted accuracy (macro recall) per held-out corpus, and their mean over the five
corpora other than CREMA-D (the figure a model trained on CREMA-D alone is compared with) and over
all six (the figure the recipe is chosen by: never one corpus's test folds), among all recipes
and among those that judge a clip alone (normalisation `none`: a lone clip has no corpus or speaker
statistics). Each result is kept in WORK/results as it is made, so an interrupted run resumes; every
kept result of a recipe, this run's and earlier ones', is printed and written to WORK/cross_corpus.md
and .json with the seconds each fit took. --limit N keeps N clips a corpus (spread over its
speakers) for a quick look.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from real_speech import egemaps_features, scores, speech_table

from avemotion.datasets.index import index_dataset, read_metadata_tables, write_metadata
from avemotion.datasets.splits import actor_folds
from avemotion.media.features import FeatureSettings
from avemotion.media.preprocess import FeatureCache, ensure_cached, entry_keys
from avemotion.registry import model_settings
from avemotion.runtime.linear_probe import PROBE_C, fit_logistic_layer
from avemotion.runtime.speakers import standardised, standardised_by_speaker
from avemotion.runtime.svm_probe import fit_svm_layer
from avemotion.training.embeddings import EmbeddingCache
from avemotion.training.hidden_probe import fit_hidden_layer
from avemotion.training.models import create_model, model_inputs

CORPORA = ("crema-d", "ravdess", "tess", "urdu", "ased", "turevdb")
OTHERS = CORPORA[1:]  # the corpora a model trained on CREMA-D alone is judged on
# the corpora whose terms let a trained model be shared (the ready model's voice): CREMA-D (ODbL /
# DbCL) and RAVDESS (CC BY-NC-SA: the model is non-commercial too); TESS and TurEV-DB say "no
# derivatives", URDU "research use", ASED nothing
SHAREABLE = ("crema-d", "ravdess")
FEATURES = ("whisper", "egemaps")
HEADS = ("logistic", "svm", "mlp")
NORMS = ("none", "corpus", "speaker")
# a clip judged alone has no corpus or speaker statistics: the ready model and `predict` on one clip
LONE_CLIP_NORMS = ("none",)
WHISPER_MODEL = "whisper_base_layers_audio_only"
CREMAD_FOLDS = 5
# leave one corpus out, the shareable corpora on the others, each corpus alone on each other, CREMA-D's folds
EXPERIMENTS = ("loco", "shareable", "alone", "cremad-fold")
KIND_OF = {"same": "loco"}  # leaving one out, judged on the clips and labels CREMA-D alone is judged on


def corpus_voices(name: str, folder: Path, documents: Path | None, limit: int | None) -> pd.DataFrame:
    """A corpus's voices as a metadata table (RAVDESS's speech alone, CREMA-D's WAVs)."""
    if name == "ravdess":
        table = speech_table(folder)
    else:
        result = index_dataset(folder, name, documents if name == "crema-d" else None)
        print(f"{name}: {result.summary()}")
        table = result.table[result.table["modality"] == "audio"]
    if limit:  # clips drawn from every speaker in turn, so that each keeps several
        shuffled = table.sample(frac=1.0, random_state=0)
        turns = shuffled.assign(turn=shuffled.groupby("actor_id").cumcount()).sort_values("turn", kind="stable")
        table = turns.head(limit).drop(columns="turn")
    return table.reset_index(drop=True)


def joined_table(corpora: dict[str, Path], documents: Path | None, limit: int | None, work: Path) -> pd.DataFrame:
    """The corpora's voices as one table, as `train --metadata A.csv B.csv …` reads them."""
    paths = []
    for name in CORPORA:
        if name in corpora:
            path = work / "tables" / f"{name}.csv"
            write_metadata(corpus_voices(name, corpora[name], documents, limit), path)
            paths.append(path)
    return read_metadata_tables(paths)


def whisper_features(table: pd.DataFrame, work: Path, weights: Path | None) -> tuple[pd.DataFrame, np.ndarray]:
    """Every layer of Whisper base, pooled, for each clip that decodes (the product's features and
    embedding cache); the table of those clips, and (N, 7168) float32."""
    settings = model_settings(WHISPER_MODEL)
    model = create_model(WHISPER_MODEL, weights=weights)
    cache = FeatureCache.open(work / "cache", FeatureSettings()).with_inputs(model_inputs(settings))
    table = ensure_cached(table, cache, progress=True).reset_index(drop=True)
    embeddings = EmbeddingCache(cache.folder, model, cache)
    keys = entry_keys(table)
    embeddings.fill(sorted(set(keys)), progress=True)
    return table, embeddings.load(keys)["audio"].flatten(1).numpy()


def normalised(values: np.ndarray, table: pd.DataFrame, norm: str) -> np.ndarray:
    """The features under a normalisation that needs no labels (NORMS)."""
    if norm == "speaker":
        return standardised_by_speaker(values, table["actor_id"], "the joined corpora")
    if norm == "corpus":
        result = np.empty(values.shape, np.float32)
        for corpus in table["dataset"].unique():
            rows = (table["dataset"] == corpus).to_numpy()
            result[rows] = standardised(values[rows])
        return result
    return values


def fitted(values: np.ndarray, table: pd.DataFrame, train: np.ndarray, head: str):
    """A head fitted on the training rows: its layer, its labels and the fit's seconds."""
    labels = sorted(set(table["emotion"][train]))
    targets = np.array([labels.index(label) for label in table["emotion"][train]])
    started = time.perf_counter()
    if head == "svm":
        layer = fit_svm_layer(values[train], targets, len(labels), speakers=table["actor_id"][train])
    elif head == "mlp":
        layer = fit_hidden_layer(values[train], targets, len(labels))
    else:
        layer = fit_logistic_layer(values[train], targets, len(labels), PROBE_C)
    return layer, labels, time.perf_counter() - started


def judged(values: np.ndarray, table: pd.DataFrame, fit, test: np.ndarray) -> dict:
    """A fitted head judging the test rows whose label it knows, among the labels the test rows
    have; the scores and the fit's seconds."""
    layer, labels, seconds = fit
    test = test & table["emotion"].isin(labels).to_numpy()
    if not test.any():
        return {"clips": 0, "fit_seconds": seconds}
    truth = table["emotion"][test]
    scored = [index for index, label in enumerate(labels) if label in set(truth)]
    chosen = layer.logits(values[test].astype(np.float32))[:, scored].argmax(axis=1)
    outcome = scores(truth, [labels[scored[index]] for index in chosen])
    return {**{key: value for key, value in outcome.items() if key != "predicted"}, "clips": int(test.sum()),
            "fit_seconds": seconds}


def experiments(table: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every (training rows, test rows) pair by name: leave one corpus out, the shareable corpora
    together on each other one, one corpus alone on each other, and CREMA-D's folds alone and
    beside the other corpora."""
    corpus = table["dataset"].to_numpy()
    present = [name for name in CORPORA if name in set(corpus)]
    pairs = {}
    cremad_labels = table["emotion"][corpus == "crema-d"].unique()
    for held in present:
        pairs[f"loco/{held}"] = (corpus != held, corpus == held)
        if held != "crema-d" and len(cremad_labels):  # the clips CREMA-D alone is judged on, as it judges them
            pairs[f"same/{held}"] = (corpus != held, (corpus == held) & table["emotion"].isin(cremad_labels).to_numpy())
    shareable = np.isin(corpus, SHAREABLE)
    pairs |= {f"shareable/{target}": (shareable, corpus == target) for target in present if target not in SHAREABLE}
    pairs |= {f"alone/{source}/{target}": (corpus == source, corpus == target)
              for source in present for target in present if source != target}
    if "crema-d" in present:
        cremad = table[corpus == "crema-d"]
        for number, split in enumerate(actor_folds(cremad, CREMAD_FOLDS, seed=0), start=1):
            tested = table["clip"].isin(set(cremad["clip"][(split == "test").to_numpy()])).to_numpy()
            known = (corpus == "crema-d") & ~tested
            pairs[f"cremad-fold/{number}/alone"] = (known, tested)
            pairs[f"cremad-fold/{number}/beside"] = (known | (corpus != "crema-d"), tested)
    return pairs


def kind_of(experiment: str) -> str:
    """An experiment's kind (EXPERIMENTS) from its name ("loco/tess", "same/tess", "alone/tess/urdu" …)."""
    kind = experiment.split("/")[0]
    return KIND_OF.get(kind, kind)


def run_recipe(table: pd.DataFrame, values: np.ndarray, recipe: str, work: Path,
               kinds: tuple[str, ...] = EXPERIMENTS) -> dict[str, dict]:
    """The experiments of one recipe ("features/head/norm") of the given kinds (EXPERIMENTS) that are
    not kept yet, each kept in WORK/results when made; the results of all its kept experiments, of
    this run and earlier ones, so that its table and heat map show everything measured."""
    _, head, norm = recipe.split("/")
    folder = work / "results" / recipe.replace("/", "-")
    folder.mkdir(parents=True, exist_ok=True)
    values = normalised(values, table, norm)
    results = {}
    fitted_on, fit = None, None  # the last fit: experiments on one training set come in a row
    for name, (train, test) in experiments(table).items():
        kept = folder / f"{name.replace('/', '-')}.json"
        if not kept.is_file() and kind_of(name) in kinds:
            if fitted_on is None or not np.array_equal(train, fitted_on):
                fitted_on, fit = train, fitted(values, table, train, head)
            outcome = judged(values, table, fit, test)
            kept.write_text(json.dumps(outcome))
            print(f"{recipe} {name}: accuracy {outcome.get('accuracy', float('nan')):.3f} on {outcome['clips']} "
                  f"clips ({outcome['fit_seconds']:.0f} s)", flush=True)
        if kept.is_file():
            results[name] = json.loads(kept.read_text())
    return {name: result for name, result in results.items() if result["clips"]}  # labels shared


def summary(results: dict[str, dict]) -> dict:
    """A recipe's leave-one-corpus-out figures, CREMA-D alone judged on the same clips, and its
    in-corpus CREMA-D folds."""
    loco = {name.split("/")[1]: result for name, result in results.items() if name.startswith("loco/")}
    alone = {name.split("/", 1)[1]: result for name, result in results.items() if name.startswith("alone/")}
    shareable = {name.split("/")[1]: result for name, result in results.items() if name.startswith("shareable/")}
    same = {name.split("/")[1]: result for name, result in results.items() if name.startswith("same/")}
    folds = {kind: [result["accuracy"] for name, result in results.items()
                    if name.startswith("cremad-fold/") and name.endswith(kind)] for kind in ("alone", "beside")}

    def mean_over(corpora, figures, key="accuracy"):
        present = [figures[corpus][key] for corpus in corpora if corpus in figures]
        return float(np.mean(present)) if present else None

    return {"loco": loco, "loco_mean_others": mean_over(OTHERS, loco), "loco_mean_all": mean_over(CORPORA, loco),
            "same": same, "loco_mean_others_cremad_labels": mean_over(OTHERS, same),
            "loco_ua_mean_others": mean_over(OTHERS, loco, "unweighted_accuracy"),
            "cremad_alone_on_others": mean_over(OTHERS, {target.split("/")[1]: result for target, result
                                                         in alone.items() if target.startswith("crema-d/")}),
            "alone": alone, "shareable": shareable,
            # what training on the shareable corpora alone costs, on the corpora it leaves out
            "shareable_mean": mean_over(CORPORA, shareable), "loco_mean_unshareable": mean_over(shareable, loco),
            "cremad_folds": {kind: (float(np.mean(values)), float(np.std(values))) if values else None
                             for kind, values in folds.items()}}


def heatmap(summary_of: dict, recipe: str, path: Path) -> None:
    """Train corpus (each alone, then all the others) x test corpus accuracy."""
    measured = set(summary_of["loco"]) | {name for pair in summary_of["alone"] for name in pair.split("/")}
    present = [name for name in CORPORA if name in measured]
    grid = np.full((len(present) + 1, len(present)), np.nan)
    for row, source in enumerate(present):
        for column, target in enumerate(present):
            if f"{source}/{target}" in summary_of["alone"]:
                grid[row, column] = summary_of["alone"][f"{source}/{target}"]["accuracy"]
    for column, target in enumerate(present):
        if target in summary_of["loco"]:
            grid[-1, column] = summary_of["loco"][target]["accuracy"]
    figure, axes = plt.subplots(figsize=(7, 6))
    image = axes.imshow(grid, vmin=0, vmax=1, cmap="viridis")
    axes.set_xticks(range(len(present)), present, rotation=45)
    axes.set_yticks(range(len(present) + 1), [*present, "all the others"])
    for (row, column), value in np.ndenumerate(grid):
        if not np.isnan(value):
            axes.text(column, row, f"{value:.2f}", ha="center", va="center", color="white" if value < 0.6 else "black")
    axes.set_xlabel("judged on")
    axes.set_ylabel("trained on")
    axes.set_title(f"accuracy across corpora: {recipe}")
    figure.colorbar(image)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def markdown(summaries: dict[str, dict]) -> str:
    present = [name for name in CORPORA if any(name in row["loco"] for row in summaries.values())]
    lines = ["| recipe | " + " | ".join(f"{name} (UA)" for name in present)
             + " | mean of the five | mean of six | on CREMA-D's labels: the others, CREMA-D alone | "
             f"{' + '.join(SHAREABLE)} on the other four (the others on them) | CREMA-D 5-fold alone | "
             "CREMA-D 5-fold beside the others |", "|---" * (len(present) + 7) + "|"]
    for recipe, row in summaries.items():
        cells = [f"{row['loco'][name]['accuracy']:.3f} ({row['loco'][name]['unweighted_accuracy']:.3f})"
                 if name in row["loco"] else "-" for name in present]
        lines.append(f"| {recipe} | " + " | ".join(cells) + f" | {_figure(row['loco_mean_others'])} | "
                     f"{_figure(row['loco_mean_all'])} | {_figure(row['loco_mean_others_cremad_labels'])}, "
                     f"{_figure(row['cremad_alone_on_others'])} | "
                     f"{_figure(row['shareable_mean'])} ({_figure(row['loco_mean_unshareable'])}) | "
                     f"{_spread(row['cremad_folds']['alone'])} | {_spread(row['cremad_folds']['beside'])} |")
    return "\n".join(lines)


def chosen_recipe(summaries: dict[str, dict], norms: tuple[str, ...]) -> str | None:
    """The recipe under one of these normalisations with the best mean over the six held-out corpora."""
    candidates = [recipe for recipe in summaries if recipe.split("/")[2] in norms]
    return max(candidates, key=lambda recipe: summaries[recipe]["loco_mean_all"] or 0, default=None)


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _spread(pair: tuple[float, float] | None) -> str:
    return "-" if pair is None else f"{pair[0]:.3f} ± {pair[1]:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", nargs="+", required=True, metavar="NAME=DIR",
                        help=f"each corpus's folder, by name: {', '.join(CORPORA)}")
    parser.add_argument("--documents", type=Path, help="CREMA-D's VideoDemographics.csv folder (genders)")
    parser.add_argument("--weights", type=Path, help="the folder holding the converted whisper-base/")
    parser.add_argument("--work", type=Path, default=Path("cross-corpus-bench"))
    parser.add_argument("--features", nargs="+", default=list(FEATURES), choices=FEATURES)
    parser.add_argument("--heads", nargs="+", default=list(HEADS), choices=HEADS)
    parser.add_argument("--norms", nargs="+", default=list(NORMS), choices=NORMS)
    parser.add_argument("--limit", type=int, help="keep this many clips a corpus (a quick look)")
    parser.add_argument("--experiments", nargs="+", default=list(EXPERIMENTS), choices=EXPERIMENTS,
                        help="which kinds of experiment to run (all)")
    args = parser.parse_args()
    corpora = {name: Path(folder) for name, folder in (pair.split("=", 1) for pair in args.corpus)}
    unknown = set(corpora) - set(CORPORA)
    if unknown:
        raise SystemExit(f"unknown corpora {sorted(unknown)}; name them among {', '.join(CORPORA)}")
    work = args.work if not args.limit else args.work / f"limit-{args.limit}"
    table = joined_table(corpora, args.documents, args.limit, work)
    table, whisper = whisper_features(table, work, args.weights)
    arrays = {"whisper": whisper}
    if "egemaps" in args.features:
        arrays["egemaps"] = egemaps_features(table, work).to_numpy(np.float32)
    summaries = {}
    for features in args.features:
        for head in args.heads:
            for norm in args.norms:
                recipe = f"{features}/{head}/{norm}"
                summaries[recipe] = summary(run_recipe(table, arrays[features], recipe, work,
                                                       tuple(args.experiments)))
                heatmap(summaries[recipe], recipe, work / f"heatmap-{recipe.replace('/', '-')}.png")
    text = markdown(summaries)
    chosen = {"any": chosen_recipe(summaries, NORMS), "lone clips": chosen_recipe(summaries, LONE_CLIP_NORMS)}
    text += ("\n\nChosen by the mean over the six held-out corpora: "
             f"{chosen['any']}; among the recipes that judge a clip alone: {chosen['lone clips']}.")
    print(text)
    (work / "cross_corpus.md").write_text(text + "\n")
    (work / "cross_corpus.json").write_text(json.dumps({"summaries": summaries, "chosen": chosen}, indent=2))


if __name__ == "__main__":
    main()
