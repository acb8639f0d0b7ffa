"""``softmaxlab show``: a grid of dataset images with their text labels."""

from __future__ import annotations

from .common import UsageError, add_data_args, load_data, positive_int


def register(sub) -> None:
    p = sub.add_parser("show", help="save a grid of dataset images with their labels",
                       description="Save a grid of the first images of a split with their "
                                   "text labels.")
    p.add_argument("--n", type=positive_int, default=18, help="how many images (default: 18)")
    p.add_argument("--split", choices=["train", "test"], default="train",
                   help="which split (default: train)")
    p.add_argument("--cols", type=positive_int, default=9, help="images per row (default: 9)")
    p.add_argument("--out", metavar="FILE", default="images.png",
                   help="the PNG (or .svg/.pdf) to write (default: images.png)")
    add_data_args(p)
    p.set_defaults(handler=run, subparser=p)


def run(args) -> int:
    from .. import plots
    from ..data import text_labels

    train, test = load_data(args)
    ds = train if args.split == "train" else test
    if args.n > len(ds):
        raise UsageError(f"--n {args.n} is more than the {len(ds)} images of the {args.split} split")
    fig = plots.plot_image_grid(ds.images[:args.n], text_labels(ds.labels[:args.n], ds.class_names),
                                num_cols=args.cols)
    path = plots.save_figure(fig, args.out)
    print(f"wrote {path} ({args.n} {args.split} images of {ds.name.split('/')[0]})")
    return 0
