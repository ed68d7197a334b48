"""Labelled reference data (DFT): data sets, readers and writers, splits, predictions and error metrics.

dpdata (DeePMD formats) is imported only when DeePMD data are read or written.
"""

from .deepmd import find_deepmd_systems, read_deepmd, write_deepmd
from .dft import (
    DatasetSplit,
    DFTBatch,
    DFTDataset,
    concatenate_datasets,
    dataset_from_atoms,
    expand_paths,
    key_hash_fraction,
    load_split,
    read_extxyz,
    read_extxyz_files,
    split,
    split_by_key,
    write_extxyz,
)
from .metrics import DFTErrors, dft_errors, evaluate_dft_errors
from .predict import BatchPrediction, Predictions, add_term_to_labels, label_with_potential, predict, predict_batch
from .statistics import (
    AtomicEnergyFit,
    InteractionStatistics,
    average_neighbour_count,
    fit_atomic_energies,
    interaction_statistics,
)

__all__ = [
    "DFTDataset", "DFTBatch", "DatasetSplit", "dataset_from_atoms", "concatenate_datasets", "expand_paths",
    "read_extxyz", "read_extxyz_files", "write_extxyz", "split", "split_by_key", "key_hash_fraction", "load_split",
    "read_deepmd", "write_deepmd", "find_deepmd_systems",
    "DFTErrors", "dft_errors", "evaluate_dft_errors",
    "BatchPrediction", "Predictions", "predict", "predict_batch", "label_with_potential", "add_term_to_labels",
    "AtomicEnergyFit", "InteractionStatistics", "fit_atomic_energies", "average_neighbour_count",
    "interaction_statistics",
]
