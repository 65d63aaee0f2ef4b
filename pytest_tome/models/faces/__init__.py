"""Face models trained by this repository on scikit-image's LFW faces (issue 16).

`faces-ddpm` (a pixel DDPM shaped like google/ddpm-celebahq-256) and `faces-ldm` (a latent
model shaped like CompVis/ldm-celebahq-256) ship their weights in `weights/`, so quality
verdicts measure the damage a merge does to real images, as the thesis measured on CelebA-HQ.
"""
