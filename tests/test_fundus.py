import numpy as np

from medrecontrast.data.fundus import crop_fundus, fundus_box


def disk_photo(height=300, width=400, cy=150, cx=220, radius=100):
    yy, xx = np.mgrid[:height, :width]
    photo = np.zeros((3, height, width), dtype=np.float32)
    photo[0][(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = 0.8
    photo[:, 0, 0] = 1.0  # a bright speck in the corner: not the largest region
    return photo


def test_box_is_a_square_around_the_centroid_with_margin():
    top, left, side = fundus_box(disk_photo())
    assert side == 201 + 2 * 5
    assert abs(top + side / 2 - 150) <= 1 and abs(left + side / 2 - 220) <= 1


def test_crop_removes_the_border_and_resizes():
    cropped = crop_fundus(disk_photo(), size=64)
    assert cropped.shape == (3, 64, 64)
    red = cropped[0] > 0.4
    rows, cols = np.nonzero(red)
    # the disk now fills the square, up to the 5 px margin (1.5 px at this scale)
    assert rows.min() <= 3 and cols.min() <= 3 and rows.max() >= 60 and cols.max() >= 60
    assert abs(rows.mean() - 31.5) < 1 and abs(cols.mean() - 31.5) < 1


def test_crop_pads_with_zeros_where_the_square_leaves_the_photo():
    photo = disk_photo(height=120, width=300, cy=60, cx=150, radius=100)  # disk cut at top and bottom
    top, left, side = fundus_box(photo)
    assert top < 0  # the square reaches above the photo
    cropped = crop_fundus(photo, size=100)
    assert cropped[:, :5].max() == 0.0 and cropped[:, -5:].max() == 0.0


def test_dark_image_is_only_resized():
    assert fundus_box(np.zeros((3, 10, 10), dtype=np.float32)) is None
    assert crop_fundus(np.zeros((3, 10, 20), dtype=np.float32), size=8).shape == (3, 8, 8)
