"""ausm: Autoregressive Universal Video Segmentation Model (arXiv 2508.19242) in PyTorch.

    import ausm
    model = ausm.AUSM.from_pretrained()       # shipped ausm-lite-mo (default), a folder, or a hub id
    session = model.session()
    ausm.list_models(); ausm.create_model("ausm-swin-t", pretrained=False)   # the registry
"""
__version__ = "0.1.0"

from .api import AUSM  # noqa: E402
from .config import AUSMConfig, get_config, list_presets  # noqa: E402
from .inference import FrameResult, Session  # noqa: E402
from .registry import create_model, list_models  # noqa: E402

__all__ = ["AUSM", "AUSMConfig", "FrameResult", "Session", "create_model", "get_config", "list_models",
           "list_presets", "__version__"]
