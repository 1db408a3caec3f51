"""The studio: preparing a show's material offline.

* :mod:`engine.studio.explore` -- ``lj explore``: contact sheets, principal directions, latent banks.
* :mod:`engine.studio.train` -- ``lj train`` / ``lj finetune`` / ``lj uncanny``: training our
  StyleGAN2 network with :mod:`engine.studio.discriminator` (or an NVlabs pickle's own D,
  :mod:`engine.studio.nvlabs_discriminator`) and :mod:`engine.studio.augment`.

See docs/studio.md.
"""
