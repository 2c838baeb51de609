"""Data for model inputs: feed streams, calib sets, and writers for images and arrays.

`feeds.py` (the `FeedSource` protocol, random data) < `calibset.py` (the on-disk set, any dtype
and rank) < `images.py`, `arrays.py`, `recorder.py` (ways to make one) < `inputs.py` (which data
each model input of a build gets).
"""

from ascend_quant.data.calibset import CalibSet
from ascend_quant.data.feeds import FeedSource, random_feeds
from ascend_quant.data.recorder import Recorder, RecordingSession

__all__ = ["CalibSet", "FeedSource", "Recorder", "RecordingSession", "random_feeds"]
