"""Data sets for eqdyn: scikit-learn digits, MNIST, Fashion-MNIST and CIFAR-10/100 as numpy arrays."""

from ._cifar import CIFAR as CIFAR
from ._datasets import DATASETS as DATASETS
from ._datasets import Dataset as Dataset
from ._datasets import check_finite as check_finite
from ._datasets import default_data_dir as default_data_dir
from ._datasets import download_dataset as download_dataset
from ._datasets import load_dataset as load_dataset
from ._datasets import read_idx as read_idx
from ._datasets import validate_arrays as validate_arrays

__all__ = [
    "CIFAR",
    "DATASETS",
    "Dataset",
    "check_finite",
    "default_data_dir",
    "download_dataset",
    "load_dataset",
    "read_idx",
    "validate_arrays",
]
