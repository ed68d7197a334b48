"""Reference methods that produce labels (energies, forces, stress) for training and validation."""

from .shards import ShardRun, ShardStatus, label_shards, read_shard, shard_path, write_shard
from .tblite_methods import (
    METHODS,
    TBLITE_D3_CUTOFFS_BOHR,
    D3Result,
    LabelRun,
    d3_dispersion,
    frame_key,
    gfn1_d3,
    gfn1_d3_parameters,
    gfn1_parameter_table,
    label_frames,
    make_calculator,
    make_d3_calculator,
    read_label_cache,
    tblite_method,
)

__all__ = [
    "METHODS",
    "TBLITE_D3_CUTOFFS_BOHR",
    "D3Result",
    "LabelRun",
    "d3_dispersion",
    "frame_key",
    "gfn1_d3",
    "gfn1_d3_parameters",
    "gfn1_parameter_table",
    "label_frames",
    "make_calculator",
    "make_d3_calculator",
    "read_label_cache",
    "tblite_method",
    "ShardRun",
    "ShardStatus",
    "label_shards",
    "read_shard",
    "shard_path",
    "write_shard",
]
