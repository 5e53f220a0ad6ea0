"""``python -m sciflow.cli`` (and ``torchrun ... -m sciflow.cli``): the ``sciflow`` command."""

import sys

from sciflow.cli.commands import main

if __name__ == "__main__":
    sys.exit(main())
