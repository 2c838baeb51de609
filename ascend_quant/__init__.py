"""ascend-quant: ONNX to Huawei Ascend .om in FP16 and INT8, with INT8's cost and gain measured."""

from ascend_quant.__about__ import __version__

__all__ = ["__version__"]
