"""LIAE: DeepFaceLab's "Lightweight Intermediate AutoEncoder" (SAEHD ``archi = liae[-udtc]``).

One encoder, two inters and a single decoder::

    src code = [inter_AB(enc(src)), inter_AB(enc(src))]
    dst code = [inter_B(enc(dst)),  inter_AB(enc(dst))]
    swap     = decoder([inter_AB(enc(dst)), inter_AB(enc(dst))])   (a dst face coded "the src way")

``inter_AB`` sees both identities and ``inter_B`` only dst, so the code splits into a shared part and a
dst-only part; the decoder learns to draw the src identity when the dst-only half is replaced by the shared
half. LIAE follows the dst's lighting and face shape better than DF but keeps less of the src likeness.
When random warp is off DFL freezes ``inter_AB`` (not in the trainable list); see `LIAE.parameter_groups`.
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


class LIAE(nn.Module):
    """LIAE autoencoder: shared encoder, ``inter_AB`` and ``inter_B`` (each 2·ae_dims channels), one ``decoder``.

    Args:
        config: a `ModelConfig` with ``archi == "liae"``.

    Example:
        >>> cfg = ModelConfig.from_archi_string("liae-ud", resolution=32, ae_dims=16, e_dims=8, d_dims=8,
        ...                                     d_mask_dims=8)
        >>> image, mask = LIAE(cfg).swap(torch.rand(2, 3, 32, 32))
        >>> tuple(image.shape), tuple(mask.shape)
        ((2, 3, 32, 32), (2, 1, 32, 32))
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.archi != "liae":
            raise ValueError(f"LIAE needs a 'liae' config, got {config.archi_string!r}")
        self.config = config
        letters, res = config.letters, config.resolution
        t, d, cos = "t" in letters, "d" in letters, "c" in letters
        self.encoder = Encoder(3, config.e_dims, t_variant=t, use_pixel_norm="u" in letters, cos_act=cos)
        flat = self.encoder.out_ch * self.encoder.out_res(res) ** 2
        inter = dict(upscale=not t, cos_act=cos)
        self.inter_AB = Inter(flat, config.ae_dims, config.ae_dims * 2, config.inter_res, **inter)
        self.inter_B = Inter(flat, config.ae_dims, config.ae_dims * 2, config.inter_res, **inter)
        self.decoder = Decoder(
            self.inter_AB.out_ch * 2, config.d_dims, config.d_mask_dims, t_variant=t, d_variant=d, cos_act=cos
        )
        glorot_init_(self)

    @property
    def code_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the code the decoder consumes: 4·ae_dims channels."""
        return (self.inter_AB.out_ch * 2, self.inter_AB.out_res, self.inter_AB.out_res)

    # ---- training forward -----------------------------------------------------------------------------------
    def forward(
        self, warped_src: torch.Tensor, warped_dst: torch.Tensor, return_codes: bool = False, with_swap: bool = True
    ) -> dict[str, torch.Tensor]:
        """Reconstructions and the swap for one training batch.

        Both sides go through the encoder together and through the decoder together (one batch each), so
        every convolution sees the larger batch, which a CPU runs more efficiently than two half batches.

        Args:
            warped_src, warped_dst: (B, 3, res, res) in [0, 1] (batch sizes may differ).
            return_codes: also return ``"src_code"`` / ``"dst_code"`` (the decoder inputs).
            with_swap: also decode the swap (``src_dst``); training skips it when no loss reads it.

        Returns:
            ``src_src``, ``dst_dst``, ``src_dst`` (swap): (B, 3, res, res) in [0, 1]; each with a ``*_mask``
            (B, 1, res, res) in [0, 1].
        """
        n_src, n_dst = warped_src.shape[0], warped_dst.shape[0]
        feats = self.encoder(torch.cat([warped_src, warped_dst], 0))  # (Bs+Bd, flat)
        ab = self.inter_AB(feats)  # (Bs+Bd, 2ae, 2R, 2R)
        src_ab, dst_ab = ab[:n_src], ab[n_src:]
        dst_b = self.inter_B(feats[n_src:])  # (Bd, 2ae, 2R, 2R)
        src_code = torch.cat([src_ab, src_ab], 1)  # (Bs, 4ae, 2R, 2R)
        dst_code = torch.cat([dst_b, dst_ab], 1)  # (Bd, 4ae, 2R, 2R)
        codes = [src_code, dst_code]
        if with_swap:
            codes.append(torch.cat([dst_ab, dst_ab], 1))  # the swap code (Bd, 4ae, 2R, 2R)
        img, mask = self.decoder(torch.cat(codes, 0))  # one decoder pass for all of them
        a, b = n_src, n_src + n_dst
        out = {
            "src_src": img[:a],
            "src_src_mask": mask[:a],
            "dst_dst": img[a:b],
            "dst_dst_mask": mask[a:b],
        }
        if with_swap:
            out["src_dst"], out["src_dst_mask"] = img[b:], mask[b:]
        if return_codes:
            out["src_code"], out["dst_code"] = src_code, dst_code
        return out

    # ---- inference / teaching API ---------------------------------------------------------------------------
    def encode(self, x: torch.Tensor, identity: str) -> torch.Tensor:
        """Decoder input that reconstructs ``x`` as ``identity``: src [AB, AB], dst [B, AB] -> (B, 4ae, 2R, 2R)."""
        feats = self.encoder(x)
        ab = self.inter_AB(feats)
        first = ab if _check_identity(identity) == "src" else self.inter_B(feats)
        return torch.cat([first, ab], 1)

    def swap_code(self, x_dst: torch.Tensor) -> torch.Tensor:
        """[inter_AB(dst), inter_AB(dst)]: the dst face coded like a src face."""
        ab = self.inter_AB(self.encoder(x_dst))
        return torch.cat([ab, ab], 1)

    def decode(self, code: torch.Tensor, identity: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(image, mask) from the single decoder; ``identity`` is only checked (the code carries it)."""
        _check_identity(identity)
        return self.decoder(code)

    def swap(self, x_dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The face swap: decoder([AB(dst), AB(dst)]) -> (image, mask)."""
        return self.decoder(self.swap_code(x_dst))

    def swap_with_dst_mask(self, x_dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What the merger needs in one pass: (swap image, swap mask, mask of the dst code [B, AB]).

        The encoder runs once and the dst code only goes through the decoder's mask path.
        """
        feats = self.encoder(x_dst)
        ab = self.inter_AB(feats)
        image, mask = self.decoder(torch.cat([ab, ab], 1))
        return image, mask, self.decoder.mask(torch.cat([self.inter_B(feats), ab], 1))

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2·ae_dims): [inter_AB dense1, inter_B dense1] outputs concatenated (the two narrowest vectors).

        The first half is what src codes and the swap use; the second half only enters dst codes.
        """
        feats = self.encoder(x)
        return torch.cat([self.inter_AB.bottleneck(feats), self.inter_B.bottleneck(feats)], 1)

    def code_from_bottleneck(self, z: torch.Tensor, identity: str) -> torch.Tensor:
        """Inverse direction of `bottleneck`: (B, 2·ae_dims) -> the code `decode` takes for ``identity``.

        src (and swap) use only the inter_AB half: [AB(z_ab), AB(z_ab)]; dst uses [B(z_b), AB(z_ab)].
        """
        z_ab, z_b = z.chunk(2, dim=1)
        ab = self.inter_AB.expand(z_ab)
        first = ab if _check_identity(identity) == "src" else self.inter_B.expand(z_b)
        return torch.cat([first, ab], 1)

    # ---- training helpers -----------------------------------------------------------------------------------
    def reinit_inter(self, generator: torch.Generator | None = None) -> None:
        """Re-initialise inter_AB and inter_B (glorot, zero bias), as DFL does when pretraining is switched off."""
        glorot_init_(self.inter_AB, generator)
        glorot_init_(self.inter_B, generator)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by sub-network: ``encoder``, ``inter_AB``, ``inter_B``, ``decoder``.

        DFL trains everything except ``inter_AB`` when random warp is off.
        """
        return {
            "encoder": list(self.encoder.parameters()),
            "inter_AB": list(self.inter_AB.parameters()),
            "inter_B": list(self.inter_B.parameters()),
            "decoder": list(self.decoder.parameters()),
        }
