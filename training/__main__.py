"""The training Ray job's entry point: ``python -m training [riskray train options]``.

The options are those of ``riskray train`` (one definition); inside a Ray job RAY_ADDRESS is set, so the run
joins the job's cluster."""

import sys

from app.cli.main import main

if __name__ == "__main__":
    sys.argv = ["python -m training", "train", *sys.argv[1:]]
    main()
