"""The networks and everything that needs PyTorch: models, checkpoints, training, evaluation,
frozen-encoder embeddings, transfer and the ONNX export. The only package (with the demo, which
trains) that imports torch; the rest of avemotion runs without it."""
