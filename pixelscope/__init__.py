"""pixelscope: an image-dataset pipeline (core library).

The core never imports Prefect or Streamlit; orchestration and UI layers wrap it.
"""

__version__ = "0.1.0"
