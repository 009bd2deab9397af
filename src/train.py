"""Train a student by G-OPD mixed with GRPO (the same command as ``gopd-train``).

    python src/train.py teacher=hinted pressure=positive alpha=2
    python src/train.py --help          # the config groups and their options
"""

from gopd.main import main

if __name__ == "__main__":
    main()
