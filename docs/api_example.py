"""Regenerate ``docs/api.md``: serve the bundled model, call its API as the page's users' scripts
would, and paste the real answers into the page (so its figures cannot go stale).

    .venv/bin/python docs/api_example.py          # from the repository root; needs ../shared/data
"""

from __future__ import annotations

import io
import json
import socket
import tempfile
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "originals"
FILES = {
    "pneumonia": DATA / "PNEUMONIA" / "person1071_virus_1774.jpeg",
    "normal": DATA / "NORMAL" / "IM-0283-0001.jpeg",
    "bacterial": DATA / "PNEUMONIA" / "person1140_bacteria_3083.jpeg",
}

EXAMPLE = '''from gradio_client import Client, handle_file

client = Client(URL)  # e.g. "http://127.0.0.1:7860/"; add auth=("USER", "PASS") when served with --auth

# One image -> the prediction as a dict (the page shows the same dict under "Result as the API returns it").
print(client.predict(handle_file(PNEUMONIA), api_name="/predict"))

# Not a chest X-ray: the label is computed but is no diagnosis; the warnings say why.
photo = client.predict(handle_file(PHOTO), api_name="/predict")
print(photo["is_chest_xray"], photo["warnings"])

# An unreadable file -> the same dict, no prediction, and the one-line reason in "error".
broken = client.predict(handle_file(BROKEN), api_name="/predict")
print(broken["label"], "|", broken["error"])

# Many images -> a table (dict with headers and rows) and a CSV file of the same files in
# `pneumoscope predict`'s columns.
table, csv_path = client.predict([handle_file(NORMAL), handle_file(BACTERIAL), handle_file(BROKEN)],
                                 api_name="/predict_batch")
print(table["headers"])
for row in table["data"]:
    print(row)
print(open(csv_path).read())
'''


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _inputs(folder: Path) -> dict[str, str]:
    """A colour photograph-like image and a truncated JPEG, made here (nothing downloaded)."""
    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, 512)
    photo = np.stack([np.outer(x, 1 - x), np.outer(1 - x, x), rng.uniform(0, 1, (512, 512))], axis=-1)
    Image.fromarray((photo * 255).astype(np.uint8)).save(folder / "photo.png")
    (folder / "broken.jpeg").write_bytes(FILES["normal"].read_bytes()[:3000])
    names = {key.upper(): str(path) for key, path in FILES.items()}
    return {**names, "PHOTO": str(folder / "photo.png"), "BROKEN": str(folder / "broken.jpeg")}


def main() -> None:
    from gradio_client import Client

    from pneumoscope.app import serve

    with tempfile.TemporaryDirectory() as tmp:
        names = _inputs(Path(tmp))
        served = serve(port=_free_port(), block=False)
        try:
            client = Client(served.url, verbose=False)
            with redirect_stdout(io.StringIO()) as listing:
                client.view_api(print_info=True)
            output = io.StringIO()
            with redirect_stdout(output):
                exec(EXAMPLE, {"URL": served.url, **names})  # noqa: S102 - the page's own example, run as printed
        finally:
            served.close()
    shown = output.getvalue().replace(tmp, "/tmp")
    for key, path in FILES.items():
        shown = shown.replace(str(path), path.name)
    endpoints = "\n".join(line for line in listing.getvalue().splitlines() if line.strip())
    page = TEMPLATE.format(
        endpoints=endpoints, example=EXAMPLE.strip(), output=shown.strip(),
        inputs=", ".join(f"`{k}` = `{v.replace(tmp, '/tmp') if tmp in v else Path(v).relative_to(REPO.parent)}`"
                         for k, v in names.items()),
    )
    (REPO / "docs" / "api.md").write_text(page, encoding="utf-8")
    print(json.dumps({"wrote": "docs/api.md"}))


TEMPLATE = """# The web app's API

`pneumoscope serve` puts the same predictions as the page on Gradio's API, for scripts:

| endpoint | takes | returns |
|---|---|---|
| `/predict` | one file (PNG, JPEG or DICOM) | the prediction as a dict (below) |
| `/predict_batch` | a list of files | a table (`headers`, `data`: one row per file: file, label, probability, pattern, warnings) and a CSV file of the same files with the columns of `pneumoscope predict` (path, label, probability, raw_label, raw_probability, threshold, is_chest_xray, xray_check, ood_distance, caution, subtype, p_bacterial, heatmap, error, warnings) |

The result's fields (one dict, on the page and from `/predict`):
- `file`: the uploaded file's name (`null` when none was sent);
- `label`: `NORMAL` or `PNEUMONIA`;
- `probability`: calibrated probability of pneumonia;
- `threshold`: the label is `PNEUMONIA` when `probability >= threshold`;
- `is_chest_xray`, `warnings`: a file that does not look like a chest X-ray still gets a label, but
  `is_chest_xray` is `false` and `warnings` say why. That label is the network's raw output, not a
  diagnosis: the batch table and the CSV's `label` say `NOT A CHEST X-RAY` and give no `probability`
  for it; the CSV keeps the network's output in `raw_label` and `raw_probability`. A file that could
  not be read is `ERROR` in both;
- `xray_check`, `caution`: the check's zone. `pass`: answered. `caution`: answered, but the film lies
  at the edge of the training films (another hospital's series lands there), and `caution` says so
  with its feature distance; the page shows it under the answer. `refuse`: not a chest X-ray
  (`is_chest_xray` false);
- `ood_distance`: how far the network's features are from the training X-rays' (the zones' measure);
- `subtype`, `p_bacterial`, `subtype_pattern`: for a film labelled `PNEUMONIA` that passes as a chest
  X-ray, which pattern it is more typical of (`bacterial` or `viral`), the calibrated probability of
  the bacterial pattern, and the sentence the page shows. A pattern, not a diagnosis of the cause.
  `null` otherwise.
- `error`: `null` when the file was scored. For an unreadable file (or none) it is the one-line reason,
  the same message the page's error card shows, and every prediction field is `null` (`warnings` is
  empty): `/predict` answers, it does not raise, as `pneumoscope predict` writes a row with an `error`.
  In `/predict_batch` such a file is a row labelled `ERROR`, with the message in `warnings`.

`/predict` scores without a heatmap (ONNX Runtime); the page's Grad-CAM is not on the API. Uploads
are deleted from the server once predicted, as in the page.

`Client(url).view_api()` lists the endpoints:

```
{endpoints}
```

## Example

With the server running (`pneumoscope serve`) and `pip install gradio_client`:

```python
{example}
```

Its output against the bundled model, written by `python docs/api_example.py`. The inputs were
{inputs}: a synthetic colour picture and the first 3,000 bytes of a real JPEG.

```
{output}
```
"""

if __name__ == "__main__":
    main()
