"""``softmaxlab show``: a grid of dataset images with their text labels, or (``--weights DIR``)
the weights a trained run learned, one image per class."""

from __future__ import annotations

from .common import UsageError, add_data_args, load_data, positive_int


def register(sub) -> None:
    p = sub.add_parser("show", help="save a grid of dataset images with their labels, or a "
                                    "run's weights as images",
                       description="Save a grid of the first images of a split with their "
                                   "text labels; with --weights DIR, the weight vector of each "
                                   "class of the run in DIR drawn as an image instead.")
    p.add_argument("--n", type=positive_int, default=18, help="how many images (default: 18)")
    p.add_argument("--split", choices=["train", "test"], default="train",
                   help="which split (default: train)")
    p.add_argument("--cols", type=positive_int, default=None,
                   help="images per row (default: 9; 5 with --weights)")
    p.add_argument("--weights", metavar="DIR", default=None,
                   help="draw the weights of the run in DIR (red: a bright pixel raises the "
                        "class's score, blue: lowers it) instead of dataset images (default: off)")
    p.add_argument("--out", metavar="FILE", default=None,
                   help="the PNG (or .svg/.pdf) to write (default: images.png, or weights.png "
                        "with --weights)")
    add_data_args(p)
    p.set_defaults(handler=run, subparser=p)


def run(args) -> int:
    from .. import plots

    if args.weights is not None:
        return _show_weights(args)
    from ..data import text_labels

    train, test, _ = load_data(args)
    ds = train if args.split == "train" else test
    if args.n > len(ds):
        raise UsageError(f"--n {args.n} is more than the {len(ds)} images of the {args.split} split")
    fig = plots.plot_image_grid(ds.images[:args.n], text_labels(ds.labels[:args.n], ds.class_names),
                                num_cols=args.cols or 9)
    path = plots.save_figure(fig, args.out or "images.png")
    print(f"wrote {path} ({args.n} {args.split} images of {ds.name.split('/')[0]})")
    return 0


def _show_weights(args) -> int:
    """The weights of the run in ``args.weights`` as one image per class."""
    from .. import plots
    from ..checkpoint import load_trained
    from ..report import pixel_weights

    model = load_trained(args.weights)
    if not model.image_shape:
        raise UsageError(f"the run in {args.weights} was not trained on images: there are no "
                         "weight images to draw")
    names = model.class_names or tuple(str(c) for c in range(model.W.shape[1]))
    fig = plots.plot_weights(pixel_weights(model), names, model.image_shape,
                             num_cols=args.cols or 5)
    path = plots.save_figure(fig, args.out or "weights.png")
    print(f"wrote {path} (the weights of {len(names)} classes of the run in {args.weights})")
    return 0
