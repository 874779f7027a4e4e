"""repsim: representation similarity of wide and deep CIFAR ResNets (Nguyen et al., 2021)."""

__version__ = "0.1.0"
