"""``softmaxlab data list|fetch|info|export``: the named datasets, getting them, what a dataset
holds, and a dataset written out in another layout."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import DEBUG_HELP
from .common import add_data_args, load_data, show_progress

# how to read an export back, per layout ({dir}: the folder, {name}: the dataset)
READ_BACK = {
    "idx": "--dataset idx:{dir}",
    "png": "--dataset folder:{dir}",
    "csv": "--dataset csv:{dir}/{name}_train.csv --test-data csv:{dir}/{name}_test.csv",
}
# how torchvision opens a torchvision export, per class ({root}: the folder)
TORCHVISION_CALL = {
    "EMNIST": 'torchvision.datasets.EMNIST(root="{root}", split="{split}")',
    "QMNIST": 'torchvision.datasets.QMNIST(root="{root}", what="test10k")',
}


def register(sub) -> None:
    p = sub.add_parser(
        "data", help="list, fetch, inspect and export datasets",
        description="The named datasets: which there are and where they are (list), "
                    "downloading and verifying them (fetch), what a dataset holds (info, any "
                    "--dataset SPEC) and writing one out for other tools (export).")
    p.set_defaults(handler=lambda args: _usage(p), subparser=p)
    dsub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    q = dsub.add_parser("list", help="every named dataset: classes, sizes, licence, whether "
                                     "it is here",
                        description="Every named dataset with its classes, train and test "
                                    "sizes, licence, and where it is (or where a download "
                                    "would go). Downloads nothing.")
    q.add_argument("--data-dir", metavar="DIR", default=None,
                   help="look only in DIR, as train's --data-dir does (default: "
                        "$SOFTMAXLAB_DATA, else the usual lookup)")
    q.add_argument("--json", action="store_true", help="print JSON (default: a table)")
    _finish(q, run_list)

    q = dsub.add_parser("fetch", help="download and verify named datasets into the cache",
                        description="Find each named dataset, downloading the missing files "
                                    "(into the cache, or --data-dir) and verifying them: "
                                    "afterwards `train --dataset NAME --offline` works.")
    q.add_argument("names", nargs="+", metavar="NAME", help="a named dataset (see `data list`)")
    add_data_args(q, dataset=False, own_data=False)
    _finish(q, run_fetch)

    q = dsub.add_parser("info", help="shape, classes, per-class counts and checksums of a "
                                     "dataset",
                        description="Load a dataset as --dataset SPEC would (a named dataset "
                                    "or your own data) and show its image shape, classes, "
                                    "per-class counts, its files and checksums.")
    q.add_argument("spec", metavar="SPEC", help="a named dataset, KIND:PATH or a path")
    q.add_argument("--json", action="store_true", help="print JSON (default: text)")
    add_data_args(q, dataset=False)
    _finish(q, run_info)

    q = dsub.add_parser("export", help="write a named dataset as torchvision's files, IDX, PNG "
                                       "folders or CSV",
                        description="Write a named dataset into DIR: torchvision (its files "
                                    "in DIR/<Name>/raw/, as torchvision.datasets.<Name>(root=DIR) "
                                    "reads them), idx (the four IDX files), png (train/ and "
                                    "test/, a folder of PNGs per class) or csv (Kaggle's "
                                    "label,pixel1,... files). Files are written atomically and "
                                    "existing ones are kept unless --force.")
    q.add_argument("name", metavar="NAME", help="a named dataset (see `data list`)")
    q.add_argument("out_dir", metavar="DIR", help="the folder to write into (created)")
    q.add_argument("--layout", required=True, choices=["torchvision", "idx", "png", "csv"],
                   help="what to write (required; no default)")
    q.add_argument("--force", action="store_true",
                   help="replace existing files (png: the train/ and test/ folders) (default: "
                        "off)")
    add_data_args(q, dataset=False, own_data=False)
    _finish(q, run_export)


def _finish(p: argparse.ArgumentParser, handler) -> None:
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    p.set_defaults(handler=handler, subparser=p)


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2


# --------------------------------------------------------------------------- list


def run_list(args) -> int:
    from ..data.catalog import catalog

    entries = catalog(args.data_dir)
    if args.json:
        print(json.dumps([_entry_json(e) for e in entries], indent=2))
        return 0
    rows = [("NAME", "CLASSES", "TRAIN", "TEST", "LICENCE", "HERE", "WHERE")]
    for e in entries:
        s, loc = e.spec, e.location
        if loc.found is not None:
            here, place = "yes", str(loc.found)
        elif loc.archive is not None:
            here, place = "yes", f"{loc.archive} (the files are taken out of it on first use)"
        else:
            here, place = "no", f"downloads into {loc.target}"
        rows.append((s.name, str(s.num_classes), str(s.sizes[0]), str(s.sizes[1]), s.licence,
                     here, place))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        cells = [c.rjust(w) if i in (1, 2, 3) else c.ljust(w)
                 for i, (c, w) in enumerate(zip(r, widths))]
        print("  ".join(cells + [r[-1]]))
    notes = {}  # a note shared by several datasets (EMNIST's splits) is said once
    for e in entries:
        for note in e.spec.notes:
            notes.setdefault(note, []).append(e.spec.name)
    if notes:
        print("notes:")
        for note, names in notes.items():
            print(f"  {_names(names)}: {note}")
    return 0


def _names(names: list[str]) -> str:
    """``emnist-*`` for all six EMNIST splits, else the names joined."""
    from ..data.specs import SPECS

    emnist = [n for n in SPECS if n.startswith("emnist-")]
    return "emnist-*" if names == emnist else ", ".join(names)


def _entry_json(e) -> dict:
    s, loc = e.spec, e.location
    return {"name": s.name, "num_classes": s.num_classes, "class_names": list(s.class_names),
            "n_train": s.sizes[0], "n_test": s.sizes[1], "licence": s.licence,
            "homepage": s.homepage, "here": e.here,
            "found": str(loc.found) if loc.found else None,
            "archive": str(loc.archive) if loc.archive else None,
            "download_into": str(loc.target), "mirrors": list(s.mirrors),
            "torchvision": s.torchvision_name, "notes": list(s.notes)}


# --------------------------------------------------------------------------- fetch


def run_fetch(args) -> int:
    from ..data import get_spec, load_dataset, locate

    specs = [get_spec(name) for name in args.names]  # every name checked before any download
    for spec in specs:
        paths = locate(spec, data_dir=args.data_dir, mirror=args.mirror, offline=args.offline,
                       progress=show_progress(args))
        # reading checks every file: its IDX header and sizes, labels, md5
        train, test = load_dataset(spec.name, data_dir=paths["train_images"].parent,
                                   offline=True)
        print(f"{spec.name}: {len(train)} train / {len(test)} test images, "
              f"{spec.num_classes} classes, {_verified(spec)}, in "
              f"{paths['train_images'].parent}")
    return 0


def _verified(spec) -> str:
    if spec.md5_gz or spec.md5_raw:
        return "checked against the published md5s"
    if spec.archive is not None:
        return f"taken from {spec.archive.name}, checked against its published md5"
    return "checked (no published md5s)"


# --------------------------------------------------------------------------- info


def run_info(args) -> int:
    from ..data import get_spec, locate, parse_spec
    from ..data.catalog import describe, file_checks

    args.dataset = args.spec
    train, test, record = load_data(args)
    info = {"spec": args.spec, **describe(train, test)}
    spec = parse_spec(args.spec)
    if spec.named:
        named = get_spec(spec.name)
        paths = locate(named, data_dir=args.data_dir, offline=True)  # (found: just loaded)
        info["files"] = file_checks(named, paths)
        info["notes"] = list(named.notes)
    else:
        info["sources"] = record["sources"]
        info["test_from"] = record["test_from"]
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    h, w = info["image_shape"]
    kind = "a named dataset" if spec.named else f"{spec.kind} data"
    print(f"{args.spec} ({kind}): {h}x{w} uint8 images, {info['num_classes']} classes")
    for split in ("train", "test"):
        part = info["splits"][split]
        print(f"  {split:5} {part['n']:>8} images  arrays {part['digest']}")
    if spec.named:
        print(f"files in {Path(info['files'][0]['path']).parent}:")
        matched = {"gz": "the published .gz md5", "raw": "the published md5 of its content",
                   "archive": "no md5 of its own; the archive's is checked when files are "
                              "taken out of it",
                   None: "no published md5 for this form"}
        for f in info["files"]:
            print(f"  {Path(f['path']).name}  md5 {f['md5']}  ({matched[f['matches']]})")
        for note in info["notes"]:
            print(f"note: {note}")
    else:
        for role, source in info["sources"].items():
            print(f"{role} data: {source['spec']}  {source['checksum']} ({source['files']} "
                  f"file{'s' if source['files'] != 1 else ''})")
        print(f"test set: {_test_from(info['test_from'])}")
    names = info["class_names"]
    width = max(5, *(len(n) for n in names))
    print(f"{'class':<{width}}  {'train':>8}  {'test':>8}")
    for k, name in enumerate(names):
        print(f"{name:<{width}}  {info['splits']['train']['per_class'][k]:>8}  "
              f"{info['splits']['test']['per_class'][k]:>8}")
    return 0


def _test_from(test_from: str) -> str:
    return {"data": "the data's own test split", "test-data": "--test-data",
            "held-out": "held out from the training data (--test-split, --split-seed)"
            }.get(test_from, test_from)


# --------------------------------------------------------------------------- export


def run_export(args) -> int:
    from ..data import get_spec
    from ..data.writers import export_dataset

    spec = get_spec(args.name)
    written = export_dataset(args.name, args.layout, args.out_dir, force=args.force,
                             data_dir=args.data_dir, mirror=args.mirror, offline=args.offline,
                             progress=show_progress(args))
    out = Path(args.out_dir)
    print(f"wrote {len(written)} {'folders' if args.layout == 'png' else 'files'} of "
          f"{spec.name} ({args.layout}) into {out}:")
    for path in written:
        print(f"  {path}")
    if args.layout == "torchvision":
        call = TORCHVISION_CALL.get(spec.torchvision_name,
                                    f'torchvision.datasets.{spec.torchvision_name}(root="{{root}}")')
        print("read it with: " + call.format(root=out, split=spec.name.removeprefix("emnist-")))
    else:
        print("read it back with: softmaxlab train "
              + READ_BACK[args.layout].format(dir=out, name=spec.name))
    return 0
