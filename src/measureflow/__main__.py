"""``python -m measureflow``: the command line (see :mod:`measureflow.cli`)."""

from measureflow.cli import main

if __name__ == "__main__":
    main()
