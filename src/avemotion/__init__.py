"""avemotion: audio-visual emotion recognition on talking-face clips.

    import avemotion
    classifier = avemotion.load("run/model.ckpt")  # or an exported "model.onnx"
    classifier.predict("clip.mp4")
"""

__version__ = "0.1.0"


def load(model, onnx=None, weights=None):
    """Load a trained classifier from a checkpoint (optionally with its ONNX export), or from an
    exported ONNX model alone (then torch is never imported); `weights`: a local folder of the
    pretrained speech encoder the model was trained with (else the hub's copy)."""
    from avemotion.runtime.predict import load as load_classifier  # keeps `import avemotion` light

    return load_classifier(model, onnx, weights)
