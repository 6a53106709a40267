"""cogen: generative any-to-any modality translation for co-registered Earth-observation rasters."""
__version__ = "0.1.0"
