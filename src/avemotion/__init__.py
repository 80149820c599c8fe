"""avemotion: audio-visual emotion recognition on talking-face clips."""

__version__ = "0.1.0"
