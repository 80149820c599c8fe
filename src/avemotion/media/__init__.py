"""What a clip becomes: decoding (one streaming reader for every file), the inputs by name and their
settings, the feature cache, voice activity and the pretrained speech encoders. No torch."""
