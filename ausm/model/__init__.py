"""The AUSM network and its modules (spec §4)."""
from .ausm import AGNOSTIC, AUSMModel, Prediction, StreamState
from .history import HistoryCompressor, HistoryDecoder, history_marker
from .mamba import Mamba, MambaState, associative_scan, selective_scan_naive, selective_scan_parallel
from .pixel_decoder import PixelDecoder

__all__ = ["AGNOSTIC", "AUSMModel", "Prediction", "StreamState", "HistoryCompressor", "HistoryDecoder",
           "history_marker", "Mamba", "MambaState", "associative_scan", "selective_scan_naive",
           "selective_scan_parallel", "PixelDecoder"]
