"""A small vision transformer (ViT, Dosovitskiy et al., ICLR 2021, arXiv 2010.11929) for low-resolution images,
whose attention weights can be read: what TransMix (arXiv 2111.09833) re-weights its targets with.

DeiT's layout (arXiv 2012.12877): a patch embedding, a class token, a learned position embedding, pre-norm blocks
(``x + attn(norm1(x))``, ``x + mlp(norm2(x))``), a final norm and a linear head on the class token. The
attention is computed explicitly (no fused ``scaled_dot_product_attention``), so its weights exist as a tensor.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lightning_mixup.checks import check_bool, check_dropout, check_number, check_positive_int


def _size_pair(name: str, value: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair (height, width), got {value!r}")
        return check_positive_int(name, value[0]), check_positive_int(name, value[1])
    side = check_positive_int(name, value)
    return side, side


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` patches → tokens ``[B, N, dim]`` (a strided convolution), ``N = (H/p)·(W/p)``
    in row-major order over the patch grid."""

    def __init__(self, in_channels: int, dim: int, patch_size: tuple[int, int]) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with its weights in the open.

    The softmax attention ``[B, heads, N, N]`` (row i: how token i attends to every token; token 0 is the class
    token) always goes through the submodule ``attn_drop`` (an ``nn.Dropout``, timm's name), so a forward hook on
    ``attn_drop`` reads the weights before dropout from its input: that is how TransMix
    (:mod:`lightning_mixup.callbacks.transmix`) reads them (``attention_layer="net.blocks.<last>.attn.attn_drop"``).
    With ``keep_attention = True`` the module also stores the last weights, detached, in ``attention``.
    """

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True, attn_dropout: float = 0.0, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} must be a multiple of heads={heads}")
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_dropout)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)
        self.keep_attention = False
        self.attention: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        if self.keep_attention:
            self.attention = attn.detach()
        out = self.attn_drop(attn) @ v
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(batch, tokens, dim)))


class DropPath(nn.Module):
    """Stochastic depth: zero a residual branch for a random subset of samples in training (rate ``p``), scaling the
    others by ``1/(1−p)``."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class Block(nn.Module):
    """A pre-norm transformer block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``."""

    def __init__(
        self,
        dim: int,
        heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        drop_path: float = 0.0,
        qkv_bias: bool = True,
    ) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, qkv_bias, attn_dropout, dropout)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim), nn.Dropout(dropout)
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ViT(nn.Module):
    """A small vision transformer for ``[B, C, H, W]`` images of a fixed size; logits ``[B, num_classes]`` from the
    class token.

    Args:
        in_channels: image channels.
        num_classes: number of classes.
        image_size: the images' side (or ``(height, width)``); each must be a multiple of ``patch_size``.
        patch_size: the patches' side (or ``(height, width)``): ``N = (H/p)·(W/p)`` patch tokens plus the class token.
        dim: token width; ``heads`` must divide it.
        depth: number of blocks.
        heads: attention heads.
        mlp_ratio: hidden width of the MLP ÷ ``dim``.
        dropout: dropout after the position embedding, in the MLP and after the attention projection.
        attn_dropout: dropout on the attention weights (the ``attn_drop`` submodules).
        drop_path: stochastic depth rate of the last block (linearly from 0 at the first block, as DeiT).
        qkv_bias: a bias in the query/key/value projection.

    Submodules, in order: ``patch_embed``, ``blocks`` (an ``nn.Sequential``: ``blocks.0`` … ``blocks.{depth−1}``, each
    with ``attn`` (its ``attn_drop`` sees the softmax attention ``[B, heads, N+1, N+1]``) and ``mlp``), ``norm``,
    ``head``; parameters ``cls_token`` ``[1, 1, dim]`` and ``pos_embed`` ``[1, N+1, dim]``. The last block's attention
    is ``blocks.{depth−1}.attn.attn_drop`` (the layer TransMix hooks; :attr:`last_attention_layer` gives its name).

    Example:
        >>> import torch
        >>> net = ViT(in_channels=1, num_classes=10, image_size=8, patch_size=2, dim=32, depth=2, heads=4)
        >>> net(torch.randn(4, 1, 8, 8)).shape
        torch.Size([4, 10])
        >>> net.last_attention_layer, net.grid
        ('blocks.1.attn.attn_drop', (4, 4))
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int | tuple[int, int] = 8,
        patch_size: int | tuple[int, int] = 2,
        dim: int = 64,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        drop_path: float = 0.0,
        qkv_bias: bool = True,
    ) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("num_classes", num_classes)
        size, patch = _size_pair("image_size", image_size), _size_pair("patch_size", patch_size)
        if size[0] % patch[0] or size[1] % patch[1]:
            raise ValueError(f"image_size={image_size!r} must be a multiple of patch_size={patch_size!r}")
        check_positive_int("dim", dim)
        check_positive_int("depth", depth)
        check_positive_int("heads", heads)
        if dim % heads:
            raise ValueError(f"dim={dim} must be a multiple of heads={heads}")
        check_number("mlp_ratio", mlp_ratio, 0.0, open_low=True)
        check_dropout(dropout)
        check_dropout(attn_dropout)
        check_dropout(drop_path)
        check_bool("qkv_bias", qkv_bias)
        self.image_size, self.patch_size = size, patch
        self.grid = (size[0] // patch[0], size[1] // patch[1])
        tokens = self.grid[0] * self.grid[1] + 1
        self.patch_embed = PatchEmbed(in_channels, dim, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, dim))
        self.pos_drop = nn.Dropout(dropout)
        rates = [drop_path * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.Sequential(
            *(Block(dim, heads, mlp_ratio, dropout, attn_dropout, rate, qkv_bias) for rate in rates)
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self._init_weights()

    @property
    def last_attention_layer(self) -> str:
        """The name (relative to this net) of the module whose input is the last block's softmax attention."""
        return f"blocks.{len(self.blocks) - 1}.attn.attn_drop"

    def _init_weights(self) -> None:
        """timm's/DeiT's: truncated normal (std 0.02) for the embeddings and linear weights, zero biases, unit norms."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        fan_in = math.prod(self.patch_embed.proj.weight.shape[1:])
        nn.init.trunc_normal_(self.patch_embed.proj.weight, std=math.sqrt(1.0 / fan_in))

    def forward(self, x: Tensor) -> Tensor:
        """Map images ``[B, C, H, W]`` of ``image_size`` to logits ``[B, num_classes]``."""
        if tuple(x.shape[2:]) != self.image_size:
            raise ValueError(f"ViT was built for {list(self.image_size)} images, got input shape {list(x.shape)}")
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), tokens], dim=1)
        tokens = self.blocks(self.pos_drop(tokens + self.pos_embed))
        return self.head(self.norm(tokens)[:, 0])
