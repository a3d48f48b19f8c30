"""Robustness Lab's library: data, models, training and the model store (no Streamlit here)."""
__version__ = "0.1.0"
