"""OpenCV, set up once for the whole project: every module imports cv2 from here.

OpenCV reads its pixel limit and log level from the environment once, when it loads, so
they are set here, before the import, whichever module comes first. Its own threads would
oversubscribe the cores that the process pool (or the trainer's loader threads) already
fill, so it runs single-threaded.
"""

import os

BACKSTOP_PIXELS = 1 << 30  # OpenCV's own limit, for headers Pillow cannot read
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(BACKSTOP_PIXELS))
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

import cv2  # noqa: E402

cv2.setNumThreads(1)

__all__ = ["BACKSTOP_PIXELS", "cv2"]
