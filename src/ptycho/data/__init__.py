"""Scan data: containers, NPZ I/O and validation, grouping, simulation, ptychodus products."""

from ptycho.data.scan import Scan

__all__ = ["Scan"]
