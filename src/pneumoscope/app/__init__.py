"""The web page: Gradio Blocks over the Predictor, nothing else.

    pneumoscope serve [--model PATH] [--host 127.0.0.1] [--port 7860] [--examples DIR] [--auth USER:PASS]

One module per job, in the order a request meets them:

- :mod:`~pneumoscope.app.server`: ``serve``, start-up (the cached ONNX export first, PyTorch for
  heatmaps once the page answers) and shutdown;
- :mod:`~pneumoscope.app.layout`: the Blocks and their events;
- :mod:`~pneumoscope.app.handlers`: what an event calls (``App``): one Predictor, never an exception out;
- :mod:`~pneumoscope.app.cards`: a prediction as HTML for the page, and as the API's dict;
- :mod:`~pneumoscope.app.uploads`: an upload's life, the one place that touches Gradio's private state;
- :mod:`~pneumoscope.app.text`: every word of the page, in English and Spanish;
- :mod:`~pneumoscope.app.about`: the About tab's summary, card, configuration and figures.

The same predictions are on Gradio's API: ``/predict`` (one file -> the dict the page shows under
"Result as the API returns it"; an unreadable file gives the same dict with its one-line reason
in ``error``) and ``/predict_batch`` (files -> table and CSV); ``docs/api.md`` shows a
``gradio_client`` session.

Gradio and the model are imported only when :func:`serve` runs; importing this package imports neither.
"""

from pneumoscope.app.about import about_content
from pneumoscope.app.cards import api_result
from pneumoscope.app.handlers import App
from pneumoscope.app.layout import DEFAULT_EXAMPLES, build_app, example_files
from pneumoscope.app.server import Served, serve
from pneumoscope.app.text import NOT_XRAY_LABEL
from pneumoscope.app.uploads import PendingUploads

__all__ = ["App", "DEFAULT_EXAMPLES", "NOT_XRAY_LABEL", "PendingUploads", "Served", "about_content", "api_result",
           "build_app", "example_files", "serve"]
