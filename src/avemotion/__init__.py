"""avemotion: audio-visual emotion recognition on talking-face clips.

    import avemotion
    classifier = avemotion.load("run/model.ckpt")
    classifier.predict("clip.mp4")
"""

__version__ = "0.1.0"


def load(checkpoint, onnx=None):
    """Load a trained classifier from a checkpoint (and optionally its ONNX export)."""
    from avemotion.predict import load as load_classifier  # keeps `import avemotion` light

    return load_classifier(checkpoint, onnx)
