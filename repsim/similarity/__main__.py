"""python -m repsim.similarity: layer-by-layer CKA of a model, or of two, on the command line.

    python -m repsim.similarity --model torchvision:resnet18 --weights resnet18.pt \\
        --data cifar10 --images 2048 --out cka-resnet18
    python -m repsim.similarity --model torchvision:resnet18 --other cifar-resnet:20x1 --out cross

writes OUT/cka.png (the heatmap), OUT/cka.csv and OUT/cka.npz (the numbers, with the layer
names of both axes). Models and examples are named as ``repsim.similarity.loading`` says.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib

from ..activations import TOKENS
from . import MIN_BATCH, similarity
from .loading import load_examples, load_model, parse_args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m repsim.similarity", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--model", required=True, help="torchvision:NAME, cifar-resnet:DEPTHxWIDTH or MODULE:ATTRIBUTE")
    parser.add_argument("--weights", help="a state dict for --model (torch.save)")
    parser.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE", help="passed to --model's builder")
    parser.add_argument("--layers", nargs="+", help="layer names of --model (default: every leaf module)")
    parser.add_argument("--other", help="a second model: CKA between the layers of the two")
    parser.add_argument("--other-weights")
    parser.add_argument("--other-arg", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--other-layers", nargs="+")
    parser.add_argument("--data", default="cifar10", help="cifar10, cifar100, or a .pt or .npy file of examples")
    parser.add_argument("--data-source", help="where the CIFAR data is (default: $REPSIM_DATA, else torchvision's download)")
    parser.add_argument("--images", type=int, default=2048, help="examples: the first ones of the test set or file")
    parser.add_argument("--batch-size", type=int, default=256, help=f"at least {MIN_BATCH}")
    parser.add_argument("--passes", type=int, default=1)
    parser.add_argument("--tokens", choices=TOKENS, default="flatten", help="what a (batch, tokens, features) output becomes")
    parser.add_argument("--device", default="auto", help="cpu, cuda, or auto")
    parser.add_argument("--seed", type=int, default=0, help="the minibatches' shuffle")
    parser.add_argument("--out", required=True, help="folder for cka.png, cka.csv and cka.npz")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    matplotlib.use("Agg")
    try:
        model = load_model(args.model, args.weights, parse_args(args.arg))
        other = load_model(args.other, args.other_weights, parse_args(args.other_arg)) if args.other else None
        if other is None and (args.other_layers or args.other_weights or args.other_arg):
            raise ValueError("--other-layers, --other-weights and --other-arg need --other")
        examples = load_examples(args.data, args.images, args.data_source)
        result = similarity(model, examples, layers=args.layers, other=other, other_layers=args.other_layers,
                            batch_size=args.batch_size, passes=args.passes, tokens=args.tokens, seed=args.seed,
                            device=None if args.device == "auto" else args.device, progress=True,
                            names=(args.model, args.other or ""))
    except (ValueError, KeyError, TypeError, FileNotFoundError, RuntimeError) as err:  # e.g. --device cuda without one
        print(f"error: {err.args[0] if isinstance(err, KeyError) else err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    figure = result.plot().figure
    figure.savefig(out / "cka.png", dpi=150)
    written = [out / "cka.png", result.save(out / "cka.csv"), result.save(out / "cka.npz")]
    print(result)
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
