#!/usr/bin/env python3
"""How much of the source's layout a Prompt-to-Prompt edit keeps (docs/RESULTS.md, session 19).

usage: p2p_layout.py OUT_DIR [OUT_DIR ...]   (folders written by `ddpm-edit prompt2prompt`)

samples.npz holds the N source samples, then their N edits (uint8 [2N, H, W, C]). Per pair it
prints the distance in pixels between the centres of mass of the two images (channel 0, the
pixel values as weights: where the object is) and the mean absolute pixel difference on the
[-1, 1] scale (how much changed at all). Needs numpy.
"""
import sys

import numpy as np


def centre_of_mass(img):
    h, w = img.shape
    yy, xx = np.mgrid[0:h, 0:w]
    weight = img / max(img.sum(), 1e-9)
    return np.array([(weight * yy).sum(), (weight * xx).sum()])


def main(folders):
    for folder in folders:
        images = np.load(folder + "/samples.npz")["arr_0"].astype(np.float64)[..., 0]
        n = images.shape[0] // 2
        source, edit = images[:n], images[n:]
        dist = [np.linalg.norm(centre_of_mass(s) - centre_of_mass(e)) for s, e in zip(source, edit)]
        diff = np.abs(source - edit).mean() / 127.5
        print(f"{folder}: centre-of-mass distance {np.mean(dist):.2f} px (median {np.median(dist):.2f}); "
              f"mean |pixel| difference {diff:.3f}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
