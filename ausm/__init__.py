"""ausm: Autoregressive Universal Video Segmentation Model (arXiv 2508.19242) in PyTorch.

    import ausm
    model = ausm.AUSM.from_pretrained()       # shipped ausm-lite (default), a folder, or a hub id
    session = model.session()
"""
__version__ = "0.1.0"

from .api import AUSM  # noqa: E402
from .config import AUSMConfig, get_config, list_presets  # noqa: E402
from .inference import FrameResult, Session  # noqa: E402

__all__ = ["AUSM", "AUSMConfig", "FrameResult", "Session", "get_config", "list_presets", "__version__"]
