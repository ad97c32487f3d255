"""``python -m npdegen``: the command line of :mod:`npdegen.cli`."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
