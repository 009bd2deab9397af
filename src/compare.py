"""Compare ablation arms from run directories: table.md, table.csv and plots in results/<name>/.

    python src/compare.py multirun/alpha_x_mix/<time> --baseline alpha=1,grpo_mix=0
    python src/compare.py --help        # every option
"""

import sys

from gopd.compare import main

if __name__ == "__main__":
    sys.exit(main())
