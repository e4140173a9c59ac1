"""Scan normalisation on synthetic inputs: polarity, position, aspect, blanks, every mode and format."""

import io

import numpy as np
import pytest
from PIL import Image

from batchclf.scan import decode

from batchclf.scan import preprocess

from .helpers import centre_of_mass


def paper_with_ink(h=200, w=160, box=(60, 140, 50, 90), ink=0.1, paper=0.95):
    """Dark ink rectangle outline (a '0'-like ring) on light paper."""
    gray = np.full((h, w), paper, np.float32)
    top, bottom, left, right = box
    gray[top:bottom, left:right] = ink
    gray[top + 12 : bottom - 12, left + 12 : right - 12] = paper
    return gray


def assert_the_ring(out, atol=1.0, sides=True):
    """Fixed properties of :func:`paper_with_ink`'s 80x40 ring (stroke 12) in MNIST form, known in advance:
    20 px tall and 10 wide, centred by mass, a dark hole down the middle inside a bright ring."""
    assert out is not None and out.shape == (28, 28)
    rows = np.flatnonzero(out.max(axis=1) > 0.05)
    cols = np.flatnonzero(out.max(axis=0) > 0.05)
    assert 19 <= rows[-1] - rows[0] + 1 <= 21 and 9 <= cols[-1] - cols[0] + 1 <= 12
    cy, cx = centre_of_mass(out)
    assert abs(cy - 13.5) <= atol and abs(cx - 13.5) <= atol
    assert out[9:19, 13:15].max() < 0.3  # the hole
    if sides:  # a stroke 3/20 of the ring's height: 1.5 px after the fit, on columns 10-11 and 16-17
        assert out[9:19, 10:12].min() > 0.6 and out[9:19, 16:18].min() > 0.6
    assert out[0].max() == 0 and out[:, 0].max() == 0  # black background


def test_output_is_mnist_form():
    out = preprocess.normalize(paper_with_ink())
    assert out.shape == (28, 28) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert out.max() > 0.9  # strokes are bright
    assert out[0].max() == 0 and out[:, 0].max() == 0  # background black


def test_fits_20px_box_keeping_aspect_and_centres_by_mass():
    out = preprocess.normalize(paper_with_ink(box=(40, 160, 60, 100)))  # 120 tall, 40 wide
    rows = np.flatnonzero(out.max(axis=1) > 0.05)
    cols = np.flatnonzero(out.max(axis=0) > 0.05)
    assert 19 <= rows[-1] - rows[0] + 1 <= 21
    assert 6 <= cols[-1] - cols[0] + 1 <= 9  # 20 * 40/120, plus anti-aliasing
    cy, cx = centre_of_mass(out)
    assert abs(cy - 13.5) < 1.0 and abs(cx - 13.5) < 1.0


def test_off_centre_digit_lands_in_the_middle():
    centred = preprocess.normalize(paper_with_ink(h=300, w=300, box=(120, 180, 130, 170)))
    corner = preprocess.normalize(paper_with_ink(h=300, w=300, box=(5, 65, 240, 280)))
    assert_the_ring(preprocess.normalize(paper_with_ink(h=300, w=300, box=(120, 200, 130, 170))))
    assert_the_ring(preprocess.normalize(paper_with_ink(h=300, w=300, box=(5, 85, 240, 280))))
    assert np.abs(centred - corner).mean() < 0.02


def test_polarity_light_ink_on_dark_matches_dark_on_light():
    dark_on_light = paper_with_ink()
    light_on_dark = 1.0 - dark_on_light
    assert_the_ring(preprocess.normalize(light_on_dark))
    np.testing.assert_allclose(preprocess.normalize(dark_on_light), preprocess.normalize(light_on_dark), atol=0.02)


def test_uneven_lighting_and_noise_are_removed():
    rng = np.random.default_rng(0)
    gray = paper_with_ink()
    gradient = np.linspace(0.0, 0.35, gray.shape[1])[None, :]
    noisy = np.clip(gray - gradient + rng.normal(0, 0.03, gray.shape), 0, 1).astype(np.float32)
    clean = preprocess.normalize(gray)
    assert_the_ring(preprocess.normalize(noisy))
    assert np.abs(preprocess.normalize(noisy) - clean).mean() < 0.05


def test_specks_are_ignored_for_the_bounding_box():
    gray = paper_with_ink()
    gray[5:7, 5:7] = 0.0  # a speck of dust far from the digit
    gray[190:192, 150:152] = 0.0
    assert_the_ring(preprocess.normalize(gray))
    np.testing.assert_allclose(preprocess.normalize(gray), preprocess.normalize(paper_with_ink()), atol=0.02)


def test_grid_line_at_the_edge_is_ignored():
    gray = paper_with_ink()
    gray[:, 0:2] = 0.2  # a ruled line left by cutting the cell
    assert_the_ring(preprocess.normalize(gray))
    np.testing.assert_allclose(preprocess.normalize(gray), preprocess.normalize(paper_with_ink()), atol=0.03)


@pytest.mark.parametrize("value", [0.0, 0.5, 1.0])
def test_blank_pages(value):
    assert preprocess.normalize(np.full((100, 80), value, np.float32)) is None


def test_paper_grain_alone_is_blank():
    rng = np.random.default_rng(1)
    assert preprocess.normalize(np.clip(0.9 + rng.normal(0, 0.02, (120, 120)), 0, 1).astype(np.float32)) is None


def test_mnist_form_passes_through_unchanged(mnist):
    digit = mnist.x_test[0].astype(np.float32) / 255.0
    np.testing.assert_array_equal(preprocess.normalize(digit), digit)


def test_thin_pen_is_thickened_to_mnist_strokes():
    gray = np.full((400, 400), 0.95, np.float32)
    gray[50:350, 198:201] = 0.1  # a 3 px line on a 300 px tall digit
    out = preprocess.normalize(gray)
    widths = (out[6:22] > 0.3).sum(axis=1)
    assert widths.mean() >= 1.5


def test_mnist_to_input_shapes():
    x = preprocess.mnist_to_input(np.zeros((3, 28, 28), np.uint8) + 255)
    assert x.shape == (3, 28, 28, 1) and x.dtype == np.float32 and x.max() == 1.0


def encode(image, fmt, **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def ring_image(mode="L"):
    gray = (paper_with_ink() * 255).astype(np.uint8)
    image = Image.fromarray(gray, "L")
    # A bilevel scanner thresholds; it does not dither paper into dots.
    return image.convert(mode, dither=Image.Dither.NONE) if mode == "1" else image.convert(mode)


REFERENCE = None


def reference():
    global REFERENCE
    if REFERENCE is None:
        REFERENCE = preprocess.normalize(paper_with_ink())
    assert_the_ring(REFERENCE)  # anchored to known properties, so "alike" cannot mean "alike and wrong"
    return REFERENCE


@pytest.mark.parametrize(
    "mode,fmt",
    [
        ("L", "PNG"), ("RGB", "JPEG"), ("RGB", "PNG"), ("1", "PNG"), ("P", "GIF"), ("RGB", "BMP"),
        ("L", "TIFF"), ("RGB", "WEBP"), ("L", "PPM"), ("RGBA", "PNG"), ("LA", "PNG"), ("CMYK", "JPEG"),
        ("CMYK", "TIFF"), ("I", "TIFF"), ("F", "TIFF"), ("I;16", "PNG"),
    ],
)
def test_every_mode_and_format_normalises_alike(mode, fmt):
    if mode == "I;16":
        array = (paper_with_ink() * 65535).astype(np.uint16)
        image = Image.fromarray(array)
    elif mode == "F":
        image = Image.fromarray(paper_with_ink(), "F")
    elif mode == "I":
        image = Image.fromarray((paper_with_ink() * 255).astype(np.int32))
    else:
        image = ring_image(mode)
    pages = decode.decode_bytes(encode(image, fmt))
    assert len(pages) == 1 and pages[0].width == 160 and pages[0].height == 200
    out = preprocess.normalize(pages[0].gray)
    tolerance = 0.06 if fmt in ("JPEG", "WEBP") or mode == "1" else 0.03
    assert np.abs(out - reference()).mean() < tolerance


def test_transparent_background_is_white():
    alpha = (255 - paper_with_ink() * 255).astype(np.uint8)  # ink opaque, paper transparent
    rgba = np.zeros((200, 160, 4), np.uint8)
    rgba[..., 3] = alpha
    out = preprocess.normalize(decode.decode_bytes(encode(Image.fromarray(rgba, "RGBA"), "PNG"))[0].gray)
    assert np.abs(out - reference()).mean() < 0.03


def test_palette_with_transparency():
    image = ring_image("RGB").convert("P")
    data = encode(image, "PNG", transparency=0)
    assert_the_ring(preprocess.normalize(decode.decode_bytes(data)[0].gray))


def test_multipage_tiff_yields_each_page():
    first, second = ring_image(), Image.new("L", (90, 90), 240)
    buffer = io.BytesIO()
    first.save(buffer, "TIFF", save_all=True, append_images=[second])
    pages = decode.decode_bytes(buffer.getvalue())
    assert [p.index for p in pages] == [0, 1]
    assert_the_ring(preprocess.normalize(pages[0].gray))
    assert preprocess.normalize(pages[1].gray) is None


def test_exif_orientation_is_applied():
    image = ring_image().transpose(Image.Transpose.ROTATE_90)  # stored sideways: 200 wide, 160 tall
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    pages = decode.decode_bytes(encode(image, "JPEG", exif=exif.tobytes()))
    assert pages[0].gray.shape == (200, 160)


def test_large_jpeg_is_drafted_small():
    big = ring_image().resize((1600, 2000))
    pages = decode.decode_bytes(encode(big, "JPEG"))
    assert pages[0].width == 1600 and pages[0].height == 2000
    assert max(pages[0].gray.shape) <= 2 * decode.DECODE_MAX_SIDE
    out = preprocess.normalize(pages[0].gray)
    assert np.abs(out - reference()).mean() < 0.06


def bold_zero_filling_its_frame(side=16, stroke=0.28):
    """A thick ring cropped to its own edges, as form readers and the USPS set cut digits: nearly half ink."""
    yy, xx = (np.mgrid[0:side, 0:side] + 0.5) / side - 0.5
    radius = np.hypot(yy / 0.5, xx / 0.42)
    gray = np.ones((side, side), np.float32)
    gray[(radius <= 1.0) & (radius >= 1.0 - 2 * stroke)] = 0.05
    return gray


@pytest.mark.parametrize("side", [16, 28, 64, 200])
def test_bold_tightly_cropped_digit_is_not_blank(side):
    out = preprocess.normalize(bold_zero_filling_its_frame(side))
    assert out is not None
    assert out[14, 14] < 0.2 and out[14, 6:22].max() > 0.8  # a hole in the middle, ink on the ring


def fine_faint_one(side=420, width=2, contrast=0.3, seed=0):
    """A '1' drawn with a fine, faint pen on a large noisy page."""
    rng = np.random.default_rng(seed)
    gray = np.full((side, side), 0.9, np.float32)
    gray[side // 4 : 3 * side // 4, side // 2 : side // 2 + width] -= contrast
    gray[side // 4 : side // 4 + width, side // 2 - side // 10 : side // 2] -= contrast
    return (np.clip(gray + rng.normal(0, 0.02, gray.shape), 0, 1) * 255).round().astype(np.uint8)


def test_fine_faint_pen_on_a_large_page_is_not_blank():
    # Box-averaged to the small working size the line fades below the ink threshold;
    # the page is looked at again at the finer size before it is called blank.
    out = preprocess.normalize(fine_faint_one())
    assert out is not None
    rows = np.flatnonzero(out.max(axis=1) > 0.05)
    assert 19 <= rows[-1] - rows[0] + 1 <= 21  # the stroke fills the box's height: a "1", not a speck
    assert np.count_nonzero(out > 0.3) >= 20


def test_small_working_size_matches_the_analysis_at_the_fit_size(monkeypatch):
    page = (paper_with_ink(h=400, w=320, box=(120, 280, 100, 180)) * 255).astype(np.uint8)
    small = preprocess.normalize(page)
    monkeypatch.setattr(preprocess, "WORK_MIN_SIDE", preprocess.FIT_MAX_SIDE)
    fine = preprocess.normalize(page)
    assert preprocess._work_factor(page.shape) == 2  # now analysed whole at 200 x 160 px
    assert_the_ring(small, sides=False)  # a thinner ring (stroke 12 of 160 px) than the default one
    assert_the_ring(fine, sides=False)
    assert np.abs(small - fine).mean() < 0.02


def test_pages_up_to_twice_the_working_size_are_analysed_whole():
    assert preprocess._work_factor((2 * preprocess.WORK_MIN_SIDE - 1, 90)) == 1
    assert preprocess._work_factor((300, 350)) == 350 // preprocess.WORK_MIN_SIDE


def test_quantiles_match_numpy():
    rng = np.random.default_rng(3)
    for n in (1, 2, 7, 100, 1001):
        values = rng.normal(size=n).astype(np.float32)
        np.testing.assert_allclose(preprocess._quantiles(values, (0.5, 50, 99.8)), np.percentile(values, [0.5, 50, 99.8]), rtol=1e-6)
        levels = rng.integers(0, 4000, n)
        np.testing.assert_allclose(preprocess._count_quantiles(np.bincount(levels), (0.5, 50, 99.5)), np.percentile(levels, [0.5, 50, 99.5]))


def test_jpeg_is_decoded_grey_at_the_smallest_scale_that_keeps_the_fit_size():
    big = ring_image("RGB").resize((480, 600))
    pages = decode.decode_bytes(encode(big, "JPEG", quality=95))
    assert (pages[0].width, pages[0].height) == (480, 600)  # the size in the file
    assert max(pages[0].gray.shape) >= decode.DRAFT_MIN_SIDE and max(pages[0].gray.shape) < 2 * decode.DRAFT_MIN_SIDE
    assert np.abs(preprocess.normalize(pages[0].gray) - reference()).mean() < 0.06


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_png_fast_path_gives_pillows_grey_levels(mode, monkeypatch):
    if decode.spng is None:
        pytest.skip("pyspng not installed: every PNG goes through Pillow")
    rng = np.random.default_rng(5)
    image = Image.fromarray(rng.integers(0, 256, (300, 260, 3), dtype=np.uint8)).convert(mode)
    data = encode(image, "PNG")
    fast = decode.decode_bytes(data)
    monkeypatch.setattr(decode, "spng", None)
    slow = decode.decode_bytes(data)
    assert [(p.width, p.height) for p in fast] == [(p.width, p.height) for p in slow]
    np.testing.assert_array_equal(fast[0].gray, slow[0].gray)
