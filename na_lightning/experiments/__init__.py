"""Experiments of the NA paper, re-measured with this library.

Each module is a command, ``python -m na_lightning.experiments.<name> --help``, that writes
its figures and tables into an output folder, and a function that runs the experiment on
settings small enough for tests.
"""
