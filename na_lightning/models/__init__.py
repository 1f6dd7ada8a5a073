"""Spiking network backbones and the named networks of the NA paper."""

from na_lightning.models.backbone import SpikingNetwork, parse_architecture
from na_lightning.models.presets import PRESETS, Preset, list_presets, preset_hparams

__all__ = ["PRESETS", "Preset", "SpikingNetwork", "list_presets", "parse_architecture", "preset_hparams"]
