"""A small convolutional generator and discriminator for low-resolution images (the bundled 8×8 digits).

The mixup paper's fully connected pair (arXiv 1710.09412, §3.7: three hidden layers of 512 ReLU units)
needs no class of its own: it is :class:`~lightning_mixup.models.nets.MLP` with ``in_features=2``
(noise) and ``num_classes=2`` (a point) for the generator, ``in_features=2`` and ``num_classes=1``
(a logit) for the discriminator (``conf/gan_net/mlp.yaml``).
"""

from __future__ import annotations

from torch import Tensor, nn

from lightning_mixup.checks import check_positive_int


def _check_image_size(image_size: object) -> int:
    check_positive_int("image_size", image_size)
    if image_size % 4:
        raise ValueError(f"image_size must be a multiple of 4 (two stride-2 stages), got {image_size!r}")
    return image_size


class ConvGenerator(nn.Module):
    """Noise ``[B, latent_dim]`` to images ``[B, channels, image_size, image_size]`` in ``[0, 1]``.

    A linear layer to ``2·width`` maps of side ``image_size / 4``, then two stride-2 transposed
    convolutions (``width`` channels, then ``channels``) and a sigmoid, as in DCGAN without batch norm.

    Example:
        >>> import torch
        >>> ConvGenerator(latent_dim=16, image_size=8)(torch.randn(4, 16)).shape
        torch.Size([4, 1, 8, 8])
    """

    def __init__(self, latent_dim: int = 32, channels: int = 1, image_size: int = 8, width: int = 64) -> None:
        super().__init__()
        check_positive_int("latent_dim", latent_dim)
        check_positive_int("channels", channels)
        check_positive_int("width", width)
        side = _check_image_size(image_size) // 4
        self.project = nn.Sequential(
            nn.Linear(latent_dim, 2 * width * side * side), nn.ReLU(), nn.Unflatten(1, (2 * width, side, side))
        )
        self.up1 = nn.Sequential(nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1), nn.ReLU())
        self.up2 = nn.Sequential(nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1), nn.Sigmoid())

    def forward(self, z: Tensor) -> Tensor:
        """Map noise ``[B, latent_dim]`` to images."""
        return self.up2(self.up1(self.project(z)))


class ConvDiscriminator(nn.Module):
    """Images ``[B, channels, image_size, image_size]`` to one logit per image ``[B, 1]``.

    Two stride-2 convolutions (``width`` then ``2·width`` channels, LeakyReLU 0.2) and a linear head.

    Example:
        >>> import torch
        >>> ConvDiscriminator(image_size=8)(torch.rand(4, 1, 8, 8)).shape
        torch.Size([4, 1])
    """

    def __init__(self, channels: int = 1, image_size: int = 8, width: int = 64) -> None:
        super().__init__()
        check_positive_int("channels", channels)
        check_positive_int("width", width)
        side = _check_image_size(image_size) // 4
        self.down1 = nn.Sequential(nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2))
        self.down2 = nn.Sequential(nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.LeakyReLU(0.2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * side * side, 1))

    def forward(self, x: Tensor) -> Tensor:
        """Map images to logits ``[B, 1]`` (real: high)."""
        return self.head(self.down2(self.down1(x)))
