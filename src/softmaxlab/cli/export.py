"""``softmaxlab export DIR``: a run's model as an ONNX or TorchScript file, checked before writing."""

from __future__ import annotations

import contextlib
from pathlib import Path

from ..errors import ConfigError
from ..export import DEFAULT_FILES, FORMATS
from .common import UsageError

DEFAULT_FORMAT = "onnx"


def register(sub) -> None:
    p = sub.add_parser(
        "export", help="write a run's model as an ONNX or TorchScript file",
        description="Write the model of a run folder, its preprocessing included (x / 255 and "
                    "the standardisation of --standardize), as one file that runs without "
                    "softmaxlab: input uint8 images [N, H, W]; outputs label (int64 [N], the "
                    "class index) and probabilities (float [N, C]); the class names are in the "
                    "file (ONNX: metadata class_names, a JSON list; TorchScript: the module's "
                    "class_names). Before the file is written, the exported model is run on 256 "
                    "random images (onnxruntime, or torch.jit.load) and must give the torch "
                    "model's predictions.",
    )
    p.add_argument("run_dir", metavar="DIR", help="a run folder written by `softmaxlab train`")
    p.add_argument("--format", choices=FORMATS, default=DEFAULT_FORMAT,
                   help="onnx: for onnxruntime and every other ONNX runtime (needs pip install "
                        "'softmaxlab[onnx]'); torchscript: for torch.jit.load and libtorch (C++), "
                        f"nothing to install (default: {DEFAULT_FORMAT})")
    p.add_argument("--out", metavar="FILE", default=None,
                   help="the file to write, replaced if it exists (default: "
                        f"DIR/{DEFAULT_FILES['onnx']}, or DIR/{DEFAULT_FILES['torchscript']} with "
                        "--format torchscript)")
    p.set_defaults(handler=run, subparser=p)


def run(args) -> int:
    from .. import runfolder
    from ..checkpoint import load_trained
    from ..export import export

    run_dir = runfolder.check_folder(args.run_dir)
    out = Path(args.out) if args.out else run_dir / DEFAULT_FILES[args.format]
    inside = out.resolve().parent == run_dir.resolve()
    if inside and (out.name in runfolder.OWN_FILES or out.name == runfolder.LOCK_FILE):
        raise UsageError(f"--out {out} would replace the run's own {out.name}; choose another "
                         "file name")
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give the file to write, e.g. "
                         f"{out / DEFAULT_FILES[args.format]}")
    # writing into the run folder: hold its lock, as every command that writes there does
    with runfolder.lock(run_dir) if inside else contextlib.nullcontext():
        model = load_trained(run_dir)
        try:
            result = export(model, out, args.format)
        except ImportError as e:
            raise ConfigError(f"--format {args.format} cannot be used here: {e} (or use "
                              "--format torchscript, which needs nothing more)") from None
    print(f"wrote {result.path} ({args.format}): input {result.input.describe()}, outputs label "
          f"(int64 [N]) and probabilities ({result.dtype} [N, {result.num_classes}]), class "
          "names in the file")
    print(f"checked: {result.checked_with} gives the torch model's labels on "
          f"{result.examples} random images, probabilities within {result.max_abs_diff:.1e}")
    return 0
