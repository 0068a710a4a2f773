"""kpsemi: semi-supervised keypoint localization, a tutorial and reproduction kit."""
__version__ = "0.1.0"
