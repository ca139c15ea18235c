"""Deploy: integer-only int8 models (IntModel), the numpy reference interpreter, and exporters (.tflite, QDQ .onnx,
C99)."""

from nntailor.deploy.build import build_int_model
from nntailor.deploy.c import CProject, write_c
from nntailor.deploy.intmodel import IntModel, IntOp, QTensor
from nntailor.deploy.onnx import compare_onnx, to_onnx
from nntailor.deploy.reference import interpret
from nntailor.deploy.tflite import run_tflm, tflm_arena, to_tflite

__all__ = [
    "CProject", "IntModel", "IntOp", "QTensor", "build_int_model", "compare_onnx", "interpret", "run_tflm",
    "tflm_arena", "to_onnx", "to_tflite", "write_c",
]
