"""The ONNX backend: the IR emitted as ONNX with trained weights, INT8 quantization, a recount,
and onnxruntime sessions."""

DEFAULT_CALIBRATION = 256
"""Images `export --int8` calibrates on unless told otherwise."""
