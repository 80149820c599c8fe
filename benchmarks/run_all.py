"""Run every benchmark and write benchmarks/README.md: one table of this machine's figures.

    python benchmarks/run_all.py [--work .cache/benchmarks] [--naive-clips 744]

Steps: preprocessing 300 copies of the real bundled clips against the naive reference; a
SYNTHETIC corpus of CREMA-D's size (`avemotion synth`, with CREMA-D's own design when
../shared/cremad-metadata is present; kept in --work and reused) and preprocessing on it against
the naive reference; model speed, training speed, prediction latency, the full-size learning
check on the synthetic corpus, the web server under load, timelines against the naive way, and the paper's temporal model and fusion against their alternatives
(attention pooling, gated fusion) on the demo's synthetic corpus over three seeds.
Takes about 45 minutes on 2 cores.

Which is which: the scripts beside this one are the product's benchmarks. This run takes those that
need no corpus; those on real corpora (real_speech.py, cremad_voices.py, cross_corpus.py, faces.py,
ready_model.py) take the corpus folders as arguments and write their own figures (docs/results/).
benchmarks/studies/ holds one-off studies of choices already made (docs/studies/), never run here;
tools/ holds what makes files (the ready model, Whisper's transformers folder).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from datetime import date
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
DESIGN = HERE.parent.parent / "shared" / "cremad-metadata" / "SentenceFilenames.csv"


def run(script: str, work: Path, *args: str, name: str | None = None) -> dict:
    """Run one benchmark script with --json; echo its output; return its figures."""
    output = work / f"{name or Path(script).stem}.json"
    command = [sys.executable, str(HERE / script), *args, "--json", str(output)]
    print("$", " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True)
    return json.loads(output.read_text())


def machine() -> str:
    """This machine in one line: processor, cores, memory, GPU."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return f"{model}, {os.cpu_count()} cores, {memory:.0f} GiB, {gpu}; torch {torch.__version__}"


def table_rows(figures: dict) -> list[tuple[str, str]]:
    """(what, figure) pairs for benchmarks/README.md's table."""
    rows = [*preprocess_rows(figures["preprocess_real"], "real clips (the bundled samples under new names)"),
            *preprocess_rows(figures["preprocess"], "SYNTHETIC clips")]
    train = figures["train"]
    for name, value in train["finetune_samples_per_second"].items():
        rows.append((f"fine-tune {name}, batch 8, 224×224, CPU", f"{value:.1f} samples/s"))
    for name, value in train["frozen_seconds_per_epoch"].items():
        rows.append((f"--freeze-backbones {name}, one epoch over {train['clips']} cached clips",
                     f"{value:.1f} s"))
    for row in figures["models"]:
        rows.append((f"{row['model']} forward / forward+backward per sample ({row['device']})",
                     f"{row['forward_ms']:.1f} / {row['train_ms']:.1f} ms"))
    predict = figures["predict"]
    rows += [
        ("predict effnet_lstm, checkpoint load (PyTorch / with ONNX Runtime)",
         f"{predict['load_s']:.2f} / {predict['onnx_load_s']:.2f} s"),
        ("predict effnet_lstm, one ~2.3 s clip end to end (PyTorch / ONNX Runtime)",
         f"{predict['torch_latency_s']:.3f} / {predict['onnx_latency_s']:.3f} s"),
    ]
    load = figures["serve_load"]
    for phase, what in (("burst", "concurrent uploads"), ("sequential", "sequential uploads")):
        f = load[phase]
        rows.append((f"serve effnet_lstm, {f['requests']} {what} of real clips (answers by status)",
                     (f"{f['status']}, {f['answered_per_second']:.2f} answered/s, "
                     f"p50 {f['p50_s']:.2f} s, p95 {f['p95_s']:.2f} s")))
    rows.append(("serve, server peak RSS; alive afterwards; 5xx other than 503 or unanswered",
                 f"{load['server_peak_rss_mb']:.0f} MB; {load['alive_after']}; {load['unexpected_errors']}"))
    timeline = figures["timeline"]
    rows.append(((f"timeline effnet_lstm 224×224, {timeline['video_s']:.0f} s real-clip video, "
                 f"{timeline['windows']} windows: engine / naive (cut + predict each window)"),
                 (f"{timeline['engine_s']:.1f} / {timeline['naive_s']:.1f} s, real-time factor "
                 f"{timeline['engine_rtf']:.3f} / {timeline['naive_rtf']:.3f}, {timeline['speedup']:.1f}×")))
    learning = figures["learning_check"]
    rows.append(((f"learning check, {learning['clips']} SYNTHETIC clips, frozen random backbones, "
                  "test accuracy (fused / audio only / video only)"),
                 " / ".join(f"{r['accuracy']:.3f}" for r in list(learning["results"].values())[:3])))
    for family in ("resnet18_vit_lstm", "effnet_lstm"):
        rows.append(alternatives_row(figures[f"alternatives_{family}"]))
    return rows


def alternatives_row(figures: dict) -> tuple[str, str]:
    """Every model of one family's learning check, mean ± std of test accuracy over seeds."""
    names = " / ".join(figures["results"])
    return ((f"temporal model and fusion alternatives on the demo's {figures['clips']} SYNTHETIC clips, "
             f"frozen random backbones, test accuracy over seeds {figures['seeds']} ({names})"),
            " / ".join(f"{r['accuracy']:.3f} ± {r['accuracy_std']:.3f}" for r in figures["results"].values()))


def preprocess_rows(figures: dict, corpus: str) -> list[tuple[str, str]]:
    """The engine, its own-track variant and the naive reference on one corpus, side by side."""

    def speed(result: dict) -> str:
        return f"{result['clips'] / result['seconds']:.1f} clips/s, peak RSS {result['peak_rss_mb']:.0f} MB"

    naive = figures["naive"]
    return [
        (f"preprocess, {figures['engine']['clips']} {corpus}, engine ({figures['workers']} workers)",
         speed(figures["engine"])),
        ("preprocess, same, audio from each clip's own track", speed(figures["engine_own_track"])),
        (f"preprocess, same, naive reference (1 process, OpenCV seeks + librosa), {naive['clips']} clips",
         speed(naive)),
        ("preprocess, same, engine / naive", f"{figures['speedup']:.1f}×"),
    ]


def write_readme(figures: dict, path: Path) -> None:
    lines = [
        "# Benchmarks",
        "",
        f"Regenerated by `python benchmarks/run_all.py` on {date.today().isoformat()}.",
        "",
        f"Machine: {figures['machine']}.",
        "",
        "Preprocessing runs twice: on 300 copies of the real bundled clips (480×360 VP6, where",
        "decoding dominates), and on a SYNTHETIC corpus of CREMA-D's size (`avemotion synth`: drawn",
        "faces, generated voices, CREMA-D's names and layout). The synthetic 160×120 FLV1 video",
        "decodes far faster than VP6, so those rows measure the engine's fixed costs (writing 1.2 MB",
        "of frames per clip to the cache, handing clips to workers) more than decoding; the naive",
        "reference stores nothing. Training and the learning check use the synthetic corpus.",
        "",
        "The benchmarks on real corpora (`real_speech.py`, `cremad_voices.py`, `cross_corpus.py`,",
        "`faces.py`, `ready_model.py`) are not part of this run: the corpora never ship with avemotion.",
        "Their figures, each beside its command, are the documentation's results pages",
        "(`docs/results/`); the one-off studies under `benchmarks/studies/` have theirs in `docs/studies/`.",
        "",
        "| benchmark | figure |",
        "|---|---|",
        *[f"| {what} | {figure} |" for what, figure in table_rows(figures)],
        "",
    ]
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path(".cache/benchmarks"))
    parser.add_argument("--naive-clips", type=int, default=744, help="clips for the naive reference")
    args = parser.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / "synthetic-cremad"
    design = ["--design", str(DESIGN)] if DESIGN.is_file() else []
    subprocess.run([sys.executable, "-m", "avemotion", "synth", str(corpus), *design], check=True)
    figures = {"machine": machine()}
    figures["preprocess_real"] = run("preprocess.py", work, "--clips", "300", name="preprocess_real")
    figures["preprocess"] = run("preprocess.py", work, "--corpus", str(corpus),
                                "--naive-clips", str(args.naive_clips))
    figures["models"] = run("models.py", work)
    figures["train"] = run("train.py", work)
    figures["predict"] = run("predict.py", work)
    figures["serve_load"] = run("serve_load.py", work)
    figures["timeline"] = run("timeline.py", work)
    figures["learning_check"] = run("learning_check.py", work, str(corpus), "--cache",
                                    str(work / "cache"))
    demo_corpus = work / "synthetic-demo"  # the corpus `avemotion demo` trains on
    subprocess.run([sys.executable, "-m", "avemotion", "synth", str(demo_corpus), "--actors", "30",
                    "--sentences", "3"], check=True)
    for family in ("resnet18_vit_lstm", "effnet_lstm"):
        figures[f"alternatives_{family}"] = run(
            "learning_check.py", work, str(demo_corpus), "--family", family, "--alternatives",
            "--seeds", "0", "1", "2", "--cache", str(work / "cache"), name=f"alternatives_{family}")
    write_readme(figures, HERE / "README.md")
    print(f"wrote {HERE / 'README.md'}")


if __name__ == "__main__":
    main()
