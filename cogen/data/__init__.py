"""Data layer: scene datasets over co-registered GeoTIFFs, splits, and synthetic scenes."""
from .dataset import Region, SceneDataset, collate_scenes, load_split

__all__ = ["Region", "SceneDataset", "collate_scenes", "load_split"]
