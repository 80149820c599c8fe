"""Model speed: forward and forward+backward milliseconds per sample for every registered model.

Batch 8 of 8 frames at 224x224 plus a 64x128 spectrogram, random weights, on the CPU with 2 threads
(and on the GPU too when one is present, with bf16 autocast as well as fp32).

    python benchmarks/models.py [--batch 8] [--image-size 224] [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from avemotion.training.models import create_model, list_models, parameter_count


def time_call(function, repeats: int, device: torch.device) -> float:
    """Median seconds of `repeats` calls after one warm-up call."""
    function()
    timings = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize()
        timings.append(time.perf_counter() - started)
    return sorted(timings)[len(timings) // 2]


def measure(name: str, args, device: torch.device, autocast: torch.dtype | None) -> tuple[float, float, int]:
    model = create_model(name, pretrained=False, image_size=args.image_size).to(device)
    frames = torch.randint(0, 256, (args.batch, 8, 3, args.image_size, args.image_size),
                           dtype=torch.uint8, device=device)
    mel = torch.randn(args.batch, 1, 64, 128, device=device) * 18 - 45
    targets = torch.randint(0, 6, (args.batch,), device=device)
    context = (lambda: torch.autocast(device.type, dtype=autocast)) if autocast else torch.enable_grad

    def forward():
        model.eval()
        with torch.no_grad(), context():
            model({"frames": frames, "mel": mel})

    def forward_backward():
        model.train()
        with context():
            loss = torch.nn.functional.cross_entropy(model({"frames": frames, "mel": mel}), targets)
        loss.backward()
        model.zero_grad(set_to_none=True)

    per_sample = 1000 / args.batch
    return (time_call(forward, args.repeats, device) * per_sample,
            time_call(forward_backward, args.repeats, device) * per_sample, parameter_count(model))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="*", default=list_models())
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs = [(torch.device("cpu"), None, f"cpu, {args.threads} threads, fp32")]
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name()
        runs += [(torch.device("cuda"), None, f"{gpu}, fp32"),
                 (torch.device("cuda"), torch.bfloat16, f"{gpu}, bf16 autocast")]
    print(f"batch {args.batch}, 8 frames {args.image_size}x{args.image_size}, mel 64x128, random weights")
    print(f"{'model':<30}{'params':>9}{'fwd ms/sample':>15}{'fwd+bwd ms/sample':>19}  device")
    rows = []
    for device, autocast, label in runs:
        for name in args.models:
            forward, both, params = measure(name, args, device, autocast)
            print(f"{name:<30}{params / 1e6:>8.2f}M{forward:>15.1f}{both:>19.1f}  {label}")
            rows.append({"model": name, "device": label, "forward_ms": forward, "train_ms": both})
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
