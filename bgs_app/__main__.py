"""``python -m bgs_app``: the BIDS-App command line, as the ``bgs_app`` script."""

import sys

from bgs_app.cli.run import main

if __name__ == "__main__":
    sys.exit(main())
