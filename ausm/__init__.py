"""ausm: Autoregressive Universal Video Segmentation Model (arXiv 2508.19242) in PyTorch."""
__version__ = "0.1.0"

from .config import AUSMConfig, get_config, list_presets  # noqa: E402

__all__ = ["AUSMConfig", "get_config", "list_presets", "__version__"]
