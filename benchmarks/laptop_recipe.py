"""A measured recipe search for the laptop profile (2 CPU cores, issue 14).

Trains every (recipe, architecture, training-set size) combination asked for, one at a
time, with ``repsim.train.train_model`` on the CPU, and appends one JSON line per model
to ``--out``: the recipe, the architecture, the size, the epochs, wall and CPU seconds,
the load average before and after, train and test accuracy (test on ``--eval-size``
test images) and, with ``--block``, the block fraction at CKA 0.9 from a 2,048-image
heatmap; with ``--probes``, the mean linear-probe accuracy of each stage's adds. The
Markdown table of everything in ``--out`` is rewritten after every model.

    python -m benchmarks.laptop_recipe --recipes pilot warm --models 14x1 44x1 --sizes 2000 --epochs 20
    python -m benchmarks.laptop_recipe --table-only --out benchmarks/laptop_recipe.jsonl

Wall times on a shared machine are noisy: CPU seconds of this process (all threads),
the busy CPU seconds of every other process (from /proc/stat, which also counts other
containers that ps does not show) and the load average say how much of a slow run was
someone else's. Run with OMP_WAIT_POLICY=PASSIVE when the machine is shared: with the
default (spinning) OpenMP threads, a second busy process made 2-thread training 8-15x
slower instead of about 1.6x.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import itertools
import json
import os
import time
from pathlib import Path

import torch

from repsim.blocks import find_block
from repsim.compare import model_cka
from repsim.data import load_dataset
from repsim.models import ResNet, ResNetConfig, layer_names
from repsim.probes import probe_layers, train_probes
from repsim.train import TrainConfig, train_model

# Named recipes: TrainConfig fields except epochs, train_size and eval_size. WARM is
# Nesterov, a 2-epoch warm-up and the cosine stepped every step, weight decay 5e-4.
WARM = dict(nesterov=True, weight_decay=5e-4, bn_momentum=0.1, warmup_epochs=2, lr_steps="step")
RECIPES = {
    # The pilot: plain SGD at a high rate, no warm-up.
    "pilot": dict(batch_size=64, lr=0.1, weight_decay=5e-4, bn_momentum=0.1),
    "warm": {**WARM, "batch_size": 64, "lr": 0.1},
    "warm05": {**WARM, "batch_size": 64, "lr": 0.05},  # half the peak rate
    "b32": {**WARM, "batch_size": 32, "lr": 0.05},  # smaller batches: twice the steps per epoch
    # An earlier laptop recipe (batch 32, lr 0.02, no decay schedule tricks).
    "laptop": dict(batch_size=32, lr=0.02, bn_momentum=0.1),
    # Issue 21's search for a recipe that fits the training images.
    "b32lr1": {**WARM, "batch_size": 32, "lr": 0.1},
    "b32wd": {**WARM, "batch_size": 32, "lr": 0.05, "weight_decay": 2e-4},
    "b16": {**WARM, "batch_size": 16, "lr": 0.05},
    "b32wd1": {**WARM, "batch_size": 32, "lr": 0.05, "weight_decay": 1e-4},
    "b32wd10": {**WARM, "batch_size": 32, "lr": 0.05, "weight_decay": 1e-3},
    "b32lr1w8": {**WARM, "batch_size": 32, "lr": 0.1, "warmup_epochs": 8},  # the laptop profile's, at 60 epochs
    "b64": {**WARM, "batch_size": 64, "lr": 0.1},
}


def parse_model(text: str) -> ResNetConfig:
    """"14x1" is ResNet-14 (1x); a trailing "p" ("14x1p") drops the residuals."""
    plain = text.endswith("p")
    depth, width = text.rstrip("p").split("x")
    return ResNetConfig(int(depth), int(width), residual=not plain)


def stage_means(rows: list[dict], part: str = "add") -> dict[str, float]:
    """Mean probe test accuracy of each stage's ``part`` layers."""
    means = {}
    for s in (1, 2, 3):
        accs = [r["test_acc"] for r in rows if r["layer"].startswith(f"stage{s}.") and r["layer"].endswith(part)]
        means[f"stage{s}"] = sum(accs) / len(accs)
    return means


def busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all processes, all containers)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def run_one(args, data, recipe: str, model: ResNetConfig, size: int, seed: int, epochs: int,
            precision: str) -> dict:
    config = TrainConfig(epochs=epochs, train_size=size, eval_size=args.eval_size,
                         evaluations=args.evaluations, precision=precision, **RECIPES[recipe])
    load_start, wall, cpu, busy = os.getloadavg(), time.perf_counter(), time.process_time(), busy_seconds()
    trained, metrics = train_model(model, config, data, seed, device="cpu", progress=False)
    row = {
        "recipe": recipe, **{k: v for k, v in dataclasses.asdict(config).items()},
        "model": f"{model.depth}x{model.width}{'' if model.residual else 'p'}", "depth": model.depth,
        "width": model.width, "residual": model.residual, "seed": seed,
        "steps": config.epochs * (size // config.batch_size),
        "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
        # Busy CPU seconds of every other process on the machine (other containers too,
        # which ps does not show) during this model's training.
        "others_cpu_s": busy_seconds() - busy - (time.process_time() - cpu),
        "load_start": load_start[0], "load_end": os.getloadavg()[0],
        "images_per_second": metrics["images_per_second"], "autocast": metrics["autocast"],
        "train_acc": metrics["train_acc"], "test_acc": metrics["best_test_acc"],
        "final_test_acc": metrics["final_test_acc"], "best_epoch": metrics["best_epoch"],
        "history": [h["test_acc"] for h in metrics["history"] if h["test_acc"] is not None],
        "when": datetime.datetime.now().isoformat(timespec="seconds"),
        "threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
    }
    if args.save:
        Path(args.save).mkdir(parents=True, exist_ok=True)
        torch.save(trained.state_dict(), Path(args.save) / f"{recipe}_{row['model']}_{size}_e{config.epochs}_s{seed}.pt")
    if args.block:
        row.update(block(trained, data))
    if args.probes and model.residual:
        row.update(probe(args, trained, data))
    return row


def block(model, data, threshold: float = 0.9) -> dict:
    """The largest block at ``threshold`` of a 2,048-image heatmap, and where it lies."""
    start = time.perf_counter()
    cka = model_cka(model, data.test_images[:2048], batch_size=256, passes=1, device="cpu")
    found, names = find_block(cka.numpy(), threshold=threshold), layer_names(model)
    return dict(block_fraction=found.fraction, block_layers=found.size, cka_s=time.perf_counter() - start,
                block_from=names[found.start] if found.size else None,
                block_to=names[found.stop - 1] if found.size else None)


def probe(args, model, data) -> dict:
    """Linear probes of every add and bn2 (chapter 4's settings unless overridden)."""
    start = time.perf_counter()
    rows = train_probes(model, data, probe_layers(model), train_size=args.probe_train_size, val_size=1000,
                        epochs=args.probe_epochs, lrs=(1e-3, 1e-2), max_features=args.probe_max_features,
                        test_examples=2000, device="cpu")
    return dict(probe_add=stage_means(rows, "add"), probe_bn2=stage_means(rows, "bn2"), probe_rows=rows,
                probe_settings=dict(train_size=args.probe_train_size, epochs=args.probe_epochs,
                                    max_features=args.probe_max_features),
                probe_s=time.perf_counter() - start)


def fmt(value, spec: str) -> str:
    return "" if value is None else format(value, spec)


def table(rows: list[dict]) -> str:
    head = ("| model | size | recipe | precision | batch | lr | epochs | steps | wall s | CPU s | others' CPU s | load start/end | img/s "
            "| train acc | test acc | block | probe add s1/s2/s3 |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        probe = r.get("probe_add")
        lines.append("| " + " | ".join([
            r["model"], f"{r['train_size']:,}", r["recipe"], r.get("autocast", "float32"), str(r["batch_size"]), f"{r['lr']:g}", str(r["epochs"]),
            str(r["steps"]), f"{r['wall_s']:.0f}", f"{r['cpu_s']:.0f}", f"{r.get('others_cpu_s', float('nan')):.0f}", f"{r['load_start']:.1f}/{r['load_end']:.1f}",
            f"{r['images_per_second']:.0f}", f"{r['train_acc']:.1%}", f"{r['test_acc']:.1%}",
            fmt(r.get("block_fraction"), ".2f"),
            "/".join(f"{probe[s]:.1%}" for s in ("stage1", "stage2", "stage3")) if probe else "",
        ]) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="+", default=["warm"], choices=sorted(RECIPES))
    parser.add_argument("--models", nargs="+", default=["14x1"], help="DEPTHxWIDTH, e.g. 14x1 44x1 14x2 14x2p")
    parser.add_argument("--sizes", nargs="+", type=int, default=[2000], help="training-set prefixes")
    parser.add_argument("--epochs", nargs="+", type=int, default=[20])
    parser.add_argument("--precisions", nargs="+", default=["float32"], choices=["float32", "bfloat16"],
                        help="training autocast; several are run side by side, model by model")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--eval-size", type=int, default=2000)
    parser.add_argument("--evaluations", type=int, default=4)
    parser.add_argument("--block", action="store_true", help="block fraction at CKA 0.9 (2,048-image heatmap)")
    parser.add_argument("--probes", action="store_true", help="linear probes of every add and bn2")
    parser.add_argument("--probe-train-size", type=int, default=4000)
    parser.add_argument("--probe-epochs", type=int, default=4)
    parser.add_argument("--probe-max-features", type=int, default=4096)
    parser.add_argument("--save", help="folder for the trained state dicts")
    parser.add_argument("--load", help="a saved state dict (of the first --models) to analyse (--block, --probes) "
                                       "instead of training; appends a line to --out with .probes.jsonl as suffix")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/laptop_recipe.jsonl")
    parser.add_argument("--table-only", action="store_true", help="only rewrite the Markdown table of --out")
    args = parser.parse_args()
    out = Path(args.out)
    torch.set_num_threads(args.threads)
    if args.load:
        model = ResNet(parse_model(args.models[0]))
        model.load_state_dict(torch.load(args.load))
        data = load_dataset("cifar10")
        row = {"load": args.load, "model": args.models[0]}
        row.update(block(model, data) if args.block else {})
        row.update(probe(args, model, data) if args.probes else {})
        with out.with_suffix(".probes.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")
        print({k: v for k, v in row.items() if k != "probe_rows"})
        return
    if not args.table_only:
        data = load_dataset("cifar10")
        for size in args.sizes:
            for text in args.models:
                for recipe, epochs, seed, precision in itertools.product(args.recipes, args.epochs, args.seeds,
                                                                          args.precisions):
                    row = run_one(args, data, recipe, parse_model(text), size, seed, epochs, precision)
                    with out.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                    print(table([row]).splitlines()[-1], flush=True)
                    out.with_suffix(".md").write_text(table(_read(out)))
    out.with_suffix(".md").write_text(table(_read(out)))


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


if __name__ == "__main__":
    main()
