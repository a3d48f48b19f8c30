"""``python -m robust_core.sweep``: see :mod:`robust_core.sweep`."""
from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
