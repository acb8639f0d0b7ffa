"""``softmaxlab predict``: classify your own image files with a trained run's model."""

from __future__ import annotations

import argparse
import json
import sys

from .common import UsageError, positive_int

# how many classes to list per file unless --top-k says otherwise
DEFAULT_TOP_K = 3


def register(sub) -> None:
    p = sub.add_parser(
        "predict", help="classify your own image files (PNG, JPEG, ...) with a trained model",
        description="Classify image files with the model of a run folder. Each photo is brought "
                    "into Fashion-MNIST's form first: EXIF orientation, first frame, transparency "
                    "onto white, grayscale, inverted to a light object on black, trimmed to the "
                    "object, its longest side scaled to the model's image size and centred; then "
                    "the model's own preprocessing is applied. A file that cannot be read gets an "
                    "error and the others are still classified; the exit code is then 2.",
    )
    p.add_argument("run_dir", metavar="DIR", help="the run folder `softmaxlab train` wrote")
    p.add_argument("files", metavar="FILE", nargs="+",
                   help="image files in any format Pillow reads (PNG, JPEG, GIF, WebP, BMP, ...)")
    p.add_argument("--top-k", type=positive_int, default=DEFAULT_TOP_K,
                   help="how many classes to list per file, most probable first; 1 to the "
                        f"model's number of classes (default: {DEFAULT_TOP_K})")
    p.add_argument("--json", action="store_true",
                   help="print one JSON list with an object per file, {\"file\", \"top\": "
                        "[{\"index\", \"label\", \"probability\"}, ...]} or {\"file\", "
                        "\"error\"}, and nothing else (default: aligned text)")
    p.add_argument("--invert", choices=["auto", "always", "never"], default=None,
                   help="make the object light on black: auto inverts when the image's border is "
                        "mostly light (a product on a white background); always; never, for an "
                        "image that already is light on dark (default: what the run's own image "
                        "files went through, else auto)")
    p.add_argument("--no-trim", action="store_true",
                   help="scale the whole image instead of cropping it to the object first "
                        "(default: what the run's own image files went through, else trim)")
    p.add_argument("--save-inputs", metavar="OUT_DIR", default=None,
                   help="also write the images the model saw into OUT_DIR (created if needed) as "
                        "PNGs named after the input files (default: not written)")
    p.set_defaults(handler=run, subparser=p)


def _text(predictions, class_names) -> str:
    """Per file: its name, then one aligned line per class, e.g. ``  1. trouser     97.31%``."""
    width = max(len(name) for name in class_names)
    lines = []
    for p in predictions:
        if not p.ok:
            continue
        lines.append(f"{p.file}:")
        for rank, s in enumerate(p.top, start=1):
            lines.append(f"  {rank}. {s.label:<{width}}  {100 * s.probability:6.2f}%")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import load_trained
    from ..predict import predict_files, save_inputs

    model = load_trained(args.run_dir)
    num_classes = len(model.class_names)
    if args.top_k > num_classes:
        raise UsageError(f"--top-k {args.top_k} is more than the model's {num_classes} classes; "
                         f"give 1 to {num_classes}")
    made = model.preprocessing or {}  # how the run's training images were made from files
    predictions = predict_files(model, args.files, top_k=args.top_k,
                                invert=args.invert or made.get("invert", "auto"),
                                trim=not args.no_trim and made.get("trim", True))
    written = save_inputs(predictions, args.save_inputs) if args.save_inputs else []
    failed = [p for p in predictions if not p.ok]

    if args.json:
        print(json.dumps([p.to_dict() for p in predictions], indent=2))
    else:
        text = _text(predictions, model.class_names)
        if text:
            print(text)
        if written:
            print(f"wrote the {len(written)} model input image(s) to {args.save_inputs}")
        for p in failed:
            print(f"softmaxlab predict: error: {p.error}", file=sys.stderr)
    return 2 if failed else 0
