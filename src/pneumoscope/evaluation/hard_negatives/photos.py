"""Photographed hard negatives: a real chest film on a monitor or laptop screen, or clipped to a
lightbox, as a phone camera would see it (perspective, bezel, room, moiré, glare, colour cast).
Apart from the drawn corpora because it is its own small renderer: a homography to put a flat
plane (screen, viewing box) into a photo, a blurred room behind it, and a PACS-like viewer."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

from pneumoscope.evaluation.hard_negatives._common import default_font, finish, soft_blur, to_u8


def _homography(photo_quad: np.ndarray, plane_quad: np.ndarray) -> np.ndarray:
    """The 8 coefficients (Pillow's PERSPECTIVE) that map photo coordinates to plane coordinates."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(photo_quad, plane_quad):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        rhs += [u, v]
    return np.linalg.solve(np.array(rows, float), np.array(rhs, float))


def _quad(rng: np.random.Generator, size: tuple[int, int], centre: tuple[float, float], width: float,
          aspect: float, yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Corners (TL, TR, BR, BL) of a rectangle seen in perspective, in photo pixels."""
    w, h = size
    half_w, half_h = width * w / 2, width * w / 2 / aspect
    corners = np.array([[-half_w * (1 - pitch), -half_h * (1 + yaw)], [half_w * (1 - pitch), -half_h * (1 - yaw)],
                        [half_w * (1 + pitch), half_h * (1 - yaw)], [-half_w * (1 + pitch), half_h * (1 + yaw)]])
    corners[[1, 2], 0] *= 1 - abs(yaw) * np.sign(yaw)
    c, s = np.cos(roll), np.sin(roll)
    return corners @ np.array([[c, s], [-s, c]]) + np.array([centre[0] * w, centre[1] * h])


def _warp(photo: np.ndarray, plane: Image.Image, quad: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Composites an RGBA ``plane`` onto ``photo`` so that its corners land on ``quad``; returns the
    photo and the plane coordinates (u, v) of every photo pixel."""
    h, w = photo.shape[:2]
    pw, ph = plane.size
    coeffs = _homography(quad, np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], float))
    warped = np.asarray(plane.transform((w, h), Image.Transform.PERSPECTIVE, tuple(coeffs), Image.Resampling.BICUBIC),
                        dtype=np.float64) / 255
    alpha = warped[..., 3:]
    photo = photo * (1 - alpha) + warped[..., :3] * alpha
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    a, b, c, d, e, f, g, k = coeffs
    den = g * x + k * y + 1
    return photo, (a * x + b * y + c) / den, (d * x + e * y + f) / den


def _room(rng: np.random.Generator, size: tuple[int, int], dim: float, horizon: float, desk_top: bool = True) -> np.ndarray:
    """A blurred office or reading-room background: wall, desk (keyboard, papers, a mug)."""
    w, h = size
    wall = np.array([0.55, 0.5, 0.44]) + rng.uniform(-0.08, 0.08, 3)
    desk = np.array([0.34, 0.28, 0.22]) + rng.uniform(-0.06, 0.06, 3)
    y = np.linspace(0, 1, h)[:, None, None]
    x = np.linspace(-1, 1, w)[None, :, None]
    room = np.where(y < horizon, wall * (0.8 + 0.3 * y), desk * (1.1 - 0.4 * (y - horizon)))
    room = room * (1 - 0.25 * x * rng.uniform(-1, 1))
    image = Image.fromarray(to_u8(room * dim))
    draw = ImageDraw.Draw(image)
    if not desk_top:
        return np.asarray(image.filter(ImageFilter.GaussianBlur(4)), dtype=np.float64) / 255
    ky = int(h * (horizon + 0.6 * (1 - horizon)))
    kx = int(w * rng.uniform(0.25, 0.45))
    draw.polygon([(kx, ky), (kx + w * 0.38, ky), (kx + w * 0.42, ky + h * 0.12), (kx - w * 0.04, ky + h * 0.12)],
                 fill=(28, 28, 30))
    px = int(w * rng.choice([0.02, 0.78]))
    draw.polygon([(px, ky - 30), (px + w * 0.17, ky - 40), (px + w * 0.2, ky + h * 0.1), (px + 10, ky + h * 0.11)],
                 fill=tuple(int(v * dim) for v in (215, 212, 205)))
    mx = int(w * rng.uniform(0.05, 0.15)) if px > w / 2 else int(w * rng.uniform(0.82, 0.9))
    draw.rectangle((mx, ky - h * 0.14, mx + w * 0.07, ky), fill=tuple(int(v) for v in rng.integers(40, 200, 3)))
    return np.asarray(image.filter(ImageFilter.GaussianBlur(4)), dtype=np.float64) / 255


def _viewer(film: np.ndarray, size: tuple[int, int], rng: np.random.Generator, dark: bool) -> Image.Image:
    """Screen content: the film in a dark PACS-like viewer, or in a light desktop image viewer."""
    w, h = size
    image = Image.new("RGB", size, (12, 12, 14) if dark else (228, 228, 230))
    draw = ImageDraw.Draw(image)
    bar = int(h * 0.06)
    draw.rectangle((0, 0, w, bar), fill=(44, 46, 52) if dark else (200, 202, 206))
    font = default_font(max(12, bar // 3))
    for i, label in enumerate(["File", "View", "Tools", "Window", "Help"]):
        draw.text((12 + i * bar * 1.6, bar // 3), label, fill=(200, 200, 200) if dark else (30, 30, 30), font=font)
    for i in range(int((w * 0.6 - 8 * bar) // (bar * 1.1))):
        x0 = int(8 * bar + 40) + i * int(bar * 1.1)
        draw.rounded_rectangle((x0, bar * 0.2, x0 + bar * 0.8, bar * 0.8), 4, fill=(95, 98, 105) if dark else (150, 150, 160))
    left = int(w * 0.13) if dark else 0
    view = Image.fromarray(film)
    scale = min((w - left - 20) / view.width, (h - bar - 20) / view.height)
    view = view.resize((max(1, int(view.width * scale)), max(1, int(view.height * scale))), Image.Resampling.LANCZOS)
    x0, y0 = left + (w - left - view.width) // 2, bar + (h - bar - view.height) // 2
    if not dark:
        draw.rectangle((x0 - 8, y0 - 8, x0 + view.width + 8, y0 + view.height + 8), fill=(20, 20, 20))
    image.paste(view.convert("RGB"), (x0, y0))
    if dark:
        draw.rectangle((0, bar, left, h), fill=(28, 29, 33))
        thumb = Image.fromarray(film).resize((left - 24, int((left - 24) * film.shape[0] / film.shape[1])))
        for i in range(3):
            ty = bar + 16 + i * (thumb.height + 40)
            if ty + thumb.height < h:
                image.paste(thumb.convert("RGB"), (12, ty))
                draw.rectangle((10, ty - 2, 12 + thumb.width + 1, ty + thumb.height + 1), outline=(90, 140, 220) if i == 0 else (70, 70, 70))
                draw.text((12, ty + thumb.height + 6), f"Se {i + 1}  Im 1", fill=(180, 180, 180), font=font)
        small = default_font(max(12, h // 55))
        overlay = (220, 220, 160)
        draw.text((x0 + 10, y0 + 10), f"ANONYMOUS\nID {rng.integers(10**6, 10**7)}\nCR  CHEST PA", fill=overlay, font=small, spacing=4)
        draw.text((x0 + 10, y0 + view.height - 4 * h // 55), f"W {rng.integers(1500, 4096)}  L {rng.integers(800, 2048)}\nZoom {100 * scale:.0f}%",
                  fill=overlay, font=small, spacing=4)
    return image


def monitor_photo(film: np.ndarray, rng: np.random.Generator, variant: int) -> np.ndarray:
    size = [(1600, 1200), (1440, 1080), (1200, 1600), (1800, 1350)][variant]
    portrait, laptop = variant == 2, variant == 3
    screen = (1080, 1440) if portrait else (1600, 1000)
    bezel, chin = (60, 90) if not laptop else (30, 40)
    content = _viewer(film, screen, rng, dark=variant != 1)
    plane = Image.new("RGBA", (screen[0] + 2 * bezel, screen[1] + bezel + chin), (0, 0, 0, 0))
    draw = ImageDraw.Draw(plane)
    tone = int(rng.integers(18, 45)) if variant != 3 else 150
    draw.rounded_rectangle((0, 0, plane.width - 1, plane.height - 1), 24, fill=(tone, tone, tone + 3, 255))
    plane.paste(content, (bezel, bezel))
    draw.ellipse((plane.width - bezel - 30, plane.height - chin // 2 - 6, plane.width - bezel - 18, plane.height - chin // 2 + 6),
                 fill=(60, 200, 90, 255))
    photo = _room(rng, size, dim=rng.uniform(0.55, 0.9), horizon=0.78 if not laptop else 0.68)
    quad = _quad(rng, size, (rng.uniform(0.45, 0.55), 0.45 if not laptop else 0.42), rng.uniform(0.62, 0.78) * (0.75 if portrait else 1),
                 plane.width / plane.height, rng.uniform(-0.12, 0.12), rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05))
    stand = Image.fromarray(to_u8(photo))
    bottom = (quad[2] + quad[3]) / 2
    sd = ImageDraw.Draw(stand)
    if laptop:  # keyboard deck below the screen
        deck = [tuple(quad[3]), tuple(quad[2]), tuple(quad[2] + [size[0] * 0.08, size[1] * 0.22]), tuple(quad[3] + [-size[0] * 0.08, size[1] * 0.22])]
        sd.polygon(deck, fill=(165, 166, 170))
    else:
        neck = [bottom + [-40, -10], bottom + [40, -10], bottom + [55, size[1] * 0.2], bottom + [-55, size[1] * 0.2]]
        sd.polygon([tuple(p) for p in neck], fill=(35, 35, 38))
    photo, u, v = _warp(np.asarray(stand, dtype=np.float64) / 255, plane, quad)
    on_screen = (u > bezel) & (u < bezel + screen[0]) & (v > bezel) & (v < bezel + screen[1])
    # Moiré: the screen's sub-pixel grid sampled by the camera, low-passed by its optics.
    # A grid pitch within a few % of the camera's pixel pitch beats into broad, curved bands.
    pitch = plane.width / np.ptp(quad[:, 0]) * (1 + rng.choice([-1, 1]) * rng.uniform(0.012, 0.04))
    rows, columns = np.cos(2 * np.pi * v / pitch), [np.cos(2 * np.pi * (u / pitch + k / 3)) for k in range(3)]
    grid = 0.12 * (rows + columns[0])[..., None] / 2 + rng.uniform(0.06, 0.14) * np.stack(columns, axis=2)
    grid = ndimage.gaussian_filter(grid, (1.0, 1.0, 0))
    photo = np.where(on_screen[..., None], photo * (1 + grid), photo)
    # Glare (a lamp) and the blurred reflection of a window on the glass.
    h, w = photo.shape[:2]
    y, x = np.mgrid[0:h, 0:w]
    gx, gy = quad[:, 0].mean() + rng.uniform(-0.25, 0.25) * w * 0.5, quad[:, 1].mean() + rng.uniform(-0.25, 0.1) * h * 0.5
    glare = np.exp(-((x - gx) ** 2 + (y - gy) ** 2) / (2 * (w * rng.uniform(0.06, 0.12)) ** 2))
    glare = rng.uniform(0.12, 0.3) * glare + 0.25 * glare ** 8
    window = soft_blur(((x + 0.6 * y) % w > w * 0.55) & ((x + 0.6 * y) % w < w * 0.75), 25)
    photo = photo + on_screen[..., None] * (glare[..., None] * [1, 0.97, 0.9] + 0.08 * window[..., None])
    cast = np.array([1.0, 1.0, 1.0]) if variant == 0 else 1 + rng.uniform(-0.08, 0.08, 3)
    vignette = 1 - 0.35 * (((x - w / 2) / w) ** 2 + ((y - h / 2) / h) ** 2)[..., None]
    photo = ndimage.gaussian_filter(photo * cast * vignette, (0.7, 0.7, 0))
    return finish(photo, rng, noise=0.02, grey=variant == 0, quality=int(rng.integers(80, 92)))


def lightbox_photo(films: list[np.ndarray], rng: np.random.Generator, variant: int) -> np.ndarray:
    size = [(1600, 1200), (1800, 1200), (1200, 1600), (1700, 1275)][variant]
    panels, placed = [(1, 1), (2, 1), (1, 1), (2, 2)][variant]
    pw, ph, frame = 1000, 1220, 70
    width = panels * pw + (panels + 1) * frame
    tubes = 0.93 + 0.07 * np.cos(np.linspace(0, 2 * np.pi * 3 * panels, width)) ** 2
    plane = np.ones((ph + 2 * frame, width, 3)) * [0.5, 0.5, 0.49] * rng.uniform(0.7, 1.0)
    for p in range(panels):
        x0 = frame + p * (pw + frame)
        yy, xx = np.mgrid[0:ph, 0:pw] / np.array([ph, pw])[:, None, None]
        falloff = 1 - 0.25 * ((2 * xx - 1) ** 4 + (2 * yy - 1) ** 4)
        light = (tubes[x0:x0 + pw] * falloff)[..., None] * [0.97, 0.99, 1.0]
        if p < placed:
            film = films[p % len(films)] / 255.0
            fh = int(ph * rng.uniform(0.82, 0.9))
            fw = min(int(fh * film.shape[1] / film.shape[0]), int(pw * 0.96))
            film = np.asarray(Image.fromarray(to_u8(film)).resize((fw, fh), Image.Resampling.LANCZOS)) / 255.0
            film = np.pad(film, 12, constant_values=1.0)  # clear film base around the image
            marker = Image.fromarray(to_u8(film))
            corner = (40, 40) if rng.random() < 0.5 else (film.shape[1] - 90, film.shape[0] - 120)
            ImageDraw.Draw(marker).text(corner, "R" if p % 2 == 0 else "L", fill=250, font=default_font(70))
            film = np.asarray(marker) / 255.0
            transmit = (0.03 + 0.97 * film ** 1.3)[..., None] * [0.92, 0.96, 1.0]
            fy, fx = int(ph * 0.05), (pw - film.shape[1]) // 2
            light[fy:fy + film.shape[0], fx:fx + film.shape[1]] *= transmit
            for cx in (fx + film.shape[1] // 3, fx + 2 * film.shape[1] // 3):
                light[max(0, fy - 30):fy + 25, cx - 22:cx + 22] = 0.25
        plane[frame:frame + ph, x0:x0 + pw] = light
    rgba = np.dstack([to_u8(plane), np.full(plane.shape[:2], 255, np.uint8)])
    photo = _room(rng, size, dim=rng.uniform(0.3, 0.5), horizon=0.92, desk_top=False)
    aspect = rgba.shape[1] / rgba.shape[0]
    quad = _quad(rng, size, (0.5, 0.47), min(0.86, 0.75 * aspect * size[1] / size[0]) if variant != 2 else 0.95, aspect,
                 rng.uniform(-0.1, 0.1), rng.uniform(-0.06, 0.06), rng.uniform(-0.04, 0.04))
    photo, u, v = _warp(photo, Image.fromarray(rgba, "RGBA"), quad)
    bright = np.clip(photo.mean(axis=2) - 0.75, 0, 1)
    photo = photo + 0.6 * soft_blur(bright, 30)[..., None] * [1.0, 1.0, 1.05]
    h, w = photo.shape[:2]
    y, x = np.mgrid[0:h, 0:w]
    gx, gy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.2, 0.5) * h
    glare = np.exp(-((x - gx) ** 2 / (2 * (0.05 * w) ** 2) + (y - gy) ** 2 / (2 * (0.09 * h) ** 2)))
    photo = photo + rng.uniform(0.2, 0.45) * glare[..., None]
    cast = 1 + rng.uniform(-0.06, 0.06, 3) if variant != 2 else np.ones(3)
    photo = ndimage.gaussian_filter(photo * cast * rng.uniform(0.85, 0.95), (0.8, 0.8, 0))
    return finish(photo, rng, noise=0.025, grey=variant == 2, quality=int(rng.integers(80, 92)))
