"""Deployment: the streaming step exported to ONNX and run by onnxruntime (issue #17; docs/EXPORT.md).

* :func:`~ausm.export.onnx.export_onnx` — write ``model.onnx`` and its contract ``model.onnx.json``;
* :class:`~ausm.export.runtime.OnnxStep` — the step back-end that runs it under
  :class:`ausm.inference.Session` (the same session logic as the PyTorch back-end).

Needs the ``export`` extra (``pip install 'ausm[export]'``: onnx, onnxscript, onnxruntime); importing this
package does not.
"""
from .onnx import contract_path, export_onnx
from .runtime import OnnxStep

__all__ = ["OnnxStep", "contract_path", "export_onnx"]
