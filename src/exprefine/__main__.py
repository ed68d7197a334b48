"""``python -m exprefine`` (and ``torchrun --nproc-per-node N -m exprefine refine CONFIG``)."""

from exprefine.cli.main import main

if __name__ == "__main__":  # pragma: no cover
    main()
