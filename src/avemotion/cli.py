"""The `avemotion` command: one subcommand per pipeline stage, each a thin layer over its module."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from dataclasses import fields, replace
from pathlib import Path

from avemotion import __version__
from avemotion.config import (
    EXPORT_PRECISIONS,
    FROM_SCRATCH,
    FROZEN_SPEECH,
    PRETRAINED_STILL_IMAGE,
    SCHEDULES,
    SPLIT_KINDS,
    STILL_IMAGE,
    DemoSettings,
    ServeSettings,
    TimelineSettings,
    TrainSettings,
    recipe,
)
from avemotion.csvfiles import to_csv_text, write_csv
from avemotion.datasets import CORPORA
from avemotion.datasets.synth import LAYOUTS, SynthSettings
from avemotion.errors import AvemotionError, UsageError
from avemotion.media.inputs import FeatureSettings
from avemotion.registry import SPEECH_POOLINGS, ModelSettings, hybrids, list_models, model_settings
from avemotion.settings import default_of, help_of

# What the `train` extra installs: training, evaluation, export and checkpoints need them; predicting
# and serving an exported ONNX model do not.
TRAINING_PACKAGES = frozenset({"torch", "timm", "lightning", "sklearn", "onnx", "tabulate"})


def _index(args: argparse.Namespace) -> int:
    from avemotion.datasets.index import index_dataset, write_metadata

    result = index_dataset(args.data_dir, args.dataset, args.documents)
    print(f"dataset: {result.dataset}")
    print(result.summary())
    failures = result.strict_failures()
    if args.strict and failures:
        print(f"avemotion index: --strict: {len(failures)} problems, nothing written", file=sys.stderr)
        return 1
    if result.table.empty:
        print(f"avemotion index: {args.data_dir}: no clip could be indexed ({len(result.problems)} "
              "problems), no table written", file=sys.stderr)
        _write_problems(result, args.output)
        return 1
    write_metadata(result.table, args.output)
    _write_problems(result, args.output)
    print(f"wrote {len(result.table)} rows to {args.output}")
    return 0


def _write_problems(result, output: Path) -> None:
    """The index's problems beside its table, as OUTPUT_problems.csv (nothing without problems)."""
    if not result.problems:
        return
    problems_path = output.with_name(output.stem + "_problems.csv")
    problems_path.parent.mkdir(parents=True, exist_ok=True)
    write_csv(result.problems_table(), problems_path)
    print(f"problems listed in {problems_path}")


def _eda(args: argparse.Namespace) -> int:
    from avemotion.datasets.eda import run_eda
    from avemotion.datasets.index import read_metadata

    report = run_eda(read_metadata(args.metadata), args.output)
    print(f"wrote {report}")
    return 0


def _settings_from(args: argparse.Namespace, settings_class: type, **given):
    """A settings dataclass from the arguments named after its fields (the others keep defaults)."""
    values = {f.name: getattr(args, f.name) for f in fields(settings_class) if hasattr(args, f.name)}
    return settings_class(**{**values, **given})


def _feature_settings(args: argparse.Namespace) -> FeatureSettings:
    return _settings_from(args, FeatureSettings)


def _preprocess(args: argparse.Namespace) -> int:
    from avemotion.datasets.index import read_metadata
    from avemotion.media.preprocess import preprocess

    settings = _feature_settings(args)
    report = preprocess(read_metadata(args.metadata), args.cache, settings, workers=args.workers)
    print(report.summary())
    return 1 if report.failures else 0


def _train_settings(args: argparse.Namespace) -> TrainSettings:
    """The recipe: the paper's with pretrained weights; from random weights (and whole networks
    trained), the from-scratch recipe; on a frozen speech encoder, its own; either way the options
    given on the command line win."""
    given = frozenset(getattr(args, "given", ()))
    model = model_settings(args.model_name, temporal_hidden=args.temporal_hidden,
                           speech_pooling=args.speech_pooling)
    if "pretrained" in given:  # else the registered model's own (still-face models start from scratch)
        model = replace(model, pretrained=args.pretrained)
    if "speech_pooling" in given and not model.tuned_speech:
        raise UsageError(f"{model.name}: --speech-pooling chooses how a fine-tuned speech encoder's frames "
                         "are pooled (a *_tuned_audio_only model); this model has none")
    settings = _settings_from(args, TrainSettings, model=model)
    return recipe(settings, given=given)


def _train(args: argparse.Namespace) -> int:
    from avemotion.datasets.index import read_metadata_tables
    from avemotion.media.preprocess import FeatureCache
    from avemotion.training.train import train

    settings = _train_settings(args)
    if settings.model.still_image and not settings.freeze_backbones:
        print(f"still-image recipe: lr {settings.learning_rate:g} ({settings.schedule}; backbone at "
              f"{settings.backbone_lr_scale:g} of it), "
              f"{settings.max_epochs} epochs, batch {settings.batch_size}, label smoothing "
              f"{settings.label_smoothing:g}, jittered frames {settings.jitter_frames}")
    elif not settings.model.pretrained and settings.init_from is None:
        print("backbones start from random weights (--no-pretrained): not ImageNet-pretrained")
        if not settings.freeze_backbones:
            print(f"from-scratch recipe: lr {settings.learning_rate:g} ({settings.schedule}), "
                  f"{settings.max_epochs} epochs, batch {settings.batch_size}, mixup {settings.mixup:g}, "
                  f"{settings.spec_masks} spectrogram masks"
                  + (", the spectrogram backbone's stem max-pooled" if settings.model.stem_max_pool else ""))
    cache = FeatureCache.open(args.cache, _feature_settings(args))
    table = read_metadata_tables(args.metadata)
    _say_label_coverage(table, settings.common_labels)
    paths = [str(path.resolve()) for path in args.metadata]
    metrics = train(table, cache, args.out, settings, resume=args.resume,
                    metadata_path=paths[0] if len(paths) == 1 else paths)
    if not metrics:  # an extra DDP process: the first one reports
        return 0
    print(_metrics_line(metrics))
    print(f"run folder: {args.out}")
    return 0


def _say_label_coverage(table, common_only: bool) -> None:
    """Trained on several corpora: which labels only some of them have, and what becomes of them."""
    from avemotion.datasets.index import label_coverage

    corpora = sorted(set(table["dataset"]))
    if len(corpora) < 2:
        return
    print(f"{len(table)} clips of {len(corpora)} corpora: {', '.join(corpora)}")
    fate = "left out (--common-labels)" if common_only else "trained where present"
    for label, having in label_coverage(table).items():
        if len(having) < len(corpora):
            print(f"  {label}: only in {', '.join(having)}; {fate}")


def _metrics_line(metrics: dict) -> str:
    """Test metrics in one line; mean ± std for cross-validation."""
    from avemotion.training.evaluate import SCORES

    if "folds" in metrics:
        return f"{metrics['folds']}-fold: " + ", ".join(
            f"{n} {metrics[n]['mean']:.3f} ± {metrics[n]['std']:.3f}" for n in SCORES)
    return f"test ({metrics['clips']} clips): " + ", ".join(f"{n} {metrics[n]:.3f}" for n in SCORES)


def _evaluate(args: argparse.Namespace) -> int:
    from avemotion.training.evaluate import evaluate_run

    metrics, out_dir = evaluate_run(args.run_dir, args.metadata, args.cache, args.output, weights=args.weights)
    if "cross_corpus" in metrics:
        shared = metrics["cross_corpus"]
        print(f"scored on the labels both corpora share: {', '.join(shared['scored_labels'])}")
        if shared["data_labels_left_out"]:
            print(f"left out {shared['clips_left_out']} clips of labels the model does not know: "
                  + ", ".join(shared["data_labels_left_out"]))
        if shared["model_labels_not_in_data"]:
            print("model labels absent from this table (the model's choice is restricted to the "
                  "scored labels): " + ", ".join(shared["model_labels_not_in_data"]))
    print(_metrics_line(metrics))
    if "crowd" in metrics:
        crowd = metrics["crowd"]
        print(f"agreement with the crowd's audio-visual vote: model {crowd['model_agrees_with_crowd']:.3f}, "
              f"actors' intended labels {crowd['intended_label_agrees_with_crowd']:.3f}")
    print(f"wrote {out_dir}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from avemotion.training.compare import compare_runs

    outputs = compare_runs(args.runs, args.output)
    print(outputs["table1_md"].read_text())
    print(f"wrote {args.output}")
    return 0


def _model_and_media(items: list[str]) -> tuple[str | None, list[str]]:
    """`[MODEL] MEDIA…`: the first item is the model when it names one (a checkpoint, an ONNX file,
    a ready model's name), else every item is media and the model is the ready model (None)."""
    from avemotion.ready import is_ready_model

    first = items[0]
    if Path(first).suffix.lower() in (".ckpt", ".onnx") or is_ready_model(first):
        return first, items[1:]
    return None, items


def _loaded(model: str | None, onnx: Path | None, weights: Path | None, command: str):
    """The classifier a command runs (the ready model without MODEL), saying on stderr what its
    results lack, if anything (the ready model's voice where Whisper base cannot be had)."""
    from avemotion.runtime.predict import load

    classifier = load(model, onnx=onnx, weights=weights)
    if getattr(classifier, "voice_missing", None):
        print(f"avemotion {command}: faces alone are judged: {classifier.voice_missing}", file=sys.stderr)
    return classifier


def _predict(args: argparse.Namespace) -> int:
    from avemotion.runtime.predict import expand_inputs

    model, clips = _model_and_media(args.items)
    if not clips:
        raise UsageError(f"{model} is a model: name the clips it should judge after it")
    classifier = _loaded(model, args.onnx, args.weights, "predict")
    paths = expand_inputs(clips, classifier.card.extensions)
    if not paths:
        print("avemotion predict: no media files found (" + ", ".join(classifier.card.extensions) + ")",
              file=sys.stderr)
        return 1
    if classifier.card.speaker_norm:
        group = classifier.card.normalised_by
        print(f"{group}-normalised model: the {len(paths)} clips are taken as one {group}'s", file=sys.stderr)
    results = classifier.predict_batch(paths, progress=len(paths) > 1 and sys.stderr.isatty())
    for result in results:
        if not result.ok:
            print(f"avemotion predict: {result.error}", file=sys.stderr)
    print(_format_predictions([r for r in results if r.ok], classifier.labels, args.format))
    return 1 if any(not result.ok for result in results) else 0


def _format_predictions(results, labels: list[str], style: str) -> str:
    """Predictions as an aligned table, JSON lines' array, or CSV. A model of several parts (the
    ready model) says which judged each clip: face, voice, or face+voice."""
    import json

    import pandas as pd

    if style == "json":
        return json.dumps([result.as_dict() for result in results], indent=2)
    parts = any(r.by_modality for r in results)
    table = pd.DataFrame(
        [{"path": r.path, "label": r.label, **({"judged by": "+".join(r.by_modality)} if parts else {}),
          **{k: round(v, 4) for k, v in r.probabilities.items()}}
         for r in results], columns=["path", "label", *(["judged by"] if parts else []), *labels])
    if style == "csv":
        return to_csv_text(table).rstrip()
    return table.to_string(index=False) if len(table) else "(no predictions)"


def _timeline(args: argparse.Namespace) -> int:
    from avemotion.runtime.timeline import share_of_time, write_timeline

    model, media = _model_and_media(args.items)
    if len(media) != 1:
        raise UsageError("timeline judges one video (or audio file): avemotion timeline [MODEL] VIDEO")
    video = Path(media[0])
    classifier = _loaded(model, None, args.weights, "timeline")
    settings = _settings_from(args, TimelineSettings)
    table = classifier.timeline(video, settings.window, settings.hop, settings.smooth, progress=sys.stderr.isatty())
    window = float(table["end_s"].iloc[0] - table["start_s"].iloc[0])
    details = {"video": str(video), "model": classifier.card.model_name, "window_s": window,
               "hop_s": settings.hop, "smooth": settings.smooth}
    outputs = write_timeline(table, args.output, details)
    print(f"{len(table)} windows of {window:g} s every {settings.hop:g} s over {table['end_s'].iloc[-1]:g} s")
    print("share of time: " + ", ".join(f"{label} {share:.0%}" for label, share in share_of_time(table).items()))
    print(f"wrote {outputs['csv']}, {outputs['json'].name} and {outputs['png'].name}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from avemotion.training.export import export_onnx

    print(f"wrote {export_onnx(args.checkpoint, args.output, precision=args.precision)}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from avemotion.runtime.serve import serve

    serve(args.model, _settings_from(args, ServeSettings), onnx=args.onnx, weights=args.weights)
    return 0


def _synth(args: argparse.Namespace) -> int:
    from avemotion.datasets.synth import write_corpus

    count = write_corpus(args.output, _settings_from(args, SynthSettings), names_file=args.design,
                         workers=args.workers)
    print(f"wrote {count} SYNTHETIC clips (not CREMA-D data) to {args.output}")
    return 0


def _models(args: argparse.Namespace) -> int:
    from avemotion.ready import describe_ready_models

    print(describe_ready_models() + "\n")
    try:
        from avemotion.training.models import describe_models
    except ImportError as error:  # the base install judges with the ready model; training needs more
        print(f"(the models `train` builds need the training install: {_import_advice(error)})")
        return 0
    print(describe_models(FeatureSettings(frame_size=args.frame_size)))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from avemotion.demo import run_demo

    report = run_demo(args.output, args.data_dir, _settings_from(args, DemoSettings))
    print(f"demo report: {report}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="avemotion",
        description="Audio-visual emotion recognition on talking-face clips (CREMA-D first).",
    )
    parser.add_argument("--version", action="version", version=f"avemotion {__version__}")
    parser.add_argument("--traceback", action="store_true",
                        help=f"show the traceback of a handled error too (or set {TRACEBACK_VARIABLE}=1)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_index_parser(commands)
    _add_eda_parser(commands)
    _add_preprocess_parser(commands)
    _add_train_parser(commands)
    _add_evaluate_parser(commands)
    _add_compare_parser(commands)
    _add_predict_parser(commands)
    _add_timeline_parser(commands)
    _add_export_parser(commands)
    _add_serve_parser(commands)
    _add_synth_parser(commands)
    _add_models_parser(commands)
    _add_demo_parser(commands)
    return parser


def add_setting(group, settings_class: type, name: str, *flags: str, **options) -> None:
    """An option for the field `name` of a settings dataclass, with its declared default and help.

    The destination is the field's name; a setting that is on by default gets a --no-… flag."""
    default = default_of(settings_class, name)
    help_text = help_of(settings_class, name).replace("%", "%%")
    flags = flags or (f"--{name.replace('_', '-')}",)
    if isinstance(default, bool):
        action = "store_false" if default else "store_true"
        group.add_argument(*flags, dest=name, action=action,
                           help=f"turn off: {help_text}" if default else help_text)
        return
    options.setdefault("type", type(default) if default is not None else str)
    shown = "" if default in (None, ()) else f" ({default})"
    group.add_argument(*flags, dest=name, default=default, help=help_text + shown,
                       action=_Given, **options)


class _Given(argparse.Action):
    """Store an option's value and remember that it was given (in `namespace.given`), so that a
    recipe chosen later keeps what the user asked for."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, tuple(values) if isinstance(values, list) else values)
        namespace.given = {*getattr(namespace, "given", ()), self.dest}


class _GivenSwitch(argparse.BooleanOptionalAction):
    """A --flag / --no-flag pair that remembers it was given, as :class:`_Given` does: for a
    switch that a recipe turns on, so that --no-flag keeps it off."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        super().__call__(parser, namespace, values, option_string)
        namespace.given = {*getattr(namespace, "given", ()), self.dest}


def _add_index_parser(commands) -> None:
    index = commands.add_parser(
        "index", help="list every clip of a dataset folder (or a manifest) in a metadata table",
        description="Walk DATA_DIR and write one row per clip: CREMA-D (both layouts) and RAVDESS "
        "are recognised by their file names, a folder per label (DIR/<label>/*.wav|mp4) by its "
        "layout; a CSV manifest (columns path and label, optionally speaker, audio_path, gender, "
        "modality) describes any other corpus. Defects are counted and listed, never fatal unless "
        "--strict.",
    )
    index.add_argument("data_dir", type=Path, metavar="DATA_DIR", help="folder of clips, or a manifest .csv")
    index.add_argument("--dataset", choices=sorted(CORPORA), default=None,
                       help="read the folder as this corpus instead of recognising it")
    index.add_argument("--documents", type=Path, metavar="DIR", default=None,
                       help="a folder of the corpus's metadata files when they do not sit beside its "
                       "media (CREMA-D: VideoDemographics.csv, summaryTable.csv)")
    index.add_argument("-o", "--output", type=Path, default=Path("metadata.csv"),
                       help="metadata table to write, .csv or .parquet (default: metadata.csv)")
    index.add_argument("--strict", action="store_true",
                       help="fail on unparseable names, unknown codes, missing demographics, stray "
                       "or missing files, rows without a label")
    index.set_defaults(run=_index)


def _add_eda_parser(commands) -> None:
    eda = commands.add_parser(
        "eda", help="value counts and charts of a metadata table",
        description="Write value counts, bar and pie charts of the table's emotion, gender and other "
        "categorical columns (statement, intensity, modality, … as the corpus has them), and one "
        "HTML report showing them.",
    )
    eda.add_argument("metadata", type=Path, metavar="METADATA", help="table written by `index`")
    eda.add_argument("-o", "--output", type=Path, default=Path("eda"),
                     help="folder for the report (default: eda)")
    eda.set_defaults(run=_eda)


def _add_preprocess_parser(commands) -> None:
    pre = commands.add_parser(
        "preprocess", help="extract frames and a log-Mel spectrogram per clip, once, into a cache",
        description="Decode every clip of METADATA once: equally spaced RGB frames (--frames, 8) and a "
        "log-Mel spectrogram of its audio (64 Mel bins x 128 steps at 16 kHz), stored under CACHE in "
        "a folder named by a hash of the settings (models that read other inputs, such as the "
        "waveform, get theirs from `train`). Resumable; failed clips are listed in failures.csv and make the exit "
        "status 1.",
    )
    pre.add_argument("metadata", type=Path, metavar="METADATA", help="table written by `index`")
    pre.add_argument("--cache", type=Path, required=True, help="cache folder")
    pre.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    _add_feature_arguments(pre)
    pre.set_defaults(run=_preprocess)


def _add_feature_arguments(parser: argparse.ArgumentParser) -> None:
    """The feature settings; preprocess and train must be given the same ones to share a cache."""
    group = parser.add_argument_group("feature settings (they name the cache)")
    add_setting(group, FeatureSettings, "face_crop")
    add_setting(group, FeatureSettings, "n_frames", "--frames")
    add_setting(group, FeatureSettings, "frame_size")
    add_setting(group, FeatureSettings, "hop_length")
    add_setting(group, FeatureSettings, "waveform_seconds")


def _add_train_parser(commands) -> None:
    train = commands.add_parser(
        "train", help="train a model with the paper's recipe on an honest split",
        description="Train MODEL on the clips of METADATA (features from CACHE, computed first "
        "where missing) with AdamW, early stopping on validation loss and the best weights kept; "
        "write config, split, per-epoch history, checkpoint, test predictions, metrics and plots "
        "to OUT.",
    )
    default_model = default_of(TrainSettings, "model")
    train.add_argument("--model", dest="model_name", choices=list_models(), default=default_model.name,
                       metavar="NAME", help=f"{help_of(TrainSettings, 'model')}: "
                       f"{', '.join(list_models())} ({default_model.name})")
    train.add_argument("--metadata", type=Path, nargs="+", required=True, metavar="METADATA",
                       help="table written by `index`, or several (one per corpus): trained on as one, "
                       "each clip keeping its corpus and each speaker distinct")
    train.add_argument("--cache", type=Path, required=True, help="feature cache folder")
    train.add_argument("--out", type=Path, required=True, help="run folder to write")
    recipe_options = train.add_argument_group(
        "recipe (the paper's defaults; with --no-pretrained the from-scratch recipe: "
        + ", ".join(f"{name} {value}" for name, value in FROM_SCRATCH.items())
        + "; for a frozen speech encoder (whisper_base_audio_only …): "
        + ", ".join(f"{name} {value}" for name, value in FROZEN_SPEECH.items())
        + "; for a still-face model (resnet18_face …): "
        + ", ".join(f"{name} {value}" for name, value in STILL_IMAGE.items())
        + "; for a pretrained one (mobilenetv2_face …) the same but "
        + ", ".join(f"{name} {value}" for name, value in PRETRAINED_STILL_IMAGE.items()
                    if STILL_IMAGE.get(name) != value) + ")")
    add_setting(recipe_options, TrainSettings, "learning_rate", "--lr")
    add_setting(recipe_options, TrainSettings, "weight_decay")
    add_setting(recipe_options, TrainSettings, "batch_size")
    add_setting(recipe_options, TrainSettings, "max_epochs", "--epochs")
    add_setting(recipe_options, TrainSettings, "patience")
    add_setting(recipe_options, TrainSettings, "schedule", choices=SCHEDULES)
    add_setting(recipe_options, TrainSettings, "mixup")
    add_setting(recipe_options, TrainSettings, "spec_masks")
    recipe_options.add_argument("--jitter-frames", dest="jitter_frames", action=_GivenSwitch,
                                default=default_of(TrainSettings, "jitter_frames"),
                                help=help_of(TrainSettings, "jitter_frames"))
    add_setting(recipe_options, TrainSettings, "label_smoothing")
    add_setting(recipe_options, TrainSettings, "backbone_lr_scale")
    add_setting(recipe_options, TrainSettings, "speed_perturbation", type=float, nargs="*", metavar="SPEED")
    add_setting(recipe_options, TrainSettings, "test_time_speeds", type=float, nargs="*", metavar="SPEED")
    add_setting(recipe_options, ModelSettings, "temporal_hidden", "--temporal-hidden", "--lstm-hidden")
    add_setting(recipe_options, ModelSettings, "speech_pooling", choices=SPEECH_POOLINGS)
    data = train.add_argument_group("split")
    add_setting(data, TrainSettings, "split", choices=SPLIT_KINDS)
    add_setting(data, TrainSettings, "folds")
    add_setting(data, TrainSettings, "seed")
    add_setting(data, TrainSettings, "common_labels")
    modes = train.add_argument_group("modes")
    add_setting(modes, TrainSettings, "freeze_backbones")
    modes.add_argument("--linear-probe", dest="linear_probe", action=_GivenSwitch,
                       default=default_of(TrainSettings, "linear_probe"),
                       help=help_of(TrainSettings, "linear_probe").replace("%", "%%"))
    modes.add_argument("--pretrained", dest="pretrained", action=_GivenSwitch,
                       default=default_of(ModelSettings, "pretrained"),
                       help=help_of(ModelSettings, "pretrained") + " (still-face models start "
                       "from random weights unless --pretrained)")
    add_setting(modes, TrainSettings, "weights")
    add_setting(modes, TrainSettings, "init_from")
    add_setting(modes, TrainSettings, "speaker_norm")
    add_setting(modes, TrainSettings, "corpus_norm")
    modes.add_argument("--resume", action="store_true", help="continue from OUT's last epoch")
    hardware = train.add_argument_group("hardware (Lightning)")
    for name in ("accelerator", "devices", "strategy", "num_nodes", "precision", "num_workers", "channels_last"):
        add_setting(hardware, TrainSettings, name)
    _add_feature_arguments(train)
    train.set_defaults(run=_train)


def _add_evaluate_parser(commands) -> None:
    evaluate = commands.add_parser(
        "evaluate", help="recompute a run's metrics from its checkpoint",
        description="Load RUN_DIR/model.ckpt and compute accuracy, macro and per-class "
        "precision/recall/F1 and the confusion matrix on the run's test split, or on every clip of "
        "another indexed set (--metadata); with crowd votes, also agreement with the crowd.",
    )
    evaluate.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="folder written by train")
    evaluate.add_argument("--metadata", type=Path, help="evaluate on every clip of this table")
    evaluate.add_argument("--cache", type=Path, help="feature cache (default: the run's)")
    _add_weights_argument(evaluate)
    evaluate.add_argument("-o", "--output", type=Path,
                          help="output folder (default: RUN_DIR/evaluation[-TABLE])")
    evaluate.set_defaults(run=_evaluate)


def _add_compare_parser(commands) -> None:
    compare = commands.add_parser(
        "compare", help="the paper's Table 1 and Fig. 3 for several runs",
        description="Write Table 1 (model, architecture, accuracy, macro P/R/F1) as Markdown and "
        "CSV, a per-class F1 table, and the training loss of every run on one plot.",
    )
    compare.add_argument("runs", type=Path, nargs="+", metavar="RUN_DIR", help="run folders")
    compare.add_argument("-o", "--output", type=Path, default=Path("comparison"),
                         help="output folder (default: comparison)")
    compare.set_defaults(run=_compare)


def _add_predict_parser(commands) -> None:
    predict = commands.add_parser(
        "predict", help="the emotion of any clip, face image or voice, by the ready model or a trained one",
        usage="avemotion predict [-h] [MODEL] CLIP [CLIP ...] [options]",
        description="Print each clip's top label and every label's probability. Without MODEL the "
        "ready model judges (avemotion-base-1: a video by its face and voice, an image by its face, an "
        "audio file by its voice); with one, its feature settings are used. A folder predicts every "
        "clip in it (a speaker-normalised model takes them as one speaker's). Bad files get one line "
        "each on stderr and make the exit status 1; the others are still printed.",
    )
    predict.add_argument("items", nargs="+", metavar="[MODEL] CLIP",
                         help="MODEL (optional): model.ckpt of a run, an exported model.onnx (needs no "
                         "PyTorch) or a ready model's name; then media files or folders")
    predict.add_argument("--format", choices=["table", "json", "csv"], default="table",
                         help="output format (table)")
    predict.add_argument("--onnx", type=Path, help="with a checkpoint: run its ONNX export instead")
    _add_weights_argument(predict)
    predict.set_defaults(run=_predict)


def _add_weights_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", type=Path, metavar="PATH",
                        help="a model with a pretrained speech encoder: the local folder of the "
                        "encoder it was trained with (the ready model: Whisper base; default: "
                        "AVEMOTION_WHISPER, else the hub or its cache)")


def _add_timeline_parser(commands) -> None:
    timeline = commands.add_parser(
        "timeline", help="the emotion over time of a long video (or audio file), by the ready model or a trained one",
        usage="avemotion timeline [-h] [MODEL] VIDEO [options]",
        description="Slide a window over VIDEO and give every label's probability in each window, as "
        "predict would for that stretch cut out as a clip, in one streaming decoding pass. Writes "
        "OUT/timeline.csv, timeline.json and timeline.png, and prints the share of time per label.",
    )
    timeline.add_argument("items", nargs="+", metavar="[MODEL] VIDEO",
                          help="MODEL (optional; the ready model without it): model.ckpt of a run, an "
                          "exported model.onnx or a ready model's name; then the video (or audio) file")
    timeline.add_argument("-o", "--output", type=Path, default=Path("timeline"),
                          help="output folder (default: timeline)")
    for name in ("window", "hop", "smooth"):
        add_setting(timeline, TimelineSettings, name)
    _add_weights_argument(timeline)
    timeline.set_defaults(run=_timeline)


def _add_export_parser(commands) -> None:
    export = commands.add_parser(
        "export", help="export a checkpoint's network to ONNX",
        description="Write the network as ONNX (inputs frames uint8 and mel float32, output "
        "logits, dynamic batch) for `predict --onnx` or any ONNX runtime. A speaker-normalised "
        "model's output is each clip's features, and its last layer is in the file's metadata. A "
        "pretrained speech encoder stays outside the file: it reads the encoder's embedding "
        "(audio_embedding), and its metadata names the encoder, which predict runs beside it "
        "(Whisper in CTranslate2, no PyTorch).",
    )
    export.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="model.ckpt of a run")
    export.add_argument("-o", "--output", type=Path, default=Path("model.onnx"),
                        help="ONNX file to write (model.onnx)")
    export.add_argument("--precision", choices=EXPORT_PRECISIONS, default="float32",
                        help="how the weights are stored: as trained (float32), float16 (half the size) "
                        "or int8 (ONNX Runtime's dynamic quantisation, about a quarter)")
    export.set_defaults(run=_export)


def _add_serve_parser(commands) -> None:
    serve = commands.add_parser(
        "serve", help="a web page to drop a clip on and see its emotion",
        description="Serve a page where a person uploads a clip and sees the predicted emotion, "
        "every label's probability and the frames the model saw; POST /predict answers in JSON.",
    )
    serve.add_argument("model", nargs="?", metavar="MODEL",
                       help="model.ckpt of a run, an exported model.onnx (needs no PyTorch) or a ready "
                       "model's name (default: the ready model)")
    for name in ("host", "port", "max_upload_mb", "concurrency", "queue", "time_limit"):
        add_setting(serve, ServeSettings, name)
    serve.add_argument("--onnx", type=Path, help="with a checkpoint: run its ONNX export instead")
    _add_weights_argument(serve)
    serve.set_defaults(run=_serve)


def _add_synth_parser(commands) -> None:
    synth = commands.add_parser(
        "synth", help="write a SYNTHETIC corpus with CREMA-D's names and layout",
        description="Write drawn faces and generated voices, named and laid out like CREMA-D, to "
        "measure full-size runs without the dataset. Anger and disgust share a face, neutral and "
        "sad share a voice, so fusion has something to show. Not CREMA-D data.",
    )
    synth.add_argument("output", type=Path, metavar="DIR", help="folder to write")
    add_setting(synth, SynthSettings, "actors")
    add_setting(synth, SynthSettings, "sentences")
    add_setting(synth, SynthSettings, "seed")
    add_setting(synth, SynthSettings, "layout", choices=LAYOUTS)
    synth.add_argument("--design", type=Path,
                       help="CREMA-D's SentenceFilenames.csv: use its exact per-actor design")
    synth.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    synth.set_defaults(run=_synth)


def _add_models_parser(commands) -> None:
    models = commands.add_parser(
        "models", help="list the ready models, and the registered models with parameter counts and input shapes",
        description="List the ready models that ship with avemotion (what `predict` uses without "
        "MODEL), then every registered model (the --model choices of train) with its backbones, "
        "parameter counts and input shapes, built with random weights.",
    )
    add_setting(models, FeatureSettings, "frame_size", "--frame-size", "--image-size")
    models.set_defaults(run=_models)


def _add_demo_parser(commands) -> None:
    demo = commands.add_parser(
        "demo", help="run the pipeline end to end: bundled real clips, training on a synthetic corpus",
        description="Index, explore and preprocess the bundled real CREMA-D clips (or DATA_DIR); "
        "train a hybrid and its two ablations on a small SYNTHETIC corpus (or on DATA_DIR) with an "
        "actor-independent split; evaluate, compare, and predict the real clips. One report links "
        "every output.",
    )
    demo.add_argument("data_dir", type=Path, nargs="?", metavar="DATA_DIR",
                      help="folder of real clips to run on and train on (default: the bundled "
                      "samples, with training on a synthetic corpus)")
    demo.add_argument("-o", "--output", type=Path, default=Path("demo-output"),
                      help="folder for every output (default: demo-output)")
    add_setting(demo, DemoSettings, "family", choices=hybrids())
    for name in ("actors", "sentences", "frame_size", "seed"):
        add_setting(demo, DemoSettings, name)
    demo.set_defaults(run=_demo)


TRACEBACK_VARIABLE = "AVEMOTION_TRACEBACK"  # set to 1: handled errors show their traceback too


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse arguments, run the stage, turn expected errors into one clear line.

    Only avemotion's own errors (and a missing training install) become one line with exit status
    2; anything else is a bug and keeps its traceback. `--traceback` (or AVEMOTION_TRACEBACK=1)
    shows the traceback of a handled error as well."""
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:  # media after an option (`predict MODEL --onnx X CLIP`): argparse leaves them over
        if not hasattr(args, "items") or any(extra.startswith("-") for extra in extras):
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
        args.items += extras
    show_traceback = args.traceback or os.environ.get(TRACEBACK_VARIABLE, "") not in ("", "0")
    try:
        return args.run(args)
    except ImportError as error:
        if show_traceback:
            traceback.print_exc()
        print(f"avemotion {args.command}: error: {_import_advice(error)}", file=sys.stderr)
        return 2
    except AvemotionError as error:
        if show_traceback:
            traceback.print_exc()
        print(f"avemotion {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interruption:
        print(f"avemotion {args.command}: {interruption or 'interrupted'}", file=sys.stderr)
        return 130


def _import_advice(error: ImportError) -> str:
    """What to install when a module is missing."""
    package = (error.name or "").split(".")[0]
    if package in TRAINING_PACKAGES:
        return (f"this needs {package}, part of the training install: pip install 'avemotion[train]' "
                "(an exported ONNX model predicts and serves without it)")
    return str(error)


if __name__ == "__main__":
    sys.exit(main())
