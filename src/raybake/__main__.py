"""`python -m raybake`: the same command line as the `raybake` script."""

from raybake.cli import main

if __name__ == "__main__":
    main()
