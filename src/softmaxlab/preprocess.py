"""What happens to images between the dataset and the model: standardisation and augmentation."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Standardizer:
    """Per-pixel standardisation fitted on the training split: (x - mean) / std.

    mean, std: float32 of the image shape (H, W); a pixel with (near) zero spread gets std 1.
    """

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def fit(cls, images: torch.Tensor, chunk: int = 256) -> Standardizer:
        """images uint8 (N, H, W) -> the Standardizer of their [0, 1] values."""
        return cls.from_sums(cls.sums(images, chunk), images.shape[1:])

    @staticmethod
    def sums(images: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        """float64 (2 D + 1,): the sums of the pixel values, of their squares, and the count.

        Exact (integers in float64), so the sums of several parts (processes) add up to the
        whole's; taken over chunks small enough to stay in cache (3x faster than large ones).
        """
        n, d = len(images), images.shape[1:].numel()
        s = torch.zeros(d, dtype=torch.float64, device=images.device)
        s2 = torch.zeros_like(s)
        for i in range(0, n, chunk):
            # flattened chunk by chunk: a view of contiguous images, a chunk-sized copy of a
            # strided view (EMNIST's transposed images), never a copy of them all
            x = images[i:i + chunk].reshape(-1, d).to(torch.float64)
            s += x.sum(0)
            s2 += (x * x).sum(0)
        return torch.cat([s, s2, s.new_tensor([n])])

    @classmethod
    def from_sums(cls, sums: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> Standardizer:
        """The Standardizer of the images whose ``sums`` (see ``sums``) these are."""
        d = (len(sums) - 1) // 2
        s, s2, n = sums[:d], sums[d:2 * d], float(sums[-1])
        mean = s / (255.0 * n)
        std = (s2 / (255.0 * 255.0 * n) - mean * mean).clamp_min(0).sqrt()
        std = torch.where(std < 1e-3, torch.ones_like(std), std)
        return cls(mean.float().reshape(shape), std.float().reshape(shape))

    def __post_init__(self) -> None:
        # (x - mean) / std as one fused multiply-add: x * (1 / std) + (-mean / std)
        self._scale = 1.0 / self.std
        self._shift = -self.mean / self.std
        self._scale_counts = self._scale / 255.0  # for pixel values 0-255: x / 255 folded in

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        """X float (B, 1, H, W) in [0, 1] -> a new standardised tensor of the same shape."""
        return torch.addcmul(self._shift, X, self._scale)

    def apply_(self, X: torch.Tensor) -> torch.Tensor:
        """``self(X)`` written into X itself (one pass, no allocation); returns X."""
        return torch.addcmul(self._shift, X, self._scale, out=X)

    def apply_counts_(self, X: torch.Tensor) -> torch.Tensor:
        """``self(X / 255)`` for float X holding pixel values 0-255, in place in one pass (the
        scaling folded into the multiply-add; it rounds differently from x / 255 by an ulp)."""
        return torch.addcmul(self._shift, X, self._scale_counts, out=X)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean, "std": self.std}


def shift_batch(X: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Augmentation: shift each image of X (B, 1, H, W) by -1, 0 or +1 pixel in x and y.

    The shifts are drawn from ``generator`` (on the CPU); the result is a new tensor.
    """
    B, C, H, W = X.shape
    shifts = torch.randint(0, 3, (B, 2), generator=generator, device="cpu").to(X.device)
    padded = torch.nn.functional.pad(X, (1, 1, 1, 1))  # (B, C, H + 2, W + 2), zeros around
    dev = X.device
    rows = (torch.arange(H, device=dev).unsqueeze(0) + shifts[:, :1]).view(B, 1, H, 1)
    cols = (torch.arange(W, device=dev).unsqueeze(0) + shifts[:, 1:]).view(B, 1, 1, W)
    return padded[torch.arange(B, device=dev).view(B, 1, 1, 1),
                  torch.arange(C, device=dev).view(1, C, 1, 1), rows, cols]
