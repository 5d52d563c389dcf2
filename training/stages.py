"""The DVC stages of dvc.yaml: ``python -m training.stages extract|train|evaluate --dir DIR``.

Options come from params.yaml (section ``train``, the fields of ``TrainOptions``), so DVC re-runs a stage when
one of its parameters changes; files are handed over in DIR, which dvc.yaml declares as deps and outs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from app.config import get_settings
from app.errors import UserError
from training import pipeline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.stages")
    parser.add_argument("stage", choices=["extract", "train", "evaluate"])
    parser.add_argument("--dir", type=Path, required=True, help="stage files (dvc.yaml's deps and outs)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    params = yaml.safe_load(args.params.read_text()).get("train", {})
    options = pipeline.TrainOptions.model_validate({**params, "work_dir": args.dir})
    settings = get_settings()
    snapshot = args.dir / pipeline.SNAPSHOT_FILE
    try:
        if args.stage == "extract":
            pipeline.extract(settings, options, print)
        elif args.stage == "train":
            pipeline.train(settings, options, snapshot, print)
        else:
            pipeline.evaluate(settings, options, snapshot, args.dir / pipeline.MODEL_DIR, print)
    except UserError as error:
        print(f"riskray: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
