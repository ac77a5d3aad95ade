"""UNet++ Viewer: brain-MRI FLAIR-abnormality segmentation review (research and teaching only)."""

__version__ = "0.1.0"

RESEARCH_NOTICE = "Research and teaching use only. Not a medical device; not for diagnosis."
