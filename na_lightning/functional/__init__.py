"""Pure functions of spiking neurons: LIF dynamics, the NA gradient and the STBP baseline."""

from na_lightning.functional.lif import (
    LIFParameters,
    analog_current,
    lif_forward,
    lif_membrane,
    psc_filter,
    reverse_filter,
)
from na_lightning.functional.na import distance_weight, na_current_grad, neighbor_loss_change
from na_lightning.functional.neuron import GradientRescale, LIFOutput, lif_neuron, lif_psc
from na_lightning.functional.surrogate import stbp_lif

__all__ = [
    "GradientRescale",
    "LIFOutput",
    "LIFParameters",
    "analog_current",
    "distance_weight",
    "lif_forward",
    "lif_membrane",
    "lif_neuron",
    "lif_psc",
    "na_current_grad",
    "neighbor_loss_change",
    "psc_filter",
    "reverse_filter",
    "stbp_lif",
]
