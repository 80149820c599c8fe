"""The `avemotion` command: one subcommand per pipeline stage, each a thin layer over its module."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from avemotion import __version__
from avemotion.features import FRAME_SIZE, HOP_LENGTH, N_FRAMES


def _index(args: argparse.Namespace) -> int:
    from avemotion.index import index_dataset, write_metadata

    result = index_dataset(args.data_dir)
    print(result.summary())
    failures = result.strict_failures()
    if args.strict and failures:
        print(f"avemotion index: --strict: {len(failures)} problems, nothing written", file=sys.stderr)
        return 1
    write_metadata(result.table, args.output)
    if result.problems:
        problems_path = args.output.with_name(args.output.stem + "_problems.csv")
        result.problems_table().to_csv(problems_path, index=False)
        print(f"problems listed in {problems_path}")
    print(f"wrote {len(result.table)} rows to {args.output}")
    return 0


def _eda(args: argparse.Namespace) -> int:
    from avemotion.eda import run_eda
    from avemotion.index import read_metadata

    report = run_eda(read_metadata(args.metadata), args.output)
    print(f"wrote {report}")
    return 0


def _preprocess(args: argparse.Namespace) -> int:
    from avemotion.features import FeatureSettings
    from avemotion.index import read_metadata
    from avemotion.preprocess import preprocess

    settings = FeatureSettings(
        n_frames=args.frames, frame_size=args.frame_size, hop_length=args.hop_length,
        face_crop=args.face_crop,
    )
    report = preprocess(read_metadata(args.metadata), args.cache, settings, workers=args.workers)
    print(report.summary())
    return 1 if report.failures else 0


def _models(args: argparse.Namespace) -> int:
    from avemotion.models import describe_models

    print(describe_models(image_size=args.image_size))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from avemotion.demo import run_demo

    report = run_demo(args.output, args.data_dir)
    print(f"demo report: {report}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="avemotion",
        description="Audio-visual emotion recognition on talking-face clips (CREMA-D first).",
    )
    parser.add_argument("--version", action="version", version=f"avemotion {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    index = commands.add_parser(
        "index", help="list every clip of a dataset folder in a metadata table",
        description="Walk DATA_DIR and write one row per audio-video clip (both CREMA-D layouts). "
        "Defects are counted and listed, never fatal unless --strict.",
    )
    index.add_argument("data_dir", type=Path, metavar="DATA_DIR", help="folder of clips")
    index.add_argument("-o", "--output", type=Path, default=Path("metadata.csv"),
                       help="metadata table to write, .csv or .parquet (default: metadata.csv)")
    index.add_argument("--strict", action="store_true",
                       help="fail on unparseable names, unknown codes, missing demographics, stray files")
    index.set_defaults(run=_index)

    eda = commands.add_parser(
        "eda", help="value counts and charts of a metadata table",
        description="Write value counts, bar and pie charts of statement, emotion, intensity and "
        "gender, and one HTML report showing them.",
    )
    eda.add_argument("metadata", type=Path, metavar="METADATA", help="table written by `index`")
    eda.add_argument("-o", "--output", type=Path, default=Path("eda"),
                     help="folder for the report (default: eda)")
    eda.set_defaults(run=_eda)

    pre = commands.add_parser(
        "preprocess", help="extract 8 frames and a log-Mel spectrogram per clip, once, into a cache",
        description="Decode every clip of METADATA once: 8 equally spaced RGB frames and a 64x128 "
        "log-Mel spectrogram of its audio at 16 kHz, stored under CACHE in a folder named by a hash "
        "of the settings. Resumable; failed clips are listed in failures.csv and make the exit "
        "status 1.",
    )
    pre.add_argument("metadata", type=Path, metavar="METADATA", help="table written by `index`")
    pre.add_argument("--cache", type=Path, required=True, help="cache folder")
    pre.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    pre.add_argument("--face-crop", action="store_true",
                     help="crop a square around the detected face before resizing")
    pre.add_argument("--frames", type=int, default=N_FRAMES, help=f"frames per clip ({N_FRAMES})")
    pre.add_argument("--frame-size", type=int, default=FRAME_SIZE,
                     help=f"frame side in pixels ({FRAME_SIZE})")
    pre.add_argument("--hop-length", type=int, default=HOP_LENGTH,
                     help=f"samples between FFT windows ({HOP_LENGTH})")
    pre.set_defaults(run=_preprocess)

    models = commands.add_parser(
        "models", help="list the registered models with parameter counts and input shapes",
        description="List every registered model (the --model choices of train) with its "
        "backbones, parameter counts and input shapes. Builds each with random weights.",
    )
    models.add_argument("--image-size", type=int, default=FRAME_SIZE,
                        help=f"frame side in pixels ({FRAME_SIZE})")
    models.set_defaults(run=_models)

    demo = commands.add_parser(
        "demo", help="run the pipeline end to end on the bundled clips (or DATA_DIR)",
        description="Run the pipeline on the bundled CREMA-D sample clips, or on DATA_DIR, and write "
        "one report linking every output.",
    )
    demo.add_argument("data_dir", type=Path, nargs="?", metavar="DATA_DIR",
                      help="folder of clips (default: the bundled samples)")
    demo.add_argument("-o", "--output", type=Path, default=Path("demo-output"),
                      help="folder for every output (default: demo-output)")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse arguments, run the stage, turn expected errors into one clear line."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (OSError, ValueError, ImportError) as error:
        print(f"avemotion {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"avemotion {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
