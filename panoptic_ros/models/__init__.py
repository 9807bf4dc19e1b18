"""Network definitions (PyTorch), the model spec, training and ONNX export."""
