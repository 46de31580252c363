"""``python -m medrecontrast ...``: the same command line as the ``medrecontrast`` script, for an
environment where the package is on the path but not installed (a cluster node, a GPU image)."""

from medrecontrast.cli import main

if __name__ == "__main__":
    main()
