"""The DVC stages of dvc.yaml: ``python -m training.stages snapshot|features|train|evaluate --dir DIR``.

Options are built as every other entry point builds them (``TrainOptions.from_settings``): the ``RISKRAY_*``
settings, overridden by the non-null entries of params.yaml's ``train`` section. The snapshot stage (which DVC
always runs) also writes the effective options to ``options.json``, a dependency of the later stages, so a
changed setting re-runs them as a changed params.yaml entry does. Files are handed over in DIR."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from app.config import get_settings
from app.errors import UserError
from training import pipeline
from training.options import TrainOptions

OPTIONS_FILE = "options.json"
STAGES = ("snapshot", "features", "train", "evaluate")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.stages")
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--dir", type=Path, required=True, help="stage files (dvc.yaml's deps and outs)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    settings = get_settings()
    try:
        if args.stage == "snapshot":
            params = yaml.safe_load(args.params.read_text()).get("train", {}) or {}
            options = TrainOptions.from_settings(settings, **params, work_dir=args.dir)
            args.dir.mkdir(parents=True, exist_ok=True)
            (args.dir / OPTIONS_FILE).write_text(options.model_dump_json(indent=1, exclude={"work_dir"}))
            pipeline.snapshot(settings, options, print)
            return 0
        options = TrainOptions.model_validate({**json.loads((args.dir / OPTIONS_FILE).read_text()),
                                               "work_dir": args.dir})
        snapshot = args.dir / pipeline.SNAPSHOT_FILE
        if args.stage == "features":
            pipeline.features(settings, options, snapshot, print)
            return 0
        prepared = pipeline.load_features(settings, options)
        model_dir = args.dir / pipeline.MODEL_DIR
        if args.stage == "train":
            cv = pipeline.tune(settings, options, prepared, print)
            pipeline.fit(settings, options, prepared, cv, print)
        else:
            metrics = pipeline.evaluate(settings, options, prepared, model_dir, print)
            pipeline.register(settings, options, prepared, model_dir, snapshot, metrics, print)
    except UserError as error:
        print(f"riskray: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
