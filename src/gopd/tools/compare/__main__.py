"""``python -m gopd.tools.compare``."""

import sys

from gopd.tools.compare import main

if __name__ == "__main__":
    sys.exit(main())
