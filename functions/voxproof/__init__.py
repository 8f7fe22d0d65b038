"""voxproof: text-to-speech that watermarks everything it says."""

__version__ = "0.1.0"
