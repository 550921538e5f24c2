"""DF: DeepFaceLab's "DeepFake" autoencoder (SAEHD ``archi = df[-udtc]``).

One encoder and one inter shared by both identities, and one decoder per identity::

    src -> encoder -> inter -> decoder_src -> src image + mask
    dst -> encoder -> inter -> decoder_dst -> dst image + mask
    swap: dst -> encoder -> inter -> decoder_src  (the src decoder draws the dst's pose and expression)

Because the code is shared, the decoder_src learns to draw *any* code as the src person: the swap keeps more
of the src identity than LIAE, but copes worse when src and dst faces differ in lighting or shape.
"""

from __future__ import annotations

import torch
from torch import nn

from workbench.models.blocks import Decoder, Encoder, Inter, glorot_init_
from workbench.models.config import ModelConfig

_IDENTITIES = ("src", "dst")


def _check_identity(identity: str) -> str:
    if identity not in _IDENTITIES:
        raise ValueError(f"identity must be 'src' or 'dst', got {identity!r}")
    return identity


class DF(nn.Module):
    """DF autoencoder: shared encoder + inter, ``decoder_src`` and ``decoder_dst``.

    Args:
        config: a `ModelConfig` with ``archi == "df"``.

    Example:
        >>> cfg = ModelConfig.from_archi_string("df-ud", resolution=32, ae_dims=16, e_dims=8, d_dims=8, d_mask_dims=8)
        >>> out = DF(cfg)(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32))
        >>> tuple(out["src_dst"].shape), tuple(out["src_dst_mask"].shape)
        ((2, 3, 32, 32), (2, 1, 32, 32))
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.archi != "df":
            raise ValueError(f"DF needs a 'df' config, got {config.archi_string!r}")
        self.config = config
        letters, res = config.letters, config.resolution
        t, d, cos = "t" in letters, "d" in letters, "c" in letters
        self.encoder = Encoder(3, config.e_dims, t_variant=t, use_pixel_norm="u" in letters, cos_act=cos)
        flat = self.encoder.out_ch * self.encoder.out_res(res) ** 2
        self.inter = Inter(flat, config.ae_dims, config.ae_dims, config.inter_res, upscale=not t, cos_act=cos)
        dec = dict(t_variant=t, d_variant=d, cos_act=cos)
        self.decoder_src = Decoder(self.inter.out_ch, config.d_dims, config.d_mask_dims, **dec)
        self.decoder_dst = Decoder(self.inter.out_ch, config.d_dims, config.d_mask_dims, **dec)
        glorot_init_(self)

    @property
    def code_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the code the decoders consume (the TrueFace code discriminator's input)."""
        return (self.inter.out_ch, self.inter.out_res, self.inter.out_res)

    # ---- training forward -----------------------------------------------------------------------------------
    def forward(
        self, warped_src: torch.Tensor, warped_dst: torch.Tensor, return_codes: bool = False, with_swap: bool = True
    ) -> dict[str, torch.Tensor]:
        """Reconstructions and the swap for one training batch (both sides through the encoder in one batch).

        Args:
            warped_src, warped_dst: (B, 3, res, res) in [0, 1] (batch sizes may differ).
            return_codes: also return ``"src_code"`` / ``"dst_code"`` (for the TrueFace code discriminator).
            with_swap: also decode the swap (``src_dst``); training skips it when no loss reads it.

        Returns:
            ``src_src``, ``dst_dst``, ``src_dst`` (swap): (B, 3, res, res) in [0, 1]; each with a ``*_mask``
            (B, 1, res, res) in [0, 1].
        """
        n_src = warped_src.shape[0]
        codes = self.inter(self.encoder(torch.cat([warped_src, warped_dst], 0)))  # (Bs+Bd, C, r, r)
        src_code, dst_code = codes[:n_src], codes[n_src:]
        # decoder_src on [src_code; dst_code] gives src_src and the swap; on src_code alone without the swap
        img, mask = self.decoder_src(codes if with_swap else src_code)
        dst_dst, dst_dst_mask = self.decoder_dst(dst_code)
        out = {"src_src": img[:n_src], "src_src_mask": mask[:n_src], "dst_dst": dst_dst, "dst_dst_mask": dst_dst_mask}
        if with_swap:
            out["src_dst"], out["src_dst_mask"] = img[n_src:], mask[n_src:]
        if return_codes:
            out["src_code"], out["dst_code"] = src_code, dst_code
        return out

    # ---- inference / teaching API ---------------------------------------------------------------------------
    def encode(self, x: torch.Tensor, identity: str) -> torch.Tensor:
        """The code the decoder of ``identity`` reconstructs ``x`` from: inter(encoder(x)) for both identities."""
        _check_identity(identity)
        return self.inter(self.encoder(x))  # (B, ae, 2R, 2R)

    def swap_code(self, x_dst: torch.Tensor) -> torch.Tensor:
        """Code of a dst face to be drawn by decoder_src: the same inter(encoder(x)) as `encode`."""
        return self.inter(self.encoder(x_dst))

    def decode(self, code: torch.Tensor, identity: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(image (B,3,res,res), mask (B,1,res,res)) from ``decoder_src`` or ``decoder_dst``."""
        decoder = self.decoder_src if _check_identity(identity) == "src" else self.decoder_dst
        return decoder(code)

    def swap(self, x_dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The face swap: decoder_src(inter(encoder(dst))) -> (image, mask)."""
        return self.decoder_src(self.swap_code(x_dst))

    def swap_with_dst_mask(self, x_dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What the merger needs in one pass: (swap image, swap mask, dst-decoder mask of the dst face).

        The code is computed once and decoder_dst runs only its mask path (about half the work of
        calling ``swap`` and ``decode(encode(x, "dst"), "dst")``).
        """
        code = self.swap_code(x_dst)
        image, mask = self.decoder_src(code)
        return image, mask, self.decoder_dst.mask(code)

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ae_dims): the inter's first dense output, the narrowest point (for PCA / interpolation)."""
        return self.inter.bottleneck(self.encoder(x))

    def code_from_bottleneck(self, z: torch.Tensor, identity: str) -> torch.Tensor:
        """Inverse direction of `bottleneck`: a (B, ae_dims) vector -> the code map `decode` takes."""
        _check_identity(identity)
        return self.inter.expand(z)

    # ---- training helpers -----------------------------------------------------------------------------------
    def reinit_inter(self, generator: torch.Generator | None = None) -> None:
        """Re-initialise the inter (glorot, zero bias), as DFL does when pretraining is switched off."""
        glorot_init_(self.inter, generator)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by sub-network: ``encoder``, ``inter``, ``decoder_src``, ``decoder_dst``."""
        return {
            "encoder": list(self.encoder.parameters()),
            "inter": list(self.inter.parameters()),
            "decoder_src": list(self.decoder_src.parameters()),
            "decoder_dst": list(self.decoder_dst.parameters()),
        }
