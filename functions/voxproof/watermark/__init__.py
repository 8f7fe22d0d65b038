"""voxproof's keyed, authenticated audio watermark: ``embed``, ``detect``, ``WatermarkKey``.

Algorithm, parameters, measurements and design history: docs/watermark.md.

Guarantees: every 1.024 s unit carries a 40-bit record id and a 24-bit keyed tag, and a record
id is reported only when its tag verifies, so without the key a mark can be neither read nor
forged. At most ``detect.MAX_ATTEMPTS`` = 23 decodes are tried per key (13 in the first
search stage, 10 in the second: every hypothesis tried only chooses what gets decoded), each
verifying by chance with probability 2^-24, so P(false positive) <= 23 x 2^-24 ~= 1.4e-6 per
key and file, whatever its length (``Detection.p_false`` reports the bound for the attempts
made). A presence tier (``Detection.presence``, never a record id) says a mark of the key is
there from the same cells, with P(false) <= 1e-6 per key and file. Silence and pauses get no
mark energy.
"""

from voxproof.watermark.detect import Detection, Segment, detect
from voxproof.watermark.embed import embed
from voxproof.watermark.keys import WatermarkKey
from voxproof.watermark.payload import RECORD_ID_BITS, TAG_BITS

__all__ = ["RECORD_ID_BITS", "TAG_BITS", "Detection", "Segment", "WatermarkKey", "detect", "embed"]
