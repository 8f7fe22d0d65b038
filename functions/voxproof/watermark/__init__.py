"""voxproof's keyed audio watermark (docstring completed below)."""

from voxproof.watermark.detect import Detection, Segment, detect
from voxproof.watermark.embed import embed
from voxproof.watermark.keys import WatermarkKey
from voxproof.watermark.payload import RECORD_ID_BITS, TAG_BITS

__all__ = ["Detection", "Segment", "WatermarkKey", "detect", "embed", "RECORD_ID_BITS", "TAG_BITS"]
