"""The KL-regularised autoencoder of latent diffusion (docs/latent.md).

- :mod:`~jaxdiff.autoencoder.model`: encoder, decoder, diagonal Gaussian posterior.
- :mod:`~jaxdiff.autoencoder.losses`: L1 + SSIM reconstruction, KL, PSNR.
- :mod:`~jaxdiff.autoencoder.train`: the training loop (via ``python -m jaxdiff.train``) and
  the latent scale factor stored with each checkpoint.
- :mod:`~jaxdiff.autoencoder.run`: load a run, encode / decode, PSNR / SSIM / rFID.
- :mod:`~jaxdiff.autoencoder.cache`: the latent ``.npz`` of a captioned split.
"""
