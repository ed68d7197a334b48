"""The ``exprefine`` command line: a thin layer over :mod:`exprefine.workflows`."""
