"""Judging new media with a trained model: its card, prediction, the timeline, speaker
normalisation's last step and the web service. No torch: an exported model runs in ONNX Runtime
(a checkpoint loads its network from :mod:`avemotion.training` only when given one)."""
