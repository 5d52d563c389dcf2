"""The drift job's entry point as a Ray job: ``python -m monitoring [riskray drift options]``.

The options are those of ``riskray drift`` (one definition), as ``python -m training`` runs ``riskray train``."""

import sys

from app.cli.main import main

if __name__ == "__main__":
    sys.argv = ["python -m monitoring", "drift", *sys.argv[1:]]
    main()
