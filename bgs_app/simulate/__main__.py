"""``python -m bgs_app.simulate``: the simulator, as the ``bgs-simulate`` script."""

import sys

from bgs_app.simulate.cli import main

if __name__ == "__main__":
    sys.exit(main())
