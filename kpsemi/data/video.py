"""Frames in and out for prediction: decode a video frame by frame, draw keypoints and skeleton on a frame, write an
MP4 (PyAV, H.264).

    n, fps, (w, h) = video.probe("mouse.mp4")
    for i, rgb in video.frames("mouse.mp4"):              # (H, W, 3) uint8, decoded as the trainer decodes them
        ...
    with video.Writer("labeled.mp4", fps) as w:
        w.write(video.draw(rgb, xy, score, skeleton))

Keypoints are continuous pixel coordinates (pixel i covers [i, i + 1)), as everywhere in the kit.
"""
import os
from fractions import Fraction

import numpy as np
from PIL import Image, ImageDraw

from kpsemi.draw import keypoint_colours
from kpsemi.errors import DataError


def _av():
    try:
        import av
    except ImportError:
        raise DataError("reading and writing videos needs PyAV: pip install av") from None
    return av


def one_line(e):
    """The first line of an exception's message (pickle errors can span several); FFmpeg's own words for its
    errors, without the error number and path it repeats."""
    text = (getattr(e, "strerror", None) or str(e)).strip()
    return text.splitlines()[0] if text else type(e).__name__


def probe(path):
    """(frame count, 0 when the container does not say; frames per second; (width, height)) of a video, or a
    DataError naming the file when it is missing or not a readable video."""
    av = _av()
    if not os.path.isfile(path):
        raise DataError(f"{path}: video not found")
    try:
        with av.open(path) as c:
            if not c.streams.video:
                raise DataError(f"{path}: no video stream in this file")
            s = c.streams.video[0]
            rate = s.average_rate or s.guessed_rate or 30
            return int(s.frames or 0), float(rate), (s.codec_context.width, s.codec_context.height)
    except av.error.FFmpegError as e:
        raise DataError(f"{path}: cannot read video ({one_line(e)})") from None


def frames(path, max_frames=None, only=None):
    """(index, (H, W, 3) uint8 RGB) for each frame in order (the first `max_frames`; only indices in the set
    `only`). RGB conversion as in dlc.video_frames, so frames match the ones a run was trained on."""
    av = _av()
    if only is not None and not only:
        return
    last = max(only) if only else None
    i = -1
    try:
        with av.open(path) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            for i, f in enumerate(c.decode(s)):
                if (max_frames is not None and i >= max_frames) or (last is not None and i > last):
                    break
                if only is None or i in only:
                    yield i, f.to_ndarray(format="rgb24")
    except av.error.FFmpegError as e:
        raise DataError(f"{path}: cannot decode frame {i + 1} ({one_line(e)})") from None


def colours(k):
    """(k, 3) uint8 RGB, the tab20 colours of draw.keypoint_colours."""
    return (np.asarray(keypoint_colours(k))[:, :3] * 255).round().astype(np.uint8)


def draw(img, xy, score=None, skeleton=(), pcutoff=0.5, radius=None):
    """A copy of img (H, W, 3) uint8 with keypoints xy (K, 2) and skeleton edges drawn. Keypoints whose score is
    below pcutoff are drawn as hollow circles and their edges left out."""
    im = Image.fromarray(np.ascontiguousarray(img))
    d = ImageDraw.Draw(im)
    h, w = img.shape[:2]
    r = radius or max(2, round(max(h, w) / 90))
    xy = np.asarray(xy, dtype=float) - 0.5                      # continuous coordinates -> PIL pixel indices
    ok = np.ones(len(xy), bool) if score is None else np.asarray(score) >= pcutoff
    col = colours(len(xy))
    for a, b in skeleton:
        if ok[a] and ok[b]:
            d.line([tuple(xy[a]), tuple(xy[b])], fill=(255, 255, 255), width=max(1, r // 2))
    for k, (x, y) in enumerate(xy):
        c = tuple(int(v) for v in col[k])
        d.ellipse([x - r, y - r, x + r, y + r], fill=c if ok[k] else None, outline=c, width=max(1, r // 3))
    return np.asarray(im)


class Writer:
    """An MP4 (H.264, yuv420p) of RGB frames at `fps`; a frame of odd width or height is padded by one pixel."""

    def __init__(self, path, fps, crf=20):
        self.av = _av()
        self.path, self.fps, self.crf = path, fps, crf
        self.c = self.av.open(path, "w")
        self.s = None
        self.count = 0

    def write(self, img):
        h, w = img.shape[:2]
        if self.s is None:
            self.s = self.c.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
            self.s.width, self.s.height = w + w % 2, h + h % 2
            self.s.pix_fmt = "yuv420p"
            self.s.options = {"crf": str(self.crf), "preset": "veryfast"}
        if (w % 2) or (h % 2):
            img = np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)))
        frame = self.av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
        for p in self.s.encode(frame):
            self.c.mux(p)
        self.count += 1

    def close(self):
        if self.s is not None:
            for p in self.s.encode():
                self.c.mux(p)
        self.c.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
