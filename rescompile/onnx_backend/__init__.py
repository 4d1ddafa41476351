"""The ONNX backend: the IR emitted as ONNX with trained weights, INT8 quantization, a recount,
and onnxruntime sessions."""
