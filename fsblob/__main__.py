"""``python -m fsblob``: the same as the ``fsblob`` command."""

import sys

from fsblob.cli import main

if __name__ == "__main__":
    sys.exit(main())
