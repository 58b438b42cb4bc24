"""Drawn or computed hard negatives: CT-like axial slices (a simulated scan of the Shepp-Logan
phantom, synthetic chest sections in Hounsfield units), scanned paper documents and hand-drawn
"X-rays". Apart from the photos because these are built from shapes, text and strokes rather than
by photographing a film (only the printed report, ``document_scan`` variant 2, carries one)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from pneumoscope.evaluation.hard_negatives._common import default_font, finish, soft_blur, to_u8


def _cloud(rng: np.random.Generator, shape: tuple[int, int], scale: int) -> np.ndarray:
    """Smooth random texture with features about ``scale`` pixels wide, zero mean, unit spread."""
    small = rng.standard_normal((shape[0] // scale + 2, shape[1] // scale + 2)).astype(np.float32)
    return np.asarray(Image.fromarray(small).resize(shape[::-1], Image.Resampling.BICUBIC), dtype=np.float64)


def _ellipse(shape: tuple[int, int], cy: float, cx: float, ry: float, rx: float, angle: float = 0.0) -> np.ndarray:
    y, x = np.mgrid[0:shape[0], 0:shape[1]]
    c, s = np.cos(angle), np.sin(angle)
    dy, dx = y - cy, x - cx
    return ((dx * c + dy * s) / rx) ** 2 + ((-dx * s + dy * c) / ry) ** 2 <= 1


def _window(hu: np.ndarray, level: float, width: float) -> np.ndarray:
    return to_u8(np.clip((hu - level + width / 2) / width, 0, 1))


def ct_slice(rng: np.random.Generator, variant: int) -> np.ndarray:
    n = 512
    if variant == 0:  # Shepp-Logan phantom through a simulated scan: noisy projections, FBP streaks
        from skimage.data import shepp_logan_phantom
        from skimage.transform import iradon, radon, resize

        phantom = resize(shepp_logan_phantom(), (256, 256), anti_aliasing=True)
        angles = np.linspace(0, 180, 180, endpoint=False)
        sinogram = radon(phantom, angles)
        sinogram = sinogram + rng.normal(0, 0.02 * sinogram.max(), sinogram.shape)
        image = resize(iradon(sinogram, angles, filter_name="ramp"), (n, n), order=3)
        return to_u8(np.clip((image + 0.05) / 1.1, 0, 1))
    hu, shape = np.full((n, n), -1000.0), (n, n)
    cy, cx, ry, rx = 256 + rng.uniform(-8, 8), 256 + rng.uniform(-6, 6), rng.uniform(148, 165), rng.uniform(205, 222)
    vy = cy + ry - 80  # vertebral body, posterior (the patient lies supine, anterior up)
    hu[_ellipse(shape, cy, cx, ry, rx)] = -100  # subcutaneous fat
    hu[_ellipse(shape, cy, cx, ry - 14, rx - 16)] = 45  # chest wall muscle
    hu[_ellipse(shape, cy, cx, ry - 28, rx - 30)] = 20
    for side in (-1, 1):  # scapulae, behind the chest wall (lungs drawn over)
        a = np.pi / 2 + side * 0.75
        tangent = np.arctan2(ry * np.cos(a), -rx * np.sin(a))
        hu[_ellipse(shape, cy + (ry - 13) * np.sin(a), cx + (rx - 13) * np.cos(a), 5, 42, tangent)] = 650
    for side in (-1, 1):  # lungs (wrapping round the spine), ribs
        hu[_ellipse(shape, cy, cx + side * 88, ry - 40, 80, side * 0.12) | _ellipse(shape, vy - 10, cx + side * 62, 50, 48)] = -860
        for k in range(8):
            a = np.pi / 2 + side * (0.4 + k * 0.3)
            hu[_ellipse(shape, cy + (ry - 21) * np.sin(a), cx + (rx - 23) * np.cos(a), 5, 8, a)] = 750
    hu[_ellipse(shape, cy + 5, cx + 10, 112, 58)] = -80  # mediastinal fat
    hu[_ellipse(shape, cy - 15, cx + 24, 60, 72, 0.5)] = 40  # heart
    if variant == 2:  # contrast in the cardiac chambers and the aorta
        hu[_ellipse(shape, cy - 5, cx + 40, 32, 40, 0.5)] = 180
        hu[_ellipse(shape, cy - 35, cx + 5, 28, 30, 0.5)] = 160
    hu[_ellipse(shape, vy - 24, cx + 36, 16, 16)] = 190 if variant == 2 else 50  # descending aorta
    hu[_ellipse(shape, vy - 34, cx - 8, 7, 8)] = 30  # oesophagus
    hu[_ellipse(shape, vy - 34, cx - 8, 2, 3)] = -900
    hu[_ellipse(shape, vy, cx, 27, 29)] = 800  # vertebral body: cortex, cancellous bone, canal, spinous process
    hu[_ellipse(shape, vy, cx, 22, 24)] = 250
    hu[_ellipse(shape, vy + 36, cx, 10, 11)] = 20
    hu[_ellipse(shape, vy + 56, cx, 14, 5)] = 700
    hu[_ellipse(shape, cy - ry + 24, cx, 8, 17)] = 500  # sternum
    lungs = np.flatnonzero(hu == -860)
    for index in rng.choice(lungs, 220, replace=False):  # vessels: thick near the hila, fine at the periphery
        py, px = divmod(int(index), n)
        r = 0.8 + 3.5 * np.exp(-np.hypot(py - cy, abs(px - cx) - 45) / 45)
        hu[_ellipse(shape, py, px, r, r * rng.choice([1, 1, 1, 2.2]), rng.uniform(0, np.pi)) & (hu == -860)] = 40
    table = _ellipse(shape, cy + ry + 330, cx, 330, 420) & ~_ellipse(shape, cy + ry + 338, cx, 325, 420)
    hu[table] = 200
    hu = ndimage.gaussian_filter(hu, 1.0) + ndimage.gaussian_filter(rng.normal(0, 45, (n, n)), 0.7)
    hu[~_ellipse((n, n), n / 2, n / 2, n / 2, n / 2)] = -1024  # outside the reconstructed field of view
    image = _window(hu, -600, 1500) if variant == 1 else _window(hu, 40, 400)
    overlay = Image.fromarray(image)
    draw = ImageDraw.Draw(overlay)
    font = default_font(14)
    draw.text((8, 8), f"Ax  {rng.uniform(1.0, 5.0):.1f} mm\nIm {rng.integers(20, 90)}/{rng.integers(100, 140)}", fill=235, font=font)
    draw.text((8, n - 40), ("W 1500 L -600" if variant == 1 else "W 400 L 40") + "\n120 kV", fill=235, font=font)
    return np.asarray(overlay)


_WORDS = ("the patient was seen today for follow up of cough and fever no acute findings are noted "
          "chest clear bilateral mild within normal limits please see attached results recommended "
          "review of the prior study comparison heart size pleural effusion impression history signed").split()


def document_scan(rng: np.random.Generator, variant: int, film: np.ndarray) -> np.ndarray:
    w, h = 1240, 1754  # A4 at 150 dpi
    colour = variant == 1
    page = Image.new("RGB", (w, h), (245, 241, 228) if colour else (238, 238, 238))
    draw = ImageDraw.Draw(page)
    ink = (25, 30, 60) if colour else (20, 20, 20)
    draw.ellipse((100, 90, 190, 180), outline=ink, width=6)
    draw.line((145, 105, 145, 165), fill=ink, width=8)
    draw.line((115, 135, 175, 135), fill=ink, width=8)
    draw.text((215, 95), "ST. ELSEWHERE GENERAL HOSPITAL", fill=ink, font=default_font(38))
    draw.text((215, 145), "Department of Radiology  -  12 Example Road", fill=ink, font=default_font(22))
    draw.line((100, 205, w - 100, 205), fill=ink, width=3)
    title = ["RADIOLOGY REPORT", "LABORATORY RESULTS", "RADIOLOGY REPORT"][variant]
    draw.text((100, 235), title, fill=ink, font=default_font(34))
    y = 300
    for label in ("Patient:", "Date of birth:", "Referring physician:"):
        draw.text((100, y), label, fill=ink, font=default_font(22))
        draw.line((330, y + 24, 680, y + 24), fill=ink, width=1)
        y += 40
    if variant == 2:  # a printed film on the report
        view = Image.fromarray(film).resize((420, int(420 * film.shape[0] / film.shape[1])), Image.Resampling.LANCZOS)
        page.paste(view.convert("RGB"), (w - 100 - view.width, 300))
    text = default_font(21)
    y += 30
    for paragraph in range(3 if variant != 1 else 2):
        for line in range(int(rng.integers(4, 8))):
            limit = w - 100 - (470 if variant == 2 and y < 300 + 560 else 0)
            words, x = rng.choice(_WORDS, 40), 100
            for word in words:
                step = draw.textlength(str(word) + " ", font=text)
                if x + step > limit - (rng.uniform(0, 120) if line == 0 else 0):
                    break
                draw.text((x, y), str(word), fill=ink, font=text)
                x += step
            y += 31
        y += 24
    if variant != 2:  # a table
        rows, cols = 8, 4
        for r in range(rows + 1):
            draw.line((100, y + 38 * r, w - 100, y + 38 * r), fill=ink, width=2 if r in (0, 1, rows) else 1)
        for c in range(cols + 1):
            draw.line((100 + c * (w - 200) // cols, y, 100 + c * (w - 200) // cols, y + 38 * rows), fill=ink, width=1)
        for r in range(rows):
            for c in range(cols):
                cell = ["Test", "Result", "Units", "Range"][c] if r == 0 else (str(rng.choice(_WORDS)) if c == 0 else f"{rng.uniform(0, 200):.1f}")
                draw.text((112 + c * (w - 200) // cols, y + 38 * r + 8), cell, fill=ink, font=text)
        y += 38 * rows + 40
    path = np.cumsum(rng.normal(0, 1, (60, 2)), axis=0) * [9, 4] + [w - 420, max(y + 60, h - 260)]
    draw.line([tuple(p) for p in ndimage.gaussian_filter1d(path, 2, axis=0) + np.c_[np.linspace(0, 250, 60), np.zeros(60)]], fill=ink, width=3)
    draw.text((w // 2 - 30, h - 80), "Page 1 of 1", fill=ink, font=default_font(18))
    if colour:  # a blue rubber stamp
        draw.rounded_rectangle((140, h - 330, 520, h - 190), 12, outline=(60, 80, 190), width=6)
        draw.text((170, h - 290), "RECEIVED  03 MAR", fill=(60, 80, 190), font=default_font(36))
    # Scanner: paper texture, rotation on the bed, edge shadow, blur, noise.
    paper = np.asarray(page, dtype=np.float64) / 255
    paper = paper * (1 + 0.008 * _cloud(rng, (h, w), 60)[..., None] + 0.006 * _cloud(rng, (h, w), 2)[..., None])
    angle = rng.uniform(-2.5, 2.5)
    rotated = np.asarray(Image.fromarray(to_u8(paper)).rotate(angle, Image.Resampling.BICUBIC, expand=True), dtype=np.float64) / 255
    mask = np.asarray(Image.new("L", (w, h), 255).rotate(angle, Image.Resampling.BICUBIC, expand=True), dtype=np.float64)[..., None] / 255
    bed_shape = (rotated.shape[0] + 40, rotated.shape[1] + 50)
    oy, ox = int(rng.integers(5, 35)), int(rng.integers(5, 45))
    place = np.zeros(bed_shape + (1,))
    place[oy:oy + mask.shape[0], ox:ox + mask.shape[1]] = mask
    page_on_bed = np.zeros(bed_shape + (3,))
    page_on_bed[oy:oy + mask.shape[0], ox:ox + mask.shape[1]] = rotated
    bed = np.full(bed_shape + (3,), 0.25 if variant == 0 else 0.97)
    bed = bed * (1 - 0.5 * np.roll(soft_blur(place[..., 0], 8), (4, 6), (0, 1))[..., None])
    scan = bed * (1 - place) + page_on_bed * place
    scan = ndimage.gaussian_filter(scan, (0.6, 0.6, 0))
    return finish(scan, rng, noise=0.015, grey=not colour, quality=95)


def _curve(points: list[tuple[float, float]], n: int = 80, closed: bool = False) -> np.ndarray:
    """A smooth curve through control points (unit coordinates), by Catmull-Rom interpolation."""
    p = np.asarray(points, float)
    p = np.vstack([p[-1], p, p[0], p[1]]) if closed else np.vstack([p[0], p, p[-1]])
    out = []
    for i in range(1, len(p) - 2):
        t = np.linspace(0, 1, max(2, n // (len(p) - 3)), endpoint=False)[:, None]
        a, b, c, d = p[i - 1], p[i], p[i + 1], p[i + 2]
        out.append(0.5 * (2 * b + (-a + c) * t + (2 * a - 5 * b + 4 * c - d) * t ** 2 + (-a + 3 * b - 3 * c + d) * t ** 3))
    return np.vstack(out + [p[-2][None]])


def _skeleton() -> dict[str, list[np.ndarray]]:
    """The sketch's strokes in unit coordinates: body, clavicles, spine, ribs, lungs, heart."""
    parts: dict[str, list[np.ndarray]] = {"body": [], "bone": [], "lung": [], "heart": []}
    for s in (-1, 1):
        m = lambda pts: [(0.5 + s * (x - 0.5), y) for x, y in pts]  # noqa: E731  mirror to a side
        parts["body"].append(_curve(m([(0.62, 0.02), (0.66, 0.1), (0.88, 0.14), (0.93, 0.3), (0.9, 0.7), (0.88, 0.98)])))
        parts["bone"].append(_curve(m([(0.53, 0.19), (0.64, 0.17), (0.76, 0.13), (0.84, 0.15)])))
        for i in range(10):
            y0, spread = 0.2 + i * 0.062, 0.2 + 0.12 * np.sin(np.pi * (i + 2) / 14)
            parts["bone"].append(_curve(m([(0.53, y0), (0.5 + spread * 0.55, y0 - 0.02), (0.5 + spread, y0 + 0.04),
                                           (0.5 + spread * 0.95, y0 + 0.1), (0.5 + spread * 0.6, y0 + 0.15)])))
        heart_side = 0.0 if s > 0 else 0.06
        parts["lung"].append(_curve(m([(0.58, 0.16), (0.68, 0.2), (0.77, 0.4), (0.81, 0.72), (0.71, 0.7), (0.6 + heart_side, 0.66),
                                       (0.56 + heart_side, 0.45), (0.56, 0.28)]), 120, closed=True))
    for k in range(15):
        y = 0.14 + k * 0.054
        parts["bone"].append(_curve([(0.475, y), (0.525, y), (0.53, y + 0.04), (0.47, y + 0.04)], 40, closed=True))
    parts["heart"].append(_curve([(0.5, 0.47), (0.58, 0.5), (0.63, 0.62), (0.57, 0.7), (0.45, 0.7), (0.43, 0.58)], 80, closed=True))
    return parts


def hand_drawing(rng: np.random.Generator, variant: int) -> np.ndarray:
    w, h = 1000, 1250
    parts = _skeleton()
    scale = np.array([w * 0.9, h * 0.92]), np.array([w * 0.05, h * 0.04])
    ink = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(ink)
    if variant == 2:  # flat digital painting: filled body, dark lungs, grey heart, white bones
        for body in parts["body"][:1]:
            outline = np.vstack([body, parts["body"][1][::-1]]) * scale[0] + scale[1]
            draw.polygon([tuple(p) for p in outline], fill=95)
        for lung in parts["lung"]:
            draw.polygon([tuple(p) for p in lung * scale[0] + scale[1]], fill=30)
        draw.polygon([tuple(p) for p in parts["heart"][0] * scale[0] + scale[1]], fill=140)
    passes, wobble, width = [(3, 2.5, 4), (2, 1.5, 3), (1, 0.6, 7)][variant]
    for name, curves in parts.items():
        for curve in curves:
            for _ in range(passes):
                pts = curve * scale[0] + scale[1]
                jitter = ndimage.gaussian_filter1d(rng.normal(0, wobble * 4, pts.shape), 3, axis=0)
                shade = 255 if name == "bone" or variant != 2 else 200
                draw.line([tuple(p) for p in pts + jitter], fill=shade, width=width + (2 if name == "body" else 0), joint="curve")
    if variant == 1:  # hatching inside the lungs
        lungs = Image.new("L", (w, h), 0)
        for lung in parts["lung"]:
            ImageDraw.Draw(lungs).polygon([tuple(p) for p in lung * scale[0] + scale[1]], fill=255)
        hatch = Image.new("L", (w, h), 0)
        for x in range(-h, w, 18):
            ImageDraw.Draw(hatch).line((x + rng.uniform(-3, 3), h, x + h, 0), fill=200, width=1)
        ink = Image.fromarray(np.maximum(np.asarray(ink), np.minimum(np.asarray(hatch), np.asarray(lungs))))
    strokes = np.asarray(ink, dtype=np.float64) / 255
    if variant == 0:  # chalk: grainy strokes on a smudged black board
        strokes = strokes * (ndimage.gaussian_filter(rng.random((h, w)), 0.8) > 0.47) * 0.9
        board = 0.1 + 0.025 * _cloud(rng, (h, w), 80) + 0.05 * np.clip(_cloud(rng, (h, w), 150), 0, None)
        return finish(np.clip(board + strokes, 0, 1), rng, noise=0.01, grey=True, quality=100)
    if variant == 1:  # pen on slightly warm paper, photographed
        light = 0.92 - 0.1 * np.linspace(0, 1, w)[None, :, None]
        paper = light * [1.0, 0.98, 0.93]
        return finish(paper * (1 - 0.85 * strokes[..., None] * [0.95, 0.95, 0.85]), rng, noise=0.012, grey=False, quality=90)
    return finish(strokes, rng, noise=0.0, grey=True, quality=100)
