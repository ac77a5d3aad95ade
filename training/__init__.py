"""Training module: UNet++ / U-Net builders, data pipeline, train and evaluate.

Never imports the GUI. Uses :mod:`unetpp_gui.core` for image IO, discovery, metadata and metrics.
"""
