"""PSNR and SSIM of merged images against unmerged ones, for every image layout we accept."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from pytest_tome.gate.measure.quality import as_batch, image_quality, ssim_window


def noisy(image: np.ndarray, amount: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(image + amount * rng.standard_normal(image.shape), 0.0, 1.0)


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(1).random((2, 16, 16, 3))


def test_identical_images_have_infinite_psnr_and_ssim_one(rgb):
    quality = image_quality(rgb, rgb.copy())
    assert quality.psnr == math.inf
    assert quality.ssim == 1.0
    assert quality.identical


def test_psnr_matches_its_definition_with_data_range_one():
    reference = np.full((8, 8), 0.5)
    quality = image_quality(reference, reference + 0.1)  # MSE 0.01 -> 10 * log10(1 / 0.01)
    assert quality.psnr == pytest.approx(20.0)


@pytest.mark.parametrize(
    "shape", [(16, 16), (3, 16, 16), (16, 16, 1), (16, 16, 3), (2, 16, 16, 3), (2, 16, 16, 4)]
)
def test_every_layout_gives_finite_scores_that_fall_with_more_noise(shape):
    reference = np.random.default_rng(2).random(shape)
    slight, heavy = (
        image_quality(reference, noisy(reference, 0.02)),
        image_quality(reference, noisy(reference, 0.2)),
    )
    assert math.isfinite(slight.psnr) and math.isfinite(heavy.psnr)
    assert slight.psnr > heavy.psnr
    assert 1.0 > slight.ssim > heavy.ssim


@pytest.mark.parametrize(
    ("shape", "batch_shape"),
    [((16, 16), (1, 16, 16, 1)), ((5, 16, 16), (5, 16, 16, 1)), ((16, 16, 3), (1, 16, 16, 3))],
)
def test_layouts_are_read_as_channel_last_batches(shape, batch_shape):
    assert as_batch(np.zeros(shape)).shape == batch_shape


def test_uint8_and_float_versions_of_the_same_images_score_the_same(rgb):
    reference = (rgb * 255).round().astype(np.uint8)
    merged = (noisy(rgb, 0.05) * 255).round().astype(np.uint8)
    as_uint8 = image_quality(reference, merged)
    as_float = image_quality(reference / 255.0, merged / 255.0)
    assert as_uint8.psnr == pytest.approx(as_float.psnr)
    assert as_uint8.ssim == pytest.approx(as_float.ssim)


def test_a_list_of_pil_images_is_accepted(rgb):
    pil = [Image.fromarray((image * 255).round().astype(np.uint8)) for image in rgb]
    array = np.stack([np.asarray(image) for image in pil])
    assert image_quality(pil, pil[::-1]) == image_quality(array, array[::-1])


def test_one_identical_image_does_not_hide_a_loss_in_the_others(rgb):
    merged = rgb.copy()
    merged[1] = noisy(rgb[1], 0.1)
    quality = image_quality(rgb, merged)
    assert quality.psnr_per_image[0] == math.inf
    assert math.isfinite(quality.psnr_per_image[1])
    # PSNR of the MSE pooled over both images: the loss in image 1 shows, halved in MSE (+3 dB).
    pooled_mse = np.mean((rgb - merged) ** 2)
    assert quality.psnr == pytest.approx(10 * math.log10(1 / pooled_mse))
    assert quality.psnr == pytest.approx(quality.psnr_per_image[1] + 10 * math.log10(2))
    assert not quality.identical
    assert quality.ssim == pytest.approx((1.0 + quality.ssim_per_image[1]) / 2)


def test_pooled_psnr_sits_between_the_images_and_is_not_their_mean(rgb):
    merged = np.stack([noisy(rgb[0], 0.02), noisy(rgb[1], 0.2, seed=1)])
    quality = image_quality(rgb, merged)
    low, high = sorted(quality.psnr_per_image)
    assert low < quality.psnr < high
    assert quality.psnr != pytest.approx(np.mean(quality.psnr_per_image))  # the worse one weighs


def test_mismatched_shapes_name_both_shapes(rgb):
    with pytest.raises(ValueError, match=r"\(2, 16, 16, 3\).*\(1, 16, 16, 3\)"):
        image_quality(rgb, rgb[:1])


@pytest.mark.parametrize(
    ("images", "match"),
    [
        (np.full((8, 8), 1.5), r"values in \[1.5, 1.5\]"),
        (np.full((8, 8), np.nan), "NaN"),
        (np.zeros((8, 8), dtype=np.int16), "dtype int16"),
        (np.zeros((1, 1, 8, 8, 3)), "has shape"),
        (np.zeros((2, 8, 8, 2)), "has shape"),
        ([], "empty"),
    ],
)
def test_bad_images_get_a_clear_error(images, match):
    with pytest.raises(ValueError, match=match):
        as_batch(images)


@pytest.mark.parametrize(
    ("size", "window"), [((64, 64), 7), ((7, 9), 7), ((6, 40), 5), ((4, 4), 3), ((3, 5), 3)]
)
def test_the_ssim_window_shrinks_to_fit_small_images(size, window):
    assert ssim_window(*size) == window


def test_tiny_images_get_ssim_with_a_smaller_window():
    reference = np.random.default_rng(3).random((4, 5, 3))
    quality = image_quality(reference, noisy(reference, 0.1))
    assert quality.win_size == 3
    assert 0 < quality.ssim < 1


def test_images_below_three_pixels_are_refused():
    with pytest.raises(ValueError, match="at least 3x3"):
        image_quality(np.zeros((2, 8)), np.zeros((2, 8)))


@given(
    reference=arrays(np.uint8, (2, 8, 8, 3)),
    merged=arrays(np.uint8, (2, 8, 8, 3)),
)
def test_psnr_is_symmetric_and_dtype_independent(reference, merged):
    forward, backward = image_quality(reference, merged), image_quality(merged, reference)
    assert forward.psnr == pytest.approx(backward.psnr)
    assert image_quality(reference / 255.0, merged / 255.0).psnr == pytest.approx(forward.psnr)
    assert forward.identical == np.array_equal(reference, merged)


@given(st.floats(0.0, 1.0))
def test_a_constant_image_against_itself_is_identical(value):
    image = np.full((8, 8, 3), value)
    assert image_quality(image, image).identical
