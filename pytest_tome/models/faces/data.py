"""The training faces: the 100 face patches of scikit-image's `lfw_subset`, and their mirrors.

scikit-image ships them in its wheel (`skimage/data/lfw_subset.npy`), so nothing is downloaded.
"""

from __future__ import annotations

import torch

FACES = 100  # lfw_subset(): the first 100 of its 200 patches are faces, the rest are not


def face_images(size: int) -> torch.Tensor:
    """The 100 faces and their mirror images, [200, 3, size, size] in [-1, 1], gray in 3 channels.

    The 25x25 patches are upscaled bilinearly (with antialiasing) to the models' resolution.
    """
    from skimage.data import lfw_subset

    faces = torch.from_numpy(lfw_subset()[:FACES]).float().unsqueeze(1)  # [100, 1, 25, 25]
    faces = torch.cat([faces, faces.flip(-1)])
    faces = torch.nn.functional.interpolate(
        faces, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    return (faces.clamp(0, 1) * 2 - 1).expand(-1, 3, -1, -1).contiguous()
