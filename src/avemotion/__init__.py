"""avemotion: audio-visual emotion recognition on talking-face clips.

    import avemotion
    classifier = avemotion.load()              # the ready model (avemotion.ready)
    classifier = avemotion.load("run/model.ckpt")  # or a trained one, or its exported "model.onnx"
    classifier.predict("clip.mp4")
"""

__version__ = "0.1.0"


def load(model=None, onnx=None, weights=None):
    """Load a classifier: with no model the ready model, judging faces and voices with nothing to
    train; else a trained one from a checkpoint (optionally with its ONNX export), or from an
    exported ONNX model alone (then torch is never imported); `weights`: a local folder of the
    pretrained speech encoder (Whisper base for the ready model; else the hub's copy)."""
    from avemotion.runtime.predict import load as load_classifier  # keeps `import avemotion` light

    return load_classifier(model, onnx, weights)
